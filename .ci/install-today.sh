#!/usr/bin/env bash
# Runs the README's install for today (before the first tag), word for
# word: the shell block that follows the line `<!-- install: today -->` in
# README.md, in a new module outside the repository that holds the
# README's quick start. Only the clone's URL is changed, to this
# repository's own directory (the machine reaches no git host). With
# PG_DSN and Azurite's variables set, the quick start also runs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
recipe=$(awk '/^<!-- install: today -->$/ { found = 1; next }
  found && /^```/ { if (inside) exit; inside = 1; next }
  inside { print }' README.md)
if [ -z "$recipe" ] || ! grep -q 'git clone https://github.com/deepanalyze/pool ' <<<"$recipe"; then
  echo "README.md has no install block after '<!-- install: today -->' that clones the repository"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/app" && cd "$work/app"
# The user's module, as they would have it before the install.
unset GOWORK GOFLAGS
go mod init example.com/app >/dev/null 2>&1
cp "$repo/.ci/quickstart/main.go" main.go
echo "== the README's install, in $work/app:"
echo "$recipe"
script=${recipe//https:\/\/github.com\/deepanalyze\/pool/$repo}
bash -euxo pipefail -c "$script"
go build -o quickstart .
if [ -n "${PG_DSN:-}" ] && [ -n "${AZURITE_CONNECTION_STRING:-}" ]; then
  SALES_DSN=$PG_DSN RAW_STORAGE=$AZURITE_CONNECTION_STRING SSL_CERT_FILE=$AZURITE_CA_CERT ./quickstart
else
  echo "PG_DSN or AZURITE_CONNECTION_STRING is not set: the quick start was built but not run (bash .ci/run sets them)"
fi
echo "== install check (today) passed: the README's recipe builds the quick start outside the repository"
