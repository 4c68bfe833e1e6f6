#!/usr/bin/env bash
# Run shoprec locally on real data in one command. The script installs the
# tools and starts DynamoDB Local and the S3 emulator. It obtains the Online
# Retail data set, trains and publishes a model, and starts the three functions
# with `cargo lambda watch`. Then it sends real requests and prints the responses.
#
# Usage: scripts/demo.sh [DATA_FILE]   start everything and show answers
#        scripts/demo.sh stop          stop the functions and the local stack
#
# DATA_FILE, or SHOPREC_DATA, names the Online Retail CSV (plain or gzip);
# without either, scripts/fetch-data.sh finds or downloads it.
# SHOPREC_API_PORT sets the port of the functions (default 9300).
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SHOPREC_ROOT"

API_PORT="${SHOPREC_API_PORT:-9300}"
WATCH_DIR="$SHOPREC_STATE/watch"
WATCH_PID="$WATCH_DIR/watch.pid"
BASE_URL="http://127.0.0.1:$API_PORT/lambda-url"

stop_functions() {
    if [[ -f "$WATCH_PID" ]]; then
        local pid
        pid="$(cat "$WATCH_PID")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            log "stopped the functions (process group $pid)"
        fi
        rm -f "$WATCH_PID"
    fi
}

if [[ "${1:-}" == "stop" ]]; then
    stop_functions
    bash scripts/stack.sh stop
    exit 0
fi

bash scripts/install-tools.sh
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
    bash scripts/stack.sh start
fi
# shellcheck source=scripts/env.sh
source scripts/env.sh

data="$(bash scripts/fetch-data.sh "${1:-${SHOPREC_DATA:-}}")"

log "building the trainer and the functions (release; the first build takes several minutes)"
cargo build --release --locked -p trainer -p similarity -p preferences -p inference

log "creating the tables and the bucket from template.yaml"
"$CARGO_TARGET_DIR/release/trainer" setup --template template.yaml

log "training on $data"
"$CARGO_TARGET_DIR/release/trainer" train --data "$data"

stop_functions
mkdir -p "$WATCH_DIR"
log "starting the functions on 127.0.0.1:$API_PORT (log: $WATCH_DIR/watch.log)"
setsid cargo lambda watch --release --ignore-changes -A 127.0.0.1 -P "$API_PORT" >"$WATCH_DIR/watch.log" 2>&1 &
echo $! >"$WATCH_PID"

ask() {
    local kind="$1" url="$2"
    shift 2
    curl --silent --show-error --max-time 30 "$@" "$url" | python3 scripts/show_answer.py "$kind" || true
    echo
}

ready=0
for _ in $(seq 1 180); do
    if curl --silent --max-time 5 "$BASE_URL/similarity/items/popular?limit=1" 2>/dev/null | grep -q model_version; then
        ready=1
        break
    fi
    sleep 1
done
if [[ "$ready" -ne 1 ]]; then
    tail -n 30 "$WATCH_DIR/watch.log" >&2
    log "the functions did not answer within 180 s; see $WATCH_DIR/watch.log"
    exit 1
fi

echo
ask similar "$BASE_URL/similarity/items/85123A/similar?limit=8"
ask popular "$BASE_URL/similarity/items/popular?limit=5"
ask recommendations "$BASE_URL/inference/users/17850/recommendations?limit=8"
ask recommendations "$BASE_URL/inference/users/new-visitor/recommendations?limit=3"
ask events "$BASE_URL/preferences/users/17850/events" -X POST -H 'content-type: application/json' \
    -d '{"events":[{"event_id":"demo-view-1","type":"view","item_id":"22423","timestamp":"2011-12-10T09:00:00Z"}]}'
ask preferences "$BASE_URL/preferences/users/17850/preferences"

cat <<EOT
The functions keep running on 127.0.0.1:$API_PORT. Query them further, for example:
  curl '$BASE_URL/similarity/items/22423/similar?limit=5'
  curl '$BASE_URL/similarity/items/popular?window=all_time&limit=20'
  curl '$BASE_URL/inference/users/12347/recommendations?limit=10'
  curl -X POST -H 'content-type: application/json' \\
       -d '{"event_id":"e-1","type":"purchase","item_id":"21034","quantity":2}' \\
       '$BASE_URL/preferences/users/12347/events'
  curl '$BASE_URL/preferences/users/12347/preferences'
Stop everything with: bash scripts/demo.sh stop
EOT
