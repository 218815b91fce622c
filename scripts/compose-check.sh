#!/usr/bin/env bash
# Checks docker/compose.yaml without images: Debian's podman-compose reads
# it and prints the `podman run` line of every service (--dry-run starts
# nothing and pulls nothing), and each of the five services must be there
# with the host port the README and docs/00-setup.md give. Installs
# podman-compose with apt where it is missing (as root). CI runs it after
# the container path; `docker compose config` does the same check where
# Docker Compose is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v podman-compose >/dev/null; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get install -y -q podman-compose >/dev/null
fi

# A project of our own: the network a dry run still creates is ours to
# remove, never a user's docker_default.
project="myevents-composecheck-$$"
trap 'podman network rm -f "${project}_default" >/dev/null 2>&1 || true' EXIT
out=$(podman-compose --dry-run -p "$project" -f docker/compose.yaml up -d 2>&1) || {
  echo "compose-check: podman-compose cannot read docker/compose.yaml:" >&2
  echo "$out" >&2
  exit 1
}

bad=0
# service and the host:container port it publishes
for want in rabbitmq:5672:5672 rabbitmq:15672:15672 kafka:9092:9092 postgres:5432:5432 \
  eventservice:8181:8181 bookingservice:8282:8282; do
  svc=${want%%:*} port=${want#*:}
  line=$(grep -E -e "--name=${project}_${svc}_1 " <<<"$out" || true)
  if [ -z "$line" ]; then
    echo "compose-check: no podman run line for service $svc" >&2; bad=1
  elif ! grep -q -e "-p $port " -e "-p $port\$" <<<"$line"; then
    echo "compose-check: service $svc does not publish $port" >&2; bad=1
  fi
done
if [ "$bad" -ne 0 ]; then
  echo "compose-check: what podman-compose would run:" >&2
  echo "$out" >&2
  exit 1
fi
version=$(podman-compose version 2>/dev/null | awk '/^podman-compose/ { print $NF; exit }' || true)
echo "compose-check: podman-compose ${version:-(version unknown)} reads docker/compose.yaml: 5 services, their ports as documented"
