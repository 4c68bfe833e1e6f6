#!/usr/bin/env bash
# Cold start and warm load of the four shoprec Lambda functions under the
# Lambda Runtime Interface Emulator of the SAM CLI (scripts/bench_lambda.py).
#
# Usage: scripts/bench-lambda.sh [--skip-build] [bench_lambda.py options]
#
#   --skip-build  use the bootstraps in $CARGO_TARGET_DIR/lambda/ as they are
#                 instead of running `cargo lambda build --release`
#
# Options after it go to bench_lambda.py, for example `--repeats 10
# --requests 2000 --json results.json`, or one more `--function
# NAME=COMMAND[@FOLDER]:EVENT` to time another runtime with the same harness.
#
# Requires the local stack and a published model, as scripts/test-sam-local.sh
# does: `bash scripts/stack.sh start`, `source scripts/env.sh`, then
# `$CARGO_TARGET_DIR/release/trainer setup` and
# `$CARGO_TARGET_DIR/release/trainer train --data <online_retail.csv.gz>`.
# Set SHOPREC_DYNAMODB_PORT and SHOPREC_S3_PORT as for the stack.
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/env.sh
source "$SCRIPTS_DIR/env.sh"

skip_build=0
if [[ "${1:-}" == --skip-build ]]; then
    skip_build=1
    shift
elif [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
    exit 0
fi

cd "$SHOPREC_ROOT"
if ((skip_build == 0)); then
    log "cargo lambda build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo lambda build --release --locked --bin similarity --bin preferences --bin inference --bin live-profile
fi

lambda_dir=$CARGO_TARGET_DIR/lambda
# live-profile gets the stream batch of events/stream/new-events.json, and
# the HTTP functions each get one API Gateway event of their routes.
exec "$SHOPREC_VENV/bin/python" "$SCRIPTS_DIR/bench_lambda.py" \
    --function "similarity=$lambda_dir/similarity/bootstrap:events/similar-items.json" \
    --function "preferences=$lambda_dir/preferences/bootstrap:events/preferences.json" \
    --function "inference=$lambda_dir/inference/bootstrap:events/recommendations.json" \
    --function "live-profile=$lambda_dir/live-profile/bootstrap:events/stream/new-events.json" \
    "$@"
