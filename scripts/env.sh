# shellcheck shell=bash
# Environment for running shoprec against the local emulators started by
# scripts/stack.sh. Source it from bash: `source scripts/env.sh`.
# Every variable keeps a value that is already set, so a caller can point
# one service elsewhere. AWS_PROFILE is never set.

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Fake credentials, which DynamoDB Local and moto accept. A key that is
# already set is kept with its secret, so a real key is never paired with the
# fake secret.
if [[ -z "${AWS_ACCESS_KEY_ID:-}" ]]; then
    export AWS_ACCESS_KEY_ID=local
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
elif [[ "$AWS_ACCESS_KEY_ID" != local ]]; then
    log "env.sh: keeping the AWS_ACCESS_KEY_ID that is already set; the emulators accept any key"
fi
export AWS_REGION="${AWS_REGION:-eu-west-1}"
# boto3 and SAM CLI read AWS_DEFAULT_REGION, and the Rust SDK reads AWS_REGION.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
# Stops SDKs from querying the EC2 instance metadata endpoint (169.254.169.254)
# for credentials or region when they look beyond the variables above.
export AWS_EC2_METADATA_DISABLED="${AWS_EC2_METADATA_DISABLED:-true}"

export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:$SHOPREC_DYNAMODB_PORT}"
export AWS_ENDPOINT_URL_S3="${AWS_ENDPOINT_URL_S3:-http://127.0.0.1:$SHOPREC_S3_PORT}"

export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$SHOPREC_CACHE/onnxruntime/libonnxruntime.so.1.31.1}"

# Table and bucket names that the Lambda functions read.
export ITEMS_TABLE="${ITEMS_TABLE:-shoprec-items}"
export PROFILES_TABLE="${PROFILES_TABLE:-shoprec-profiles}"
export EVENTS_TABLE="${EVENTS_TABLE:-shoprec-events}"
export MODEL_STATE_TABLE="${MODEL_STATE_TABLE:-shoprec-model-state}"
export LIVE_PROFILES_TABLE="${LIVE_PROFILES_TABLE:-shoprec-live-profiles}"
export ARTIFACT_BUCKET="${ARTIFACT_BUCKET:-shoprec-artifacts}"

# Java 17 and the DynamoDB Local jar, for tests that start and stop their own
# DynamoDB Local. Each stays unset when scripts/install-tools.sh has not
# installed it, so sourcing this file never fails on a machine without Java.
if [[ -z "${SHOPREC_JAVA17:-}" ]]; then
    if SHOPREC_JAVA17="$(shoprec_find_java17)"; then
        export SHOPREC_JAVA17
    else
        unset SHOPREC_JAVA17
    fi
fi
if [[ -z "${SHOPREC_DYNAMODB_LOCAL_JAR:-}" ]]; then
    if SHOPREC_DYNAMODB_LOCAL_JAR="$(shoprec_find_dynamodb_local_jar)"; then
        export SHOPREC_DYNAMODB_LOCAL_JAR
    else
        unset SHOPREC_DYNAMODB_LOCAL_JAR
    fi
fi
