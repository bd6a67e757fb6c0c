#!/usr/bin/env bash
# make test: `go test -race` in every module (.ci/testsum.sh runs one),
# several modules at once. Most of the time goes to tests that wait on a
# server or a timer, not on the CPU, so modules overlap well on two cores.
#
# Modules run in two phases, so that no test that disrupts a server runs
# beside one that uses it: postgres (which restarts PostgreSQL when
# POOL_TEST_RESTARTS_PG=yes) runs beside the modules that never touch
# PostgreSQL; the others that use it (examples/api, cmd/poolbench) run
# after. azblob's tests that kill Azurite start an Azurite of their own.
#
# Each module's output is printed whole when it ends, in module order
# within a phase; the summary of what ran and was skipped comes last.
set -uo pipefail
cd "$(dirname "$0")/.."
phase1=(postgres azblob "." otel prometheus bench cmd/fleet)
phase2=(examples/api cmd/poolbench)
# Every module is in a phase: a new module fails here until it is placed.
all=$(find . -name go.mod -not -path './.git/*' -exec dirname {} \; | sed 's#^\./##; s#^\.$#.#' | sort)
placed=$(printf '%s\n' "${phase1[@]}" "${phase2[@]}" | sort)
if [ "$all" != "$placed" ]; then
  echo "the modules and .ci/testall.sh's phases differ:"; diff <(echo "$all") <(echo "$placed"); exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rc=0
run_phase() {
  local m pids=()
  for m in "$@"; do
    bash .ci/testsum.sh "$m" "$out/sum.${m//\//_}" >"$out/log.${m//\//_}" 2>&1 &
    pids+=($!)
  done
  local i
  for i in "${!pids[@]}"; do
    m=${@:i+1:1}
    if ! wait "${pids[$i]}"; then rc=1; fi
    echo "== go test -race $m"
    cat "$out/log.${m//\//_}"
  done
}
start=$SECONDS
# First every module's test binaries are compiled, one module after
# another (each build uses every core): modules built side by side would
# each compile the race-instrumented standard library and the shared
# dependencies at once. With a warm cache this step costs a few seconds:
# `go test` finds its cached (empty) result without linking.
for m in "${phase1[@]}" "${phase2[@]}"; do
  if ! (cd "$m" && go test -race -run '^$' ./... >"$out/build" 2>&1); then
    echo "== go test -race $m: it does not build"; cat "$out/build"; exit 1
  fi
done
echo "== built every module's tests ($((SECONDS - start)) s)"
run_phase "${phase1[@]}"
run_phase "${phase2[@]}"
echo "== tests that ran and were skipped, by module ($((SECONDS - start)) s)"
for m in "${phase1[@]}" "${phase2[@]}"; do cat "$out/sum.${m//\//_}"; done
exit $rc
