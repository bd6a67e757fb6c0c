#!/usr/bin/env bash
# Starts what the tests need, if it is not running: PostgreSQL (installed
# and started on this kind of machine before a session, started here if it
# stopped), PgBouncer in transaction mode on 127.0.0.1:6432 (installed
# from Debian's package if missing) and Azurite's blob service on
# 127.0.0.1:10000 (from npm); installs Prometheus (from Debian) for the
# metrics tests. Prints the environment to export.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start >&2
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "installing pgbouncer" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
fi
dir=/tmp/pool-ci-pgbouncer
if ! pg_isready -q -h 127.0.0.1 -p 6432 2>/dev/null; then
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
unix_socket_dir =
INI
  echo '"postgres" ""' >"$dir/userlist.txt"
  chown -R postgres "$dir" 2>/dev/null || true
  if [ "$(id -u)" = 0 ]; then
    /usr/sbin/pgbouncer -d -u postgres "$dir/pgbouncer.ini" >&2
  else
    /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini" >&2
  fi
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 6432 && break; sleep 0.2; done
fi

# Azurite, the Azure Storage emulator, from the npm registry: its blob
# service over HTTPS on 127.0.0.1:10000, in memory, with a throwaway
# certificate made here that the tests trust (AZURITE_CA_CERT).
az=/tmp/pool-ci-azurite
if [ ! -x "$az/node_modules/.bin/azurite-blob" ]; then
  echo "installing azurite" >&2
  mkdir -p "$az"
  npm install --no-audit --no-fund --silent --prefix "$az" azurite@3.37.0 >&2
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$az/key.pem" -out "$az/cert.pem" -days 30 \
    -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
  setsid nohup "$az/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 \
    --cert "$az/cert.pem" --key "$az/key.pem" --inMemoryPersistence --skipApiVersionCheck \
    >"$az/azurite.log" 2>&1 </dev/null &
  for _ in $(seq 100); do grep -q "successfully listens" "$az/azurite.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "successfully listens" "$az/azurite.log" || { cat "$az/azurite.log" >&2; echo "azurite did not start" >&2; exit 1; }
fi
# Prometheus and promtool, from Debian's package, for the metrics tests
# (each test starts its own server on a port of its own).
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing prometheus" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
fi

# The well-known development account of the emulator (not a secret).
dev_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

echo "export PG_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'"
echo "export PGBOUNCER_DSN='postgres://postgres@127.0.0.1:6432/test?sslmode=disable'"
echo "export PG_CTLCLUSTER='pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main'"
# The server's programs (initdb, pg_ctl, pg_basebackup), for the failover
# test's primary and standby of its own (POOL_TEST_FAILOVER=yes).
echo "export PG_BINDIR='/usr/lib/postgresql/$(ls /etc/postgresql)/bin'"
echo "export AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=$dev_key;BlobEndpoint=https://127.0.0.1:10000/devstoreaccount1;'"
echo "export AZURITE_CA_CERT='$az/cert.pem'"
echo "export AZURITE_CA_KEY='$az/key.pem'"
echo "export AZURITE_BLOB='$az/node_modules/.bin/azurite-blob'"
echo "export PROMETHEUS='$(command -v prometheus)'"
echo "export PROMTOOL='$(command -v promtool)'"
