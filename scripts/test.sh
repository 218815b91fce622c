#!/usr/bin/env bash
# Runs every test with the race detector against real brokers
# (labs/brokertest chooses them and logs which). Extra arguments go to
# `go test`. When CI is set, a skipped test fails the run: CI must never pass
# by skipping a broker-backed test.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
go test -race -count=1 -v "$@" ./... >"$log" 2>&1 || status=$?

# Print the package results, then every failed or skipped test.
grep -E '^(ok|FAIL|panic:|\?)' "$log" || true
grep -E -e '--- (FAIL|SKIP)' "$log" || true
if [ "$status" -ne 0 ]; then
  echo "tests failed; the full log follows" >&2
  cat "$log" >&2
  # Again at the end, where a reader of a long CI log looks first: what
  # failed, and each failed test's own reason.
  echo "tests failed (exit $status); what failed:" >&2
  scripts/failures.sh "$log" >&2
  exit "$status"
fi
skips=$(grep -c -e '--- SKIP' "$log" || true)
if [ "$skips" -gt 0 ] && [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; then
  echo "CI is set and $skips test(s) were skipped: a skipped broker test is a failure here" >&2
  grep -B2 -A3 -e '--- SKIP' "$log" >&2
  exit 1
fi
echo "all tests passed ($skips skipped)"
