#!/usr/bin/env bash
# Where a Blob request's time goes: the CPU that Azurite (one Node.js
# process) and this client spend per request, for each contender at 16
# clients. Needs the variables of .ci/services.sh:
#
#   eval "$(bash .ci/services.sh)"; bench/blobprof.sh
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
CGO_ENABLED=0 go test -c -o "$out/bench.test" .
pid=$(pgrep -f "azurite-blob .*--blobPort 10000" | head -1)
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{print ($14+$15)/t}' "/proc/$1/stat"; }
for w in read list; do
  n=2000; [ "$w" = list ] && n=400
  for c in pool shared per-request; do
    a0=$(cpu "$pid")
    /usr/bin/time -f "%U %S" -o "$out/time" env BLOB_CONTENDER=$c "$out/bench.test" -test.run '^$' \
      -test.bench "^BenchmarkBlob\$/^$w\$/^c=16\$" -test.benchtime ${n}x >"$out/run.txt"
    a1=$(cpu "$pid")
    read -r u s <"$out/time"
    req=$((n + 48)) # and the warm-up: 3 per client
    echo "$w c=16 $c: $(grep -o '[0-9.]* rps' "$out/run.txt"); Azurite CPU $(echo "($a1-$a0)*1000000/$req" | bc) µs/request; client CPU $(echo "($u+$s)*1000000/$req" | bc) µs/request"
  done
done
