#!/usr/bin/env bash
# Runs every test package that uses RabbitMQ once more, through the
# container path: labs/brokertest starts RabbitMQ with testcontainers-go,
# one container shared by every package where Ryuk is off (Podman), one
# per package where it runs (Docker's default). It fails unless every one
# of those packages logged RabbitMQ from a container (and no other
# backend), nothing was skipped and (Ryuk off) no container was left
# behind. Run it in a shell set up for a container engine:
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
  grep -rlE --include='*_test.go' 'brokertest\.(AMQP|CheckDialErrors)\(' labs capstone
  echo labs/brokertest/brokertest_test.go
} | xargs -n1 dirname | sort -u | sed 's|^|./|')

# The engine's own command line, for what testcontainers leaves to us:
# removing the shared container, and finding containers a package left.
if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
tc_containers() { "$engine" ps -a -q --filter label=org.testcontainers=true | sort; }

# Where Ryuk is off (Podman), one RabbitMQ container serves every package
# (BROKERTEST_RABBITMQ_REUSE, see labs/brokertest): a broker's start
# costs 10 to 30 s on this project's 2-core machines, once per package
# otherwise. Tests that stop their broker still get containers of their
# own (PrivateAMQP). A name of the caller's own is kept; ours is removed
# at the end. Where Ryuk runs, it would remove a shared container under a
# later run, so each package starts its own and Ryuk removes them.
ryuk_off=false
case "${TESTCONTAINERS_RYUK_DISABLED:-}" in true | TRUE | True | 1) ryuk_off=true ;; esac
own_shared=""
if $ryuk_off && [ -z "${BROKERTEST_RABBITMQ_REUSE:-}" ]; then
  export BROKERTEST_RABBITMQ_REUSE="myevents-brokertest-$$"
  own_shared=$BROKERTEST_RABBITMQ_REUSE
fi
before=$(mktemp)
if $ryuk_off; then tc_containers >"$before"; fi

log=$(mktemp)
cleanup() {
  if [ -n "$own_shared" ]; then "$engine" rm -f "$own_shared" >/dev/null 2>&1 || true; fi
  rm -f "$log" "$before"
}
trap cleanup EXIT
# -p 4: while one package waits for a private container to start, others
# run.
# TestTryThisSafeByHand runs an edited copy of lab 13 with go run, and
# that program reaches rabbitmqctl only on this machine, not in a
# container: it checks a step of the chapter, not the container path, and
# runs with the rest in scripts/test.sh.
flags=(-race -count=1 -v -p 4 -skip '^TestTryThisSafeByHand$' "$@")
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
# Every container a package started must be gone when it ends
# (brokertest.Main in its TestMain, t.Cleanup for a private one): with
# Ryuk off, nothing else removes them. Any testcontainers container that
# appeared during the run counts, so give this run the engine alone (as
# CI does); the ones found are named, not removed.
if $ryuk_off; then
  after=$(tc_containers)
  shared_id=""
  if [ -n "${BROKERTEST_RABBITMQ_REUSE:-}" ]; then
    shared_id=$("$engine" ps -a -q --filter "name=^${BROKERTEST_RABBITMQ_REUSE}\$")
  fi
  left=$(comm -13 "$before" <(echo "$after") | grep -v -x -F "${shared_id:-none}" || true)
  if [ -n "$left" ]; then
    echo "FAIL: containers left behind by the tests (a package without brokertest.Main in its TestMain?):" >&2
    for id in $left; do
      "$engine" inspect --format '{{.Name}} {{.Config.Image}} created {{.Created}}' "$id" >&2 || true
    done
    bad=1
  fi
fi
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
  # Again at the end, where a reader of a long CI log looks first: what
  # failed, and each failed test's own reason.
  echo "container path failed (exit $status); what failed:" >&2
  grep -E -e '--- SKIP' "$log" | sort -u >&2 || true
  scripts/failures.sh "$log" >&2
  exit 1
fi
grep -E '^ok' "$log"
echo "container path: ${#pkgs[@]} packages passed with RabbitMQ from containers, 0 skipped, in ${took} s"
