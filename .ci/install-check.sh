#!/usr/bin/env bash
# Shows that a module outside this repository can `go get` every module of
# it and build the README's quick start, as a user would once the version
# the nested go.mod files require is tagged: a file-system module proxy is
# built from this tree at that version (.ci/modproxy), and a fresh module
# resolves ours from it and everything else as usual. With PG_DSN and
# Azurite's variables set, the quick start also runs against both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
version=$(awk '$1 == "github.com/deepanalyze/pool" { print $2; exit }' postgres/go.mod)
work=$(mktemp -d)
modcache=$(GOWORK=off go env GOMODCACHE)
# What a previous check left of our modules in the module cache would hide
# this tree's files: remove it before and after.
purge() {
  for d in "$modcache/github.com/deepanalyze" "$modcache/cache/download/github.com/deepanalyze"; do
    if [ -e "$d" ]; then chmod -R u+w "$d" && rm -rf "$d"; fi
  done
}
purge
trap 'purge; rm -rf "$work"' EXIT

go run ./.ci/modproxy -version "$version" -out "$work/proxy"

cd "$work" && mkdir consumer && cd consumer
go mod init example.com/consumer >/dev/null 2>&1
cp "$repo/.ci/quickstart/main.go" main.go
# Our modules come from the file proxy only (no checksum database knows
# them yet); everything else from the module cache or the usual proxy.
# The module index in GOCACHE remembers each module version's files: a
# version republished from a newer tree needs it off.
export GOWORK=off GOFLAGS="-mod=mod" GONOSUMDB=github.com/deepanalyze GODEBUG=goindex=0
# '|' moves on to the next proxy on any error (a file proxy reports a
# missing file, or the checksum database it does not serve, as an error).
export GOPROXY="file://$work/proxy|file://$modcache/cache/download|$(GOWORK=off go env GOPROXY)"
for m in pool pool/postgres pool/azblob pool/otel pool/prometheus pool/examples/api pool/cmd/poolbench pool/cmd/fleet pool/bench; do
  echo "== go get github.com/deepanalyze/$m@$version"
  go get -x "github.com/deepanalyze/$m@$version" 2>"$work/get.log" || { cat "$work/get.log"; exit 1; }
done
go get github.com/jackc/pgx/v5
go build -o quickstart .
go build -o /dev/null github.com/deepanalyze/pool/examples/api github.com/deepanalyze/pool/cmd/poolbench github.com/deepanalyze/pool/cmd/fleet
go vet github.com/deepanalyze/pool/bench
if [ -n "${PG_DSN:-}" ] && [ -n "${AZURITE_CONNECTION_STRING:-}" ]; then
  # Azurite's throwaway certificate is trusted the way a user would trust
  # a private authority: through SSL_CERT_FILE.
  SALES_DSN=$PG_DSN RAW_STORAGE=$AZURITE_CONNECTION_STRING SSL_CERT_FILE=$AZURITE_CA_CERT ./quickstart
else
  echo "PG_DSN or AZURITE_CONNECTION_STRING is not set: the quick start was built but not run (bash .ci/run sets them)"
fi
echo "== install check passed: every module resolves at $version from outside the repository"
