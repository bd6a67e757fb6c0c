#!/usr/bin/env bash
# Runs the side-by-side comparison with the pools interleaved: each pass
# runs every workload for every pool, in an order rotated between passes,
# from one compiled test binary. Then benchstat summarises the raw results
# and ratio prints the table of ratios to puddle. With PG_DSN set it also
# runs the PostgreSQL benchmark (pool, pgxpool, database/sql, no pool), and
# with AZURITE_CONNECTION_STRING set the Blob one (pooled connector, shared
# SDK client, client per request).
# Writes RESULTS.md.
#
#   PASSES=6 BENCHTIME=1s ./run.sh
set -euo pipefail
cd "$(dirname "$0")"
PASSES=${PASSES:-6}
BENCHTIME=${BENCHTIME:-1s}
CPU=${CPU:-}
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"
raw="$out/raw.txt"
: >"$raw"

CGO_ENABLED=0 go test -c -o "$out/bench.test" .
names=(pool puddle smartconnpool sql silenceper commons channel)
cpuflag=()
[ -n "$CPU" ] && cpuflag=(-test.cpu "$CPU")
for pass in $(seq 1 "$PASSES"); do
  echo "pass $pass/$PASSES" >&2
  k=$(( (pass - 1) % ${#names[@]} ))
  order=("${names[@]:$k}" "${names[@]:0:$k}")
  for n in "${order[@]}"; do
    "$out/bench.test" -test.run '^$' -test.bench "^Benchmark(Serial|Parallel|Contended|ContendedTimeout|WaitLatency)$/^${n}$" \
      -test.benchtime "$BENCHTIME" -test.benchmem "${cpuflag[@]}" | grep '^Benchmark' >>"$raw"
  done
  "$out/bench.test" -test.run '^$' -test.bench '^BenchmarkRegistryWith$' -test.benchtime "$BENCHTIME" -test.benchmem "${cpuflag[@]}" | grep '^Benchmark' >>"$raw"
  "$out/bench.test" -test.run '^$' -test.bench '^BenchmarkHooks$' -test.benchtime "$BENCHTIME" -test.benchmem "${cpuflag[@]}" | grep '^Benchmark' >>"$raw"
  if [ -n "${PG_DSN:-}" ]; then # the real server, contenders interleaved too
    pg=(pool pgxpool pool-txreset pool-always sql nopool)
    k=$(( (pass - 1) % ${#pg[@]} ))
    for n in "${pg[@]:$k}" "${pg[@]:0:$k}"; do
      PG_CONTENDER=$n "$out/bench.test" -test.run '^$' -test.bench '^BenchmarkPG$' -test.benchtime "$BENCHTIME" | grep '^Benchmark' >>"$raw"
    done
  fi
  if [ -n "${AZURITE_CONNECTION_STRING:-}" ]; then # Azurite, contenders interleaved
    blob=(pool shared per-request)
    k=$(( (pass - 1) % ${#blob[@]} ))
    for n in "${blob[@]:$k}" "${blob[@]:0:$k}"; do
      # A fixed number of requests per run (each run warms a new client
      # first, which a time-based -benchtime would repeat at every b.N).
      BLOB_CONTENDER=$n "$out/bench.test" -test.run '^$' -test.bench '^BenchmarkBlob$/^read$' -test.benchtime "${BLOB_READS:-1000}x" | grep '^Benchmark' >>"$raw"
      BLOB_CONTENDER=$n "$out/bench.test" -test.run '^$' -test.bench '^BenchmarkBlob$/^list$' -test.benchtime "${BLOB_LISTS:-200}x" | grep '^Benchmark' >>"$raw"
    done
  fi
done
"$out/bench.test" -test.run '^$' -test.bench '^BenchmarkManagerScale$' -test.benchtime 1x | grep '^Benchmark' >>"$raw"
# Scaling with cores: the uncontended parallel workload at each -cpu
# (CPU_LIST, default 1 and every core of this machine).
scale="$out/scale.txt"
: >"$scale"
for pass in $(seq 1 3); do
  for n in pool puddle channel; do
    "$out/bench.test" -test.run '^$' -test.bench "^BenchmarkParallel$/^${n}$" -test.cpu "${CPU_LIST:-1,$(nproc)}" \
      -test.benchtime "$BENCHTIME" | grep '^Benchmark' >>"$scale"
  done
done

go tool benchstat "$raw" >"$out/benchstat.txt"
go run ./ratio -scale "$scale" <"$raw" >"$out/ratios.md"

{
  echo "# Benchmark results"
  echo
  echo "Command: \`PASSES=$PASSES BENCHTIME=$BENCHTIME ${CPU:+CPU=$CPU }bench/run.sh\` (from the repository root: \`make bench\`)."
  echo
  echo "- Date: $(date -u +%Y-%m-%d)"
  echo "- Go: $(go version)"
  echo "- Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "- Passes: $PASSES, each running every pool in a rotated order; medians over passes."
  echo
  cat "$out/ratios.md"
  echo
  echo "## benchstat"
  echo
  echo '```'
  cat "$out/benchstat.txt"
  echo '```'
  echo
  cat NOTES.md # hand-written: measurements made outside this script, and history
} >RESULTS.md
echo "wrote bench/RESULTS.md (raw results in $raw)" >&2
