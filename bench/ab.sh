#!/usr/bin/env bash
# A/B of the core benchmarks between a base revision and the working tree,
# interleaved in one run: each pass runs both builds, alternating which goes
# first, from test binaries built once. It prints the median of each
# benchmark and metric and the ratio new/old.
#
#   bench/ab.sh 9f3637f            # PASSES=6 BENCHTIME=1s by default
#   CPUS=1,2 bench/ab.sh main      # each benchmark at GOMAXPROCS 1 and 2
#   SET=contended bench/ab.sh main # only where callers wait
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/ab.sh BASE_REVISION}
PASSES=${PASSES:-6}
BENCHTIME=${BENCHTIME:-1s}
CPUS=${CPUS:-}
peers='Serial|Parallel|Contended|ContendedTimeout|WaitLatency'
core='AcquireRelease|AcquireReleaseParallel|AcquireReleaseContended|With|Stats'
registry=yes
case ${SET:-all} in
all) ;;
contended) peers='Contended|ContendedTimeout|WaitLatency' core='AcquireReleaseContended' registry= ;;
*) echo "SET must be all or contended" >&2; exit 2 ;;
esac
cpu=()
[ -n "$CPUS" ] && cpu=(-test.cpu "$CPUS")
out=$(mktemp -d)
git worktree add -q --detach "$out/base" "$base"
trap 'git worktree remove --force "$out/base"' EXIT
for v in old new; do
  src=.
  [ $v = old ] && src="$out/base"
  (cd "$src/bench" && CGO_ENABLED=0 go test -c -o "$out/bench-$v.test" .)
  (cd "$src" && CGO_ENABLED=0 go test -c -o "$out/core-$v.test" .)
  : >"$out/raw-$v.txt"
done
for pass in $(seq 1 "$PASSES"); do
  echo "pass $pass/$PASSES" >&2
  order="old new"
  [ $((pass % 2)) = 0 ] && order="new old"
  for v in $order; do
    "$out/bench-$v.test" -test.run '^$' -test.bench "^Benchmark($peers)\$/^pool\$" \
      -test.benchtime "$BENCHTIME" "${cpu[@]}" -test.benchmem | grep '^Benchmark' >>"$out/raw-$v.txt"
    if [ -n "$registry" ]; then
      "$out/bench-$v.test" -test.run '^$' -test.bench '^BenchmarkRegistryWith$' -test.benchtime "$BENCHTIME" "${cpu[@]}" -test.benchmem |
        grep '^Benchmark' >>"$out/raw-$v.txt"
    fi
    "$out/core-$v.test" -test.run '^$' -test.bench "^Benchmark($core)\$" \
      -test.benchtime "$BENCHTIME" "${cpu[@]}" -test.benchmem | grep '^Benchmark' | sed 's/^Benchmark/BenchmarkCore/' >>"$out/raw-$v.txt"
  done
done
# One line per value: "benchmark metric version value"; then the median of
# each group, and the ratio.
for v in old new; do
  awk -v v=$v -v keep="$CPUS" '{ n = $1; if (keep == "") sub(/-[0-9]+$/, "", n)
    for (i = 3; i < NF; i += 2) if ($(i+1) ~ /^(ns\/op|p50-ns|p99-ns|max-ns|allocs\/op)$/) print n, $(i+1), v, $i }' "$out/raw-$v.txt"
done | sort -k1,1 -k2,2 -k3,3 -k4,4g | awk '
  function flush() { if (cnt) { m = (cnt % 2) ? vals[(cnt+1)/2] : (vals[cnt/2] + vals[cnt/2+1]) / 2; med[key] = m; cnt = 0 } }
  { k = $1 " " $2 " " $3; if (k != key) { flush(); key = k; if (!($1 " " $2 in seen)) { seen[$1 " " $2] = 1; order[++no] = $1 " " $2 } } vals[++cnt] = $4 }
  END { flush(); print "| benchmark | metric | old | new | new/old |"; print "|---|---|---|---|---|"
    for (i = 1; i <= no; i++) { o = med[order[i] " old"]; n = med[order[i] " new"]; split(order[i], f, " ")
      printf "| %s | %s | %g | %g | %s |\n", f[1], f[2], o, n, (o > 0 ? sprintf("%.2f", n / o) : "-") } }'
echo "raw results: $out" >&2
