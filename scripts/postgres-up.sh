#!/usr/bin/env bash
# Makes sure a PostgreSQL installed on this machine answers on 127.0.0.1:5432
# (the capstone's PostgreSQL tests use it unless TEST_DATABASE_URL is set).
# With Docker, the compose file's postgres service does the same.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "postgres: already running"
  exit 0
fi
command -v pg_ctlcluster >/dev/null || { echo "postgres: not installed here; set TEST_DATABASE_URL to a PostgreSQL you can use" >&2; exit 1; }
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "postgres: starting cluster $version/main"
pg_ctlcluster --skip-systemctl-redirect "$version" main start
for _ in $(seq 1 30); do
  if pg_isready -q -h 127.0.0.1 -p 5432; then echo "postgres: ready"; exit 0; fi
  sleep 1
done
echo "postgres: did not answer within 30 s" >&2
exit 1
