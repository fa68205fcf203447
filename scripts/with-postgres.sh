#!/usr/bin/env bash
# scripts/with-postgres.sh — run a command beside a PostgreSQL server of its
# own: Debian's `postgresql` binaries (initdb, pg_ctl), a new cluster in a
# temporary directory, listening on 127.0.0.1 on a free port and on a Unix
# socket in that directory, trust authentication for local connections
# only. The command gets VIDGATE_TEST_PG_URL (a superuser's URL of the
# database `vidgate`); the server is stopped and its directory removed when
# the command ends, whatever way it ends. No root needed; run as root, the
# server runs as the `postgres` system user the package made.
#
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
#        scripts/with-postgres.sh --print   (start one, print its URL, data
#                                            directory and bin directory,
#                                            leave it running; stop:
#                                            pg_ctl -D DIR stop, as the
#                                            `postgres` user under root)
set -euo pipefail

log() { printf 'with-postgres: %s\n' "$*" >&2; }

bindir=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
  bindir=$(pg_config --bindir)
else
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir=$d; done
fi
[ -n "$bindir" ] || { log "no initdb found: install Debian's postgresql (scripts/install-deps.sh)"; exit 1; }

keep=0
if [ "${1:-}" = "--print" ]; then keep=1; shift; fi
[ $keep = 1 ] || [ $# -gt 0 ] || { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/vidgate-pg.XXXXXX")
as=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf -- "$dir"
}

"${as[@]}" "$bindir/initdb" -D "$dir/data" -U vidgate --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; rm -rf -- "$dir"; exit 1; }
# In its config file, so that `pg_ctl -D DIR start` after a stop serves the
# same address (the journal's outage test stops and starts it); enough
# connections for several instances' pools and parallel tests.
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
CONF
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
  || { cat "$dir/server.log" >&2; rm -rf -- "$dir"; exit 1; }
"${as[@]}" "$bindir/createdb" -h "$dir" -p "$port" -U vidgate vidgate
url="postgres://vidgate@127.0.0.1:$port/vidgate"

if [ $keep = 1 ]; then
  printf '%s\n%s\n%s\n' "$url" "$dir/data" "$bindir"
  exit 0
fi
trap stop EXIT
trap 'exit 130' INT TERM
log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $url"
export VIDGATE_TEST_PG_URL=$url VIDGATE_TEST_PG_DIR=$dir/data VIDGATE_TEST_PG_BIN=$bindir
"$@"
