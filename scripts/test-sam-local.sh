#!/usr/bin/env bash
# End-to-end test of the three Lambda functions in the SAM CLI's Lambda
# emulator: `sam build`, then one `sam local invoke` per event in events/,
# with the functions reading the local stack.
#
# Usage: scripts/test-sam-local.sh [--skip-build]
#
#   --skip-build  reuse .aws-sam/build from an earlier run instead of running
#                 `sam build`
#
# Requires, and checks before it starts:
#   - scripts/install-tools.sh has run (SAM CLI, cargo-lambda, ONNX Runtime);
#   - scripts/stack.sh start is running and `source scripts/env.sh` is done;
#   - a model is published: `$CARGO_TARGET_DIR/release/trainer setup`, then
#     `$CARGO_TARGET_DIR/release/trainer train --data <online_retail.csv.gz>`.
# `scripts/podman.sh setup` runs here and installs Debian packages when they
# are missing, which needs root.
#
# Prints one line per event and then `sam-local: N passed, M failed`. Exits 0
# only when all events pass. Responses and SAM logs are in
# $SHOPREC_STATE/sam-invoke, the `sam build` log in $SHOPREC_STATE/sam-local.
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ORT_LIBRARY_NAME=libonnxruntime.so.1.31.1
# Amazon Linux 2023, the OS of the provided.al2023 runtime, ships glibc 2.34
# (AL2023 User Guide, "Core toolchain packages"). The local base image from
# scripts/podman.sh is Debian 12 with glibc 2.36, so only this check catches
# a binary that needs a newer glibc than Lambda has.
MAX_GLIBC=2.34
FUNCTIONS=(SimilarityFunction PreferencesFunction InferenceFunction LiveProfileFunction)
# FunctionLogicalId=event pairs for scripts/sam-invoke-events.sh.
# post-events runs before preferences, so the preference profile includes the
# posted events, and before the stream batch, which names those events.
INVOKES=(
    SimilarityFunction=events/similar-items.json
    SimilarityFunction=events/popular-items.json
    InferenceFunction=events/recommendations.json
    PreferencesFunction=events/post-events.json
    PreferencesFunction=events/preferences.json
    LiveProfileFunction=events/stream/new-events.json
)
# Variables copied from this shell into every function's environment.
# MODEL_REFRESH_SECONDS and RUST_LOG are copied only when set, otherwise the
# template's defaults apply.
REQUIRED_VARIABLES=(ITEMS_TABLE PROFILES_TABLE EVENTS_TABLE MODEL_STATE_TABLE LIVE_PROFILES_TABLE ARTIFACT_BUCKET
    AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_S3 AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY)
OPTIONAL_VARIABLES=(MODEL_REFRESH_SECONDS RUST_LOG)

die() {
    printf 'test-sam-local.sh: error: %s\n' "$*" >&2
    exit 1
}

skip_build=0
case "${1:-}" in
    "") ;;
    --skip-build) skip_build=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

# --- Preconditions -----------------------------------------------------------

