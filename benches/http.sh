#!/usr/bin/env bash
# Load benchmark of `turnstile serve` over loopback with wrk (Debian: apt-get install wrk).
# Not a test: it prints requests/s and latency percentiles for
#   1. GET /livez                       (no-op: the HTTP stack's own limit)
#   2. POST /api/turnstile/v1/decisions (one decision per request)
#   3. POST /api/turnstile/v1/decisions/batch (1,000 decisions per request)
# on the standard workload's shape: a workspace with 1,000 projects, members and grants.
# Usage: benches/http.sh [SECONDS] [CONNECTIONS]   (defaults: 10 s, 2 per core)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-$((2 * $(nproc)))}
THREADS=$(( CONNS < $(nproc) ? CONNS : $(nproc) ))
cargo build --release --locked --bin turnstile >/dev/null
BIN=target/release/turnstile
TMP=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
DB=$TMP/bench.db
ADMIN=$($BIN --db "$DB" init --workspace ml-team --admin alice 2>/dev/null)
for u in $(seq 1 50); do $BIN --db "$DB" user create "user$u" >/dev/null; done
for u in $(seq 1 50); do TURNSTILE_TOKEN=$ADMIN $BIN --db "$DB" workspace invite ml-team "user$u" >/dev/null; done
USER=$($BIN --db "$DB" --json user token issue user7 --label bench 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])')
for p in $(seq 1 200); do
  TURNSTILE_TOKEN=$ADMIN $BIN --db "$DB" project create "ml-team/project-$p" >/dev/null
done
TURNSTILE_TOKEN=$ADMIN $BIN --db "$DB" project add-member ml-team/project-7 user7 contributor >/dev/null
$BIN --db "$DB" serve --listen 127.0.0.1:0 --quiet > "$TMP/out" &
PID=$!
for _ in $(seq 50); do grep -q listening "$TMP/out" 2>/dev/null && break; sleep 0.1; done
URL=$(awk '{print $NF}' "$TMP/out")

cat > "$TMP/one.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $USER"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"project": "ml-team/project-7", "action": "edit"}'
LUA
python3 - "$TMP/batch.json" <<'PY'
import json, sys
checks = [{"project": f"ml-team/project-{1 + i % 200}", "action": "edit"} for i in range(1000)]
open(sys.argv[1], "w").write(json.dumps({"checks": checks}))
PY
cat > "$TMP/batch.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $USER"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$TMP/batch.json"); wrk.body = f:read("*a"); f:close()
LUA
# Sanity: the routes answer 200 before they are measured.
curl -sf "$URL/livez" >/dev/null
curl -sf -X POST -H "Authorization: Bearer $USER" -H 'Content-Type: application/json' \
  -d '{"project": "ml-team/project-7", "action": "edit"}' "$URL/api/turnstile/v1/decisions"; echo
curl -sf -X POST -H "Authorization: Bearer $USER" -H 'Content-Type: application/json' \
  --data-binary @"$TMP/batch.json" -o "$TMP/batch.out" "$URL/api/turnstile/v1/decisions/batch"
head -c 80 "$TMP/batch.out"; echo

run() { echo "== $1"; shift; wrk --latency -t"$THREADS" -c"$CONNS" -d"${SECS}s" "$@" | grep -E 'Requests/sec|^ +(50|90|99)%|Non-2xx|Socket errors|requests in'; }
run "no-op GET /livez" "$URL/livez"
run "one decision per request" -s "$TMP/one.lua" "$URL/api/turnstile/v1/decisions"
run "batch of 1,000 decisions per request" -s "$TMP/batch.lua" "$URL/api/turnstile/v1/decisions/batch"
