#!/usr/bin/env bash
# Starts what the tests need, if it is not running: PostgreSQL (installed
# and started on this kind of machine before a session, started here if it
# stopped) and PgBouncer in transaction mode on 127.0.0.1:6432 (installed
# from Debian's package if missing). Prints the environment to export.
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

echo "export PG_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'"
echo "export PGBOUNCER_DSN='postgres://postgres@127.0.0.1:6432/test?sslmode=disable'"
echo "export PG_CTLCLUSTER='pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main'"
