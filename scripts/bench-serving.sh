#!/usr/bin/env bash
# Runs the Criterion benchmarks of the serving hot paths (shared/benches/serving.rs)
# on the Online Retail data: candidates, features, ONNX scoring, response
# serialisation, serve() and the embedding fold-in. The setup trains a model
# in memory first, which takes about 10 s.
#
# Usage: bash scripts/bench-serving.sh [DATA] [CRITERION ARGS...]
# DATA defaults to $SHOPREC_DATA or the cached download (scripts/fetch-data.sh).
# CRITERION ARGS go to the benchmark, for example a filter such as `serve`
# or `--measurement-time 10`. Pass "" as DATA to use the default data with
# them. Criterion keeps its estimates under $CARGO_TARGET_DIR/criterion.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

data="${1:-${SHOPREC_DATA:-}}"
shift || true
data="$(bash "$SHOPREC_ROOT/scripts/fetch-data.sh" ${data:+"$data"})"
# Cargo runs the benchmark from shared/, so a relative path must be resolved first.
data="$(realpath "$data")"
cd "$SHOPREC_ROOT"

# shellcheck source=scripts/env.sh
source scripts/env.sh
if [[ ! -f "$ORT_DYLIB_PATH" ]]; then
    log "ONNX Runtime library $ORT_DYLIB_PATH not found; installing the tools"
    bash scripts/install-tools.sh
fi

log "Benchmarking the serving paths on $data"
SHOPREC_DATA="$data" cargo bench --locked -p shoprec --bench serving -- "$@"
