#!/usr/bin/env bash
# Runs `go test -race -count=1 -v ./...` in one module (the first
# argument), prints each package's result line (and, if any test failed,
# the whole output), and appends to the file named by the second argument
# one line: how many top-level tests ran, how many were skipped, and why
# (the start of each skip message, which names the variable to set).
set -uo pipefail
mod=$1
summary=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd "$mod" && go test -race -count=1 -v ./...) >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  cat "$log"
else
  grep -E '^(ok|FAIL|\?) ' "$log"
fi
ran=$(grep -cE '^--- (PASS|FAIL): ' "$log")
skipped=$(grep -cE '^--- SKIP: ' "$log")
# go test -v prints a skip's message just before its "--- SKIP" line.
why=$(grep -B1 -E '^--- SKIP: ' "$log" | grep -E '^ +[a-z_0-9]+\.go:[0-9]+: ' |
  sed -E 's/^ +[a-z_0-9]+\.go:[0-9]+: //; s/;.*//' | sort | uniq -c | sort -rn |
  awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s%d: %s", sep, n, $0; sep = "; " }')
line="$mod: $ran ran, $skipped skipped"
[ -n "$why" ] && line="$line ($why)"
echo "$line" >>"$summary"
exit $rc
