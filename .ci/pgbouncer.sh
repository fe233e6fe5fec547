#!/usr/bin/env bash
# Starts PgBouncer in transaction pooling mode on 127.0.0.1:${PGBOUNCER_PORT:-6432}, in front of
# the PostgreSQL on 127.0.0.1:5432, for the tests that run a second time through it
# (EVENTSALSA_TEST_PGBOUNCER_URL; docs/pgbouncer.md). Installs the Debian package when missing.
# Leaves a PgBouncer that already answers there alone. Prints the URL to use on its last line.
set -euo pipefail
port=${PGBOUNCER_PORT:-6432}
dir=${PGBOUNCER_DIR:-/tmp/eventsalsa-pgbouncer-$port}
url="postgres://postgres@127.0.0.1:$port/test"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

if ! command -v pgbouncer >/dev/null; then
  echo "installing pgbouncer (apt-get)"
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
version=$(pgbouncer --version | head -1 | awk '{print $2}')
echo "PgBouncer $version"

if pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null &&
  psql "$url" -Atqc "SELECT 1" >/dev/null 2>&1; then
  echo "a PgBouncer already answers on 127.0.0.1:$port"
  echo "$url"
  exit 0
fi

mkdir -p "$dir"
# PgBouncer refuses to run as root: as root, it runs as the postgres user (or nobody).
user=$(id -un)
if [ "$(id -u)" = 0 ]; then
  user=postgres
  id -u postgres >/dev/null 2>&1 || user=nobody
fi
# max_prepared_statements (1.21+) would let PgBouncer track named statements; 0 keeps the strict
# transaction mode where a named statement dies with its server connection. 1.18 (Debian 12)
# has no such setting and rejects unknown ones.
prepared=""
if printf '%s\n' "1.21" "$version" | sort -V -C; then prepared="max_prepared_statements = 0"; fi
cat >"$dir/pgbouncer.ini" <<INI
[databases]
; Every database name goes to the same-named database on the server (the tests make their own).
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
$prepared
default_pool_size = 10
; Close idle server connections soon: every test database gets a pool of its own, and pools kept
; for minutes would use up the server's max_connections for the tests that run after them.
server_idle_timeout = 3
max_client_conn = 500
; Hand transactions to server connections in turn, so a test that leans on session state (a
; named prepared statement, a session lock) meets another connection soon.
server_round_robin = 1
autodb_idle_timeout = 30
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$dir/userlist.txt"
chown -R "$user" "$dir" 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
  pgbouncer -d -u "$user" "$dir/pgbouncer.ini"
else
  pgbouncer -d "$dir/pgbouncer.ini"
fi
for _ in $(seq 1 50); do
  psql "$url" -Atqc "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! psql "$url" -Atqc "SELECT 1" >/dev/null; then
  echo "PgBouncer did not come up on 127.0.0.1:$port; its log:"
  tail -20 "$dir/pgbouncer.log" || true
  exit 1
fi
echo "PgBouncer $version on 127.0.0.1:$port, pool_mode=transaction (config $dir/pgbouncer.ini)"
echo "$url"
