#!/usr/bin/env bash
# Prints what failed in a `go test -v` log, short, for the end of a CI log
# where a reader looks first: the failed tests and packages, then, for
# each failed run of a top-level test, the first lines it logged from a
# .go file, each with the two lines after it (its own reason, which a
# test's long diagnostic output would otherwise push out of view), cut to
# 300 characters each. Each run is kept apart: the same test name in
# another package, or an earlier run under -count, is not its reason.
#
#   scripts/failures.sh LOG
set -euo pipefail
log=$1
grep -E -e '^(FAIL|panic:)' -e '--- FAIL' "$log" | sort -u || true
awk '
  function keep(line) {
    if (length(line) > 300) line = substr(line, 1, 300) "..."
    buf[cur] = buf[cur] line "\n"
  }
  # A top-level test starts: a new run, with nothing kept yet.
  /^=== RUN   [^\/]+$/ { name = substr($0, 11); buf[name] = ""; shown[name] = 0 }
  /^=== (RUN|CONT|NAME|PAUSE) +/ { cur = substr($0, 11); sub(/\/.*/, "", cur); more = 0; next }
  # A top-level run ends: its reason, if it failed.
  /^--- (FAIL|PASS|SKIP): / {
    more = 0
    if ($2 == "FAIL:" && buf[$3] != "") printf "reason of %s:\n%s", $3, buf[$3]
    delete buf[$3]
    next
  }
  /^ *(===|---) / { more = 0; next }
  /^ +[A-Za-z0-9_.-]+\.go:[0-9]+: / {
    more = 0
    # Which broker a test got, and the info lines of the services, are not
    # reasons.
    if (!(cur in buf) || /brokertest: / || / level=(DEBUG|INFO) / || shown[cur] >= 8) next
    shown[cur]++
    keep($0); more = 2; next
  }
  more > 0 && cur in buf { more--; keep($0) }
' "$log"
