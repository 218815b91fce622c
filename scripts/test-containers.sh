#!/usr/bin/env bash
# Runs every test package that uses RabbitMQ once more, through the
# container path: labs/brokertest starts RabbitMQ with testcontainers-go,
# one container per package. It fails unless every one of those packages
# logged RabbitMQ from a container (and no other backend) and nothing was
# skipped. Run it in a shell set up for a container engine:
#
#   eval "$(scripts/podman-up.sh)"   # Podman on Debian; with Docker, nothing to set
#   scripts/test-containers.sh       # extra arguments go to go test
#
# Kafka comes from wherever BROKERTEST_KAFKA and KAFKA_BROKERS say
# (podman-up.sh: embedded).
set -euo pipefail
cd "$(dirname "$0")/.."
export BROKERTEST_RABBITMQ=container # no engine is a failure, not a fallback

# The packages whose tests ask brokertest for RabbitMQ, and brokertest itself.
mapfile -t pkgs < <({
  grep -rl --include='*_test.go' 'brokertest\.AMQP(' labs capstone
  echo labs/brokertest/brokertest_test.go
} | xargs -n1 dirname | sort -u | sed 's|^|./|')

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -p 4: while one package waits for its RabbitMQ container to start (10 to
# 30 s on this project's 2-core machines), others run. Measured there with
# other work loading the machine: 364 s, against 439 s with the default -p 2.
flags=(-race -count=1 -v -p 4 "$@")
start=$(date +%s)
status=0
go test "${flags[@]}" "${pkgs[@]}" >"$log" 2>&1 || status=$?

# backends prints, for each package in the log, the RabbitMQ backends it
# logged. go test prints each package's output as one block that ends with
# its ok/FAIL line.
backends() {
  awk '
    /brokertest: RabbitMQ at .*, backend / {
      b = $0; sub(/.*, backend /, "", b); sub(/ .*/, "", b); seen[b] = 1
    }
    /^(ok|FAIL)[ \t]+example\.com\// {
      list = ""
      for (b in seen) list = list (list == "" ? "" : ",") b
      print $2, (list == "" ? "nothing" : list)
      delete seen
    }' "$log"
}
backend_of() { backends | awk -v pkg="example.com/myevents/${1#./}" '$1 == pkg { print $2 }'; }

# A package whose tests never asked for RabbitMQ uses it in a benchmark:
# run its benchmarks once. (Not in the first run: -bench makes go test run
# packages one after the other.)
bench_only=()
for p in "${pkgs[@]}"; do
  [ "$(backend_of "$p")" = nothing ] && bench_only+=("$p")
done
if [ "$status" -eq 0 ] && [ "${#bench_only[@]}" -gt 0 ]; then
  go test "${flags[@]}" -run '^$' -bench . -benchtime 1x "${bench_only[@]}" >>"$log" 2>&1 || status=$?
fi
took=$(($(date +%s) - start))

bad=0
for p in "${pkgs[@]}"; do
  # The last result counts: the benchmark run, for a benchmark-only package.
  got=$(backend_of "$p" | tail -n 1)
  case $got in
    container) echo "ok   $p: RabbitMQ from a container" ;;
    "") echo "FAIL $p: no result (see the log below)" >&2; bad=1 ;;
    *) echo "FAIL $p: RabbitMQ backend(s) logged: $got; want container only" >&2; bad=1 ;;
  esac
done
skips=$(grep -c -e '--- SKIP' "$log" || true)
if [ "$skips" -gt 0 ]; then
  echo "FAIL: $skips test(s) skipped on the container path:" >&2
  grep -B2 -A3 -e '--- SKIP' "$log" >&2
  bad=1
fi
if [ "$status" -ne 0 ] || [ "$bad" -ne 0 ]; then
  grep -E '^(ok|FAIL|panic:)' "$log" >&2 || true
  echo "container path failed; the full log follows" >&2
  cat "$log" >&2
  # Again at the end, where a reader of a long CI log looks first.
  echo "container path failed (exit $status); what failed:" >&2
  grep -E -e '^(FAIL|panic:)' -e '--- (FAIL|SKIP)' -e '^\s+\S+_test\.go:[0-9]+:' "$log" >&2 || true
  exit 1
fi
grep -E '^ok' "$log"
echo "container path: ${#pkgs[@]} packages passed with RabbitMQ from containers, 0 skipped, in ${took} s"
