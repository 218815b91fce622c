#!/usr/bin/env bash
# Prints what failed in a `go test -v` log, short, for the end of a CI log
# where a reader looks first: the failed tests and packages, then, for
# each failed top-level test, the first lines it logged from a .go file
# between its start and its failure, each with the two lines after it
# (its own reason, which a test's long
# diagnostic output would otherwise push out of view), cut to 300
# characters each.
#
#   scripts/failures.sh LOG
set -euo pipefail
log=$1
grep -E -e '^(FAIL|panic:)' -e '--- FAIL' "$log" | sort -u || true
awk '
  FNR == NR {
    if (match($0, /^--- FAIL: [^ ]+/)) failed[substr($0, 11, RLENGTH - 10)] = 1
    next
  }
  /^=== RUN   / {
    name = substr($0, 11); sub(/\/.*/, "", name)
    if (name in failed && !(name in seen)) { seen[name] = 1; open[name] = 1; shown[name] = 0 }
  }
  /^=== (RUN|CONT|NAME|PAUSE) +/ { cur = substr($0, 11); sub(/\/.*/, "", cur) }
  /^--- (FAIL|PASS|SKIP): / { top = $3; delete open[top] }
  cur in open && /^ +[A-Za-z0-9_.-]+\.go:[0-9]+: / {
    more = 0
    # Which broker a test got, and the info lines of the services, are not
    # reasons.
    if (/brokertest: / || / level=(DEBUG|INFO) / || shown[cur] >= 8) next
    if (shown[cur]++ == 0) print "reason of " cur ":"
    show($0); more = 2; next
  }
  /^ *(===|---) / { more = 0 }
  more > 0 && cur in open { more--; show($0) }
  function show(line) {
    if (length(line) > 300) line = substr(line, 1, 300) "..."
    print line
  }
' "$log" "$log"
