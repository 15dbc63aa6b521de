#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks, in a directory of its own.
#
#   scripts/pg-throwaway.sh start DIR [--tls CERT KEY] [--password PW]
#       initdb + start on a free loopback port; prints the URL
#   scripts/pg-throwaway.sh stop DIR    stops it and removes DIR
#
# --tls CERT KEY: ssl = on with this certificate and key (PEM), and pg_hba.conf takes
#   TCP connections over TLS only (`hostssl`): a plain connection is refused. The URL
#   printed names `localhost`.
# --password PW: the `postgres` user's password; TCP connections must give it
#   (scram-sha-256). The URL printed does not hold it.
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
    shift 2
    cert='' key='' password=''
    while [ $# -gt 0 ]; do
        case "$1" in
        --tls) cert=${2:?--tls CERT KEY}; key=${3:?--tls CERT KEY}; shift 3 ;;
        --password) password=${2:?--password PW}; shift 2 ;;
        *) echo "pg-throwaway: unknown option $1" >&2; exit 2 ;;
        esac
    done
    initdb=$(bin_of initdb)
    pg_ctl=$(bin_of pg_ctl)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    auth=(--auth=trust)
    if [ -n "$password" ]; then
        printf '%s\n' "$password" >"$dir/pwfile"
        if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pwfile"; fi
        auth=(--auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/pwfile")
    fi
    as_owner "$initdb" -D "$dir/data" -U postgres "${auth[@]}" --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    rm -f "$dir/pwfile"
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
    host=127.0.0.1
    if [ -n "$cert" ]; then
        install -m 600 "$cert" "$dir/data/server.crt"
        install -m 600 "$key" "$dir/data/server.key"
        if [ "$(id -u)" = 0 ]; then chown postgres "$dir/data/server.crt" "$dir/data/server.key"; fi
        printf '%s\n' "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" >>"$dir/data/postgresql.conf"
        method=trust
        if [ -n "$password" ]; then method=scram-sha-256; fi
        # TCP over TLS only: no `host` line, so a plain TCP connection is refused.
        printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 $method" "hostssl all all ::1/128 $method" >"$dir/data/pg_hba.conf"
        host=localhost
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@$host:$port/postgres"
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
