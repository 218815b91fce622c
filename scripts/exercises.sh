#!/usr/bin/env bash
# Checks the exercises in the direction that matters to a learner: every
# untouched template (exercise.go, built with -tags exercise) compiles, is
# vet-clean, and fails its exercise test with a readable sentence, not with a
# build error or a panic. (The solutions are checked by the normal test run.)
# Needs the same brokers as scripts/test.sh. With arguments it checks only
# those exercise packages: scripts/exercises.sh capstone/bookingservice
set -euo pipefail
cd "$(dirname "$0")/.."

echo "exercises: go vet -tags exercise ./..."
go vet -tags exercise ./...

# An exercise package has an exercise.go built only with the tag (labkit's
# exercise.go, which holds ErrTODO, is not one): every lab from 01 on, and
# the capstone's BookingService.
if [ "$#" -gt 0 ]; then
  dirs=$(printf '%s\n' "${@%/}" | sed 's|^\./||')
else
  dirs=$(find labs capstone -name exercise.go -exec grep -l '^//go:build exercise$' {} + | xargs -r dirname | sort -u)
fi
[ -n "$dirs" ] || { echo "exercises: none found" >&2; exit 1; }
bad=0
for d in $dirs; do
  for f in solution.go exercise_test.go; do
    [ -f "$d/$f" ] || { echo "FAIL $d: exercise.go has no $f beside it" >&2; bad=1; }
  done
  out=$(go test -tags exercise -count=1 -run '^TestExercise' "./$d" 2>&1) && rc=0 || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "FAIL $d: the untouched template passes its exercise test (the test cannot fail)" >&2; bad=1
  elif grep -qE '\[build failed\]|\[setup failed\]|^panic:' <<<"$out" || ! grep -q -- '--- FAIL: TestExercise' <<<"$out"; then
    echo "FAIL $d: the template fails by a build error or a panic, not by its TestExercise test:" >&2
    echo "$out" >&2; bad=1
  elif ! grep -q 'exercise not done yet' <<<"$out"; then
    echo "FAIL $d: the template's failure does not say what is missing ('exercise not done yet: ...'):" >&2
    echo "$out" >&2; bad=1
  else
    echo "ok   $d: template fails with: $(grep -m1 -o 'exercise not done yet.*' <<<"$out")"
  fi
done
exit "$bad"