check_environment() {
    local name
    for name in "${REQUIRED_VARIABLES[@]}" ORT_DYLIB_PATH CARGO_TARGET_DIR SHOPREC_VENV; do
        [ -n "${!name:-}" ] || die "$name is not set: run 'source scripts/env.sh' first"
    done

    # The functions and the model check use only DynamoDB and S3, so these
    # two endpoints keep this test off real AWS.
    local variable host
    for variable in AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_S3; do
        host=${!variable#*://}
        host=${host%%/*}
        if [[ "$host" =~ ^(.*):[0-9]+$ ]]; then
            host=${BASH_REMATCH[1]}
        fi
        case "$host" in
            127.0.0.1 | localhost | "[::1]") ;;
            *) die "$variable=${!variable} is not a loopback address: this test only runs against the local stack" ;;
        esac
    done
}

check_tools() {
    local tool
    for tool in python sam cargo-lambda; do
        [ -x "$SHOPREC_VENV/bin/$tool" ] || die "$SHOPREC_VENV/bin/$tool not found: run scripts/install-tools.sh"
    done
    command -v cargo >/dev/null || die "cargo not found on PATH: install the Rust toolchain with rustup"
    [ -f "$ORT_DYLIB_PATH" ] || die "ONNX Runtime library $ORT_DYLIB_PATH not found: run scripts/install-tools.sh"
}

# Check that both emulators respond and that the model named by the active
# pointer is in the artifact bucket. Prints the active model version.
check_published_model() {
    "$SHOPREC_VENV/bin/python" - <<'EOF'
import os
import sys

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError


def fail(message):
    sys.exit(f"test-sam-local.sh: error: {message}")


dynamodb_endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
s3_endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
table = os.environ["MODEL_STATE_TABLE"]
bucket = os.environ["ARTIFACT_BUCKET"]
trainer = os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "trainer")
train = f"run '{trainer} setup', then '{trainer} train --data <online_retail.csv.gz>'"

dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
try:
    item = dynamodb.get_item(TableName=table, Key={"name": {"S": "active"}}, ConsistentRead=True).get("Item")
except EndpointConnectionError:
    fail(f"DynamoDB Local does not respond at {dynamodb_endpoint}: run scripts/stack.sh start")
except ClientError as error:
    if error.response["Error"]["Code"] == "ResourceNotFoundException":
        fail(f"table {table} not found in {dynamodb_endpoint}: {train}")
    raise
if not item or "model_version" not in item or "manifest_key" not in item:
    fail(f"no model published: {table} has no complete item name=active; {train}")
version = item["model_version"]["S"]
manifest_key = item["manifest_key"]["S"]

s3 = boto3.client("s3", endpoint_url=s3_endpoint)
try:
    s3.head_object(Bucket=bucket, Key=manifest_key)
except EndpointConnectionError:
    fail(f"the S3 emulator does not respond at {s3_endpoint}: run scripts/stack.sh start")
except ClientError as error:
    fail(f"active model {version} has no manifest s3://{bucket}/{manifest_key} ({error}): {train}")
print(version)
EOF
}

# --- Build -------------------------------------------------------------------

# The layer's ContentUri is layers/onnxruntime/, so lib/ inside it becomes
# /opt/lib in the function container, where the inference function looks.
copy_onnxruntime_layer() {
    local layer_lib=$SHOPREC_ROOT/layers/onnxruntime/lib
    local target=$layer_lib/$ORT_LIBRARY_NAME
    mkdir -p "$layer_lib"
    if [ -f "$target" ] && [ "$(sha256sum <"$target")" = "$(sha256sum <"$ORT_DYLIB_PATH")" ]; then
        log "layer library $target is up to date"
        return
    fi
    cp "$ORT_DYLIB_PATH" "$target.partial"
    mv "$target.partial" "$target"
    log "copied $ORT_DYLIB_PATH to $target"
}

# Run `sam build`. cargo-lambda builds into $CARGO_TARGET_DIR, because
# aws-lambda-builders 1.67.0 takes the target folder from `cargo metadata`,
# so the release build is reused between runs and checkouts.
run_sam_build() {
    local build_log=$STATE_DIR/sam-build.log started=$SECONDS
    log "sam build (CARGO_TARGET_DIR=$CARGO_TARGET_DIR), log: $build_log"
    if ! (cd "$SHOPREC_ROOT" && "$SHOPREC_VENV/bin/sam" build --template-file template.yaml) >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "sam build failed after $((SECONDS - started)) s. Full log: $build_log"
    fi
    log "sam build finished in $((SECONDS - started)) s"
}

# Print the highest GLIBC_x.y symbol version that a binary requires. The
# version names only occur in the dynamic section's version tables, so grep
# finds them without binutils.
max_glibc_version() {
    grep -aoE 'GLIBC_2\.[0-9]+(\.[0-9]+)?' "$1" | sed 's/^GLIBC_//' | sort -uV | tail -n 1
}

check_binaries() {
    local function binary version
    for function in "${FUNCTIONS[@]}"; do
        binary=$SHOPREC_ROOT/.aws-sam/build/$function/bootstrap
        [ -x "$binary" ] || die "$binary not found: run without --skip-build"
        version=$(max_glibc_version "$binary")
        [ -n "$version" ] || die "$binary names no GLIBC version: is it a glibc binary?"
        if [ "$(printf '%s\n%s\n' "$version" "$MAX_GLIBC" | sort -V | tail -n 1)" != "$MAX_GLIBC" ]; then
            die "$binary needs glibc $version, but provided.al2023 has glibc $MAX_GLIBC"
        fi
        log "$function: bootstrap $(du -h "$binary" | cut -f1), needs glibc $version"
    done
    # sam build does not copy a layer without a BuildMethod: the built
    # template's ContentUri still points at layers/onnxruntime/.
    local layer_library=$SHOPREC_ROOT/layers/onnxruntime/lib/$ORT_LIBRARY_NAME
    [ -f "$layer_library" ] || die "$layer_library not found: run without --skip-build"
}

# --- Invoke ------------------------------------------------------------------

# Write the --env-vars file: the same variables for every function, taken
# from this shell.
write_env_vars() {
    local names=("${REQUIRED_VARIABLES[@]}") name
    for name in "${OPTIONAL_VARIABLES[@]}"; do
        [ -z "${!name:-}" ] || names+=("$name")
    done
    local functions
    functions=$(IFS=,; printf '%s' "${FUNCTIONS[*]}")
    "$SHOPREC_VENV/bin/python" - "$ENV_VARS_FILE" "$functions" "${names[@]}" <<'EOF'
import json
import os
import sys

path, functions, names = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
variables = {name: os.environ[name] for name in names}
with open(path, "w", encoding="utf-8") as file:
    json.dump({function: variables for function in functions}, file, indent=2, sort_keys=True)
    file.write("\n")
EOF
}

podman_started=0

stop_podman() {
    if [ "$podman_started" -eq 1 ]; then
        "$SCRIPTS_DIR/podman.sh" stop || log "stopping the podman service failed; run scripts/podman.sh stop"
    fi
}

start_podman() {
    "$SCRIPTS_DIR/podman.sh" setup
    if "$SCRIPTS_DIR/podman.sh" status >/dev/null 2>&1; then
        log "podman service already running; it stays running after the test"
        return
    fi
    # Set before the start, so the trap also stops a service whose start
    # timed out after it was launched.
    podman_started=1
    "$SCRIPTS_DIR/podman.sh" start
}

main() {
    check_environment
    # shellcheck source=scripts/common.sh
    source "$SCRIPTS_DIR/common.sh"
    STATE_DIR=$SHOPREC_STATE/sam-local
    ENV_VARS_FILE=$STATE_DIR/env-vars.json
    local invoke_dir=$SHOPREC_STATE/sam-invoke
    mkdir -p "$STATE_DIR"

    check_tools
    local model_version
    model_version=$(check_published_model)
    log "active model $model_version"

    if [ "$skip_build" -eq 0 ]; then
        copy_onnxruntime_layer
        run_sam_build
    fi
    check_binaries
    write_env_vars

    # bash runs the EXIT trap on exit, and these two turn SIGINT and SIGTERM
    # into an exit, after the running child command returns.
    trap stop_podman EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_podman

    cd "$SHOPREC_ROOT"
    # RIE log level debug, so the SAM logs contain the INIT REPORT line with
    # the function's init time, which check_sam_responses.py prints.
    export SAM_CLI_RIE_DEV=1
    local started=$SECONDS invoke_status=0
    # A summary left by an earlier run must not stand in for this one.
    rm -f "$invoke_dir/invokes.tsv"
    "$SCRIPTS_DIR/sam-invoke-events.sh" --env-vars "$ENV_VARS_FILE" "${INVOKES[@]}" || invoke_status=$?
    log "invokes finished in $((SECONDS - started)) s (sam-invoke-events.sh exit status $invoke_status)"

    # Stopped before the checks, so their summary is the last line of output.
    stop_podman
    podman_started=0

    # The checks report every event, including those whose invoke failed.
    "$SHOPREC_VENV/bin/python" "$SCRIPTS_DIR/check_sam_responses.py" "$invoke_dir"
}

main
