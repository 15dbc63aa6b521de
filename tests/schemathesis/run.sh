#!/usr/bin/env bash
# Runs schemathesis against the native API's OpenAPI document as `turnstile serve`
# serves it, on a fresh database, and fails on any failed check (issue 10, item 7:
# "every documented route answers with its documented status codes and schemas").
#
#   tests/schemathesis/run.sh            # needs $ST (default: schemathesis's `st` on PATH)
#
# Environment:
#   TURNSTILE_BIN  the server binary (default: target/debug/turnstile)
#   ST             the schemathesis executable (default: st)
#   ST_SEED        the seed (default: fixed, so a CI failure can be replayed)
#   ST_MAX_TIME    the time budget in seconds (default: 120)
#   ST_WORKERS     concurrent workers (default: 2)
#   ST_REPORT_DIR  where to write the JUnit report (default: target/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${TURNSTILE_BIN:-$PWD/target/debug/turnstile}
ST=${ST:-st}
SEED=${ST_SEED:-20240610}
MAX_TIME=${ST_MAX_TIME:-120}
WORKERS=${ST_WORKERS:-2}
REPORT_DIR=${ST_REPORT_DIR:-$PWD/target/schemathesis}

command -v "$ST" >/dev/null || { echo "schemathesis (\`$ST\`) not found" >&2; exit 1; }
[ -x "$BIN" ] || { echo "turnstile binary \`$BIN\` not found: cargo build --bin turnstile" >&2; exit 1; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

DB=$TMP/acl.db
ts() { env -u TURNSTILE_TOKEN "$BIN" --db "$DB" "$@"; }

# The world the run starts from: a workspace with its admin, a member and a project.
ADMIN=$(ts init --workspace ml-team --admin alice)
ts user create bob >/dev/null
TURNSTILE_TOKEN=$ADMIN "$BIN" --db "$DB" workspace invite ml-team bob >/dev/null
TURNSTILE_TOKEN=$ADMIN "$BIN" --db "$DB" project create ml-team/cls >/dev/null

"$BIN" --db "$DB" serve --listen 127.0.0.1:0 --quiet >"$TMP/stdout" 2>"$TMP/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 100); do
    URL=$(sed -n 's/^turnstile: listening on //p' "$TMP/stdout")
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; echo "the server did not start" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "the server did not print its address" >&2; exit 1; }
echo "turnstile serving on $URL"

mkdir -p "$REPORT_DIR"
status=0
"$ST" run "$URL/api/turnstile/v1/openapi.json" \
    --header "Authorization: Bearer $ADMIN" \
    --checks all \
    --seed "$SEED" \
    --max-time "$MAX_TIME" \
    --workers "$WORKERS" \
    --generation-database none \
    --generation-codec ascii \
    --exclude-operation-id revoke_token \
    --request-timeout 10 \
    --no-color \
    --report junit --report-junit-path "$REPORT_DIR/junit.xml" \
    "$@" || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server died during the run" >&2
    status=1
fi
exit "$status"
