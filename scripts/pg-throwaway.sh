#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks, in a directory of its own.
#
#   scripts/pg-throwaway.sh start DIR   initdb + start on a free loopback port; prints the URL
#   scripts/pg-throwaway.sh stop DIR    stops it and removes DIR
#
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user.
# Durability is off (fsync, full_page_writes): the data is thrown away after the run.
set -euo pipefail

cmd=${1:?usage: pg-throwaway.sh start|stop DIR}
dir=${2:?usage: pg-throwaway.sh start|stop DIR}

bin_of() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/$1" ]; then echo "$d/$1"; return; fi
    done
    echo "pg-throwaway: $1 not found (install PostgreSQL 14 or newer)" >&2
    exit 1
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
    initdb=$(bin_of initdb)
    pg_ctl=$(bin_of pg_ctl)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 400
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_pred_locks_per_transaction = 256
CONF
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    pg_ctl=$(bin_of pg_ctl)
    if [ -d "$dir/data" ]; then
        as_owner "$pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: pg-throwaway.sh start|stop DIR" >&2
    exit 2
    ;;
esac
