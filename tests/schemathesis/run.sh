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
#   ST_WORKERS     concurrent workers (default: 1; see below)
#   ST_REPORT_DIR  where to write the JUnit report (default: target/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${TURNSTILE_BIN:-$PWD/target/debug/turnstile}
ST=${ST:-st}
SEED=${ST_SEED:-20240610}
MAX_TIME=${ST_MAX_TIME:-120}
WORKERS=${ST_WORKERS:-1}
REPORT_DIR=${ST_REPORT_DIR:-$PWD/target/schemathesis}
case $REPORT_DIR in /*) ;; *) REPORT_DIR=$PWD/$REPORT_DIR ;; esac

ST_PATH=$(command -v "$ST") || { echo "schemathesis (\`$ST\`) not found" >&2; exit 1; }
case $ST_PATH in /*) ;; *) ST_PATH=$PWD/$ST_PATH ;; esac
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

# The world the run starts from: a workspace with its admin, a member, a service
# account and a project, named as the document's examples are (`ml-team`, `bob`,
# `cicd@ml-team`, `ml-team/cls`), so that the examples phase reaches real resources.
setup() { "$@" 2>>"$TMP/setup.log" || { cat "$TMP/setup.log" >&2; exit 1; }; }
ADMIN=$(setup ts init --workspace ml-team --admin alice)
setup ts user create bob >/dev/null
as_admin() { setup env TURNSTILE_TOKEN="$ADMIN" "$BIN" --db "$DB" "$@" >/dev/null; }
as_admin workspace invite ml-team bob
as_admin service-account create ml-team cicd
as_admin project create ml-team/cls
as_admin project add-member ml-team/cls bob viewer

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

# How the run is configured, and why:
# - every check (`--checks all`), in every phase (examples, coverage, fuzzing, stateful);
# - one worker: the same seed then makes the same requests in the same order, and
#   Python 3.11's `ast.parse`, which Hypothesis calls to describe its filters, is not
#   safe across threads ("AST constructor recursion depth mismatch", CPython gh-106905);
# - run from the temporary directory, where schemathesis keeps its `.schemathesis` cache;
# - as the workspace's admin, so that management calls get past 403;
# - `DELETE /tokens/{id}` (operation `revoke_token`) is left out: the run would revoke
#   the very token it authenticates with (it lists it with `GET /tokens`) and every later
#   request would only see 401. tests/http.rs covers it
#   (h3_every_route_answers_for_an_admin, t6_access_tokens_...);
# - strings are generated in ASCII (`--generation-codec ascii`): a project name's rules
#   beyond ASCII (N3: no character outside the Basic Multilingual Plane, none that is
#   a format, private-use, unassigned or default-ignorable character, length counted
#   after NFC) cannot be written as a JSON Schema pattern, so for non-ASCII input the
#   documented pattern is a superset and the server's 422 would be reported as a
#   rejected valid request. On ASCII every documented pattern is exact. The Unicode
#   rules are tested in tests/names.rs and tests/properties.rs.
mkdir -p "$REPORT_DIR"
status=0
(cd "$TMP" && "$ST_PATH" run "$URL/api/turnstile/v1/openapi.json" \
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
    "$@") || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the server died during the run" >&2
    status=1
fi
exit "$status"
