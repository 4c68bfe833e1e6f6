#!/usr/bin/env bash
# Invoke Lambda functions of a built SAM template once per event file with
# `sam local invoke`, through the podman service of scripts/podman.sh.
#
# Usage:
#   scripts/sam-invoke-events.sh [--template FILE] [--env-vars FILE] \
#       FunctionLogicalId=events/file.json... [-- EXTRA_SAM_ARGS...]
#
#   --template FILE   built template (default: .aws-sam/build/template.yaml)
#   --env-vars FILE   JSON file of environment variables per function, the
#                     format of `sam local invoke --env-vars`
#   -- ARGS           passed to every `sam local invoke`, for example
#                     --parameter-overrides
#
# Each response is written to $SHOPREC_STATE/sam-invoke/<event-name>.json,
# where <event-name> is the event file name without .json, and SAM's log to
# <event-name>.log beside it. invokes.tsv there has one line per invoke of
# the last run: event name, function, exit status of SAM, wall seconds.
# The exit status is 2 for invalid arguments and 1 when any invoke failed:
# SAM exited non-zero, or the response is empty, is not JSON, or is a Lambda
# error ({"errorType": ..., "errorMessage": ...}). An HTTP error status inside
# an API Gateway response is not an invoke failure.
#
# Environment:
#   SHOPREC_STATE  output folder parent (default: <repository>/.local)
#   SHOPREC_CACHE  contains the SAM CLI venv (default: $HOME/.cache/shoprec)
#   SAM_PYTHON     Python of the SAM CLI venv (default: $SHOPREC_CACHE/venv/bin/python)
#
# Requires `scripts/podman.sh setup` and `scripts/podman.sh start`. Functions
# run in the host network namespace, so they reach services on 127.0.0.1.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHOPREC_STATE=${SHOPREC_STATE:-$REPO_ROOT/.local}
SHOPREC_CACHE=${SHOPREC_CACHE:-$HOME/.cache/shoprec}
SAM_PYTHON=${SAM_PYTHON:-$SHOPREC_CACHE/venv/bin/python}
OUTPUT_DIR=$SHOPREC_STATE/sam-invoke

log() {
    printf 'sam-invoke-events.sh: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 2
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

template=.aws-sam/build/template.yaml
env_vars=
functions=()
events=()
extra_args=()

while [ $# -gt 0 ]; do
    case "$1" in
        --template)
            [ $# -ge 2 ] || die "--template requires a file"
            template=$2
            shift 2
            ;;
        --env-vars)
            [ $# -ge 2 ] || die "--env-vars requires a file"
            env_vars=$2
            shift 2
            ;;
        -h | --help) usage ;;
        --)
            shift
            extra_args=("$@")
            break
            ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *=*)
            functions+=("${1%%=*}")
            events+=("${1#*=}")
            shift
            ;;
        *) die "invalid argument: $1; expected FunctionLogicalId=EVENT_FILE" ;;
    esac
done

[ ${#events[@]} -gt 0 ] || die "no FunctionLogicalId=EVENT_FILE pair given (see --help)"
[ -f "$template" ] || die "template not found: $template; run sam build first or pass --template"
[ -z "$env_vars" ] || [ -f "$env_vars" ] || die "env-vars file not found: $env_vars"
[ -x "$SAM_PYTHON" ] || die "SAM CLI Python not found: $SAM_PYTHON; run scripts/install-tools.sh or set SAM_PYTHON"

# Check every pair before the first invoke, so a typo fails in a second, not
# after minutes of invokes.
declare -A function_of_name=()
names=()
for i in "${!events[@]}"; do
    [ -n "${functions[$i]}" ] || die "empty FunctionLogicalId in ${functions[$i]}=${events[$i]}"
    [ -f "${events[$i]}" ] || die "event file not found: ${events[$i]}"
    name=$(basename "${events[$i]}")
    name=${name%.json}
    if [ -n "${function_of_name[$name]:-}" ]; then
        die "two events named $name (for ${function_of_name[$name]} and ${functions[$i]}) would write the same $OUTPUT_DIR/$name.json; rename one"
    fi
    function_of_name[$name]=${functions[$i]}
    names+=("$name")
done

eval "$("$REPO_ROOT/scripts/podman.sh" env)"
socket=${DOCKER_HOST#unix://}
if [ "$(curl -s --max-time 5 --unix-socket "$socket" http://d/_ping 2>/dev/null)" != "OK" ]; then
    die "podman service does not respond on $socket; run scripts/podman.sh start"
fi
export SAM_CLI_TELEMETRY=0

mkdir -p "$OUTPUT_DIR"
env_vars_args=()
[ -z "$env_vars" ] || env_vars_args=(--env-vars "$env_vars")

# Print why a response is not a successful invoke, or nothing when it is.
check_response() {
    "$SAM_PYTHON" - "$1" <<'EOF'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()
if not text.strip():
    print("empty response")
    sys.exit()
try:
    response = json.loads(text)
except json.JSONDecodeError as error:
    print(f"response is not JSON: {error}")
    sys.exit()
if isinstance(response, dict) and "errorType" in response and "errorMessage" in response:
    print(f"Lambda error {response['errorType']}: {response['errorMessage']}")
EOF
}

summary_file=$OUTPUT_DIR/invokes.tsv
: >"$summary_file"
failed=0
for i in "${!events[@]}"; do
    function=${functions[$i]}
    event=${events[$i]}
    name=${names[$i]}
    response_file=$OUTPUT_DIR/$name.json
    log_file=$OUTPUT_DIR/$name.log
    rm -f "$response_file" "$log_file"

    started=$(date +%s.%N)
    status=0
    # The function id comes first because a multi-value option among the
    # extra arguments, such as --parameter-overrides, would take it as a value.
    "$SAM_PYTHON" "$REPO_ROOT/scripts/sam_host_network.py" local invoke "$function" \
        --template "$template" \
        "${env_vars_args[@]}" \
        --event "$event" \
        --skip-pull-image \
        --docker-network host \
        "${extra_args[@]}" >"$response_file" 2>"$log_file" || status=$?
    seconds=$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }')
    printf '%s\t%s\t%s\t%s\n' "$name" "$function" "$status" "$seconds" >>"$summary_file"

    if [ "$status" -ne 0 ]; then
        reason="sam local invoke exited with status $status"
    else
        reason=$(check_response "$response_file")
    fi

    if [ -n "$reason" ]; then
        failed=1
        log "FAIL $function $event (${seconds}s): $reason; log: $log_file"
        tail -n 20 "$log_file" >&2
    else
        log "ok   $function $event (${seconds}s) -> $response_file"
    fi
done

exit "$failed"
