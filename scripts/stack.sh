#!/usr/bin/env bash
# Start, stop or show the local AWS emulators: DynamoDB Local (in memory) on
# $SHOPREC_DYNAMODB_PORT and moto's S3 server on $SHOPREC_S3_PORT.
# Pid files and logs are in $SHOPREC_STATE/stack. Run scripts/install-tools.sh first.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STACK_DIR="$SHOPREC_STATE/stack"
# Seconds to wait for a service to respond to HTTP after it starts.
STARTUP_TIMEOUT="${SHOPREC_STACK_TIMEOUT:-60}"
# Seconds to wait after SIGTERM before sending SIGKILL.
STOP_TIMEOUT=10
SERVICES=(dynamodb s3)

usage() {
    cat <<EOF
Usage: $0 start|stop|restart|status

  start    start DynamoDB Local and moto in the background and wait until both respond
  stop     stop the processes recorded in $STACK_DIR/*.pid
  restart  stop, then start
  status   print what runs, and exit 0 when both services respond or 3 otherwise

Ports: SHOPREC_DYNAMODB_PORT=$SHOPREC_DYNAMODB_PORT, SHOPREC_S3_PORT=$SHOPREC_S3_PORT.
SHOPREC_STACK_TIMEOUT sets the seconds start waits for each service (default 60).
EOF
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

service_port() {
    case "$1" in
        dynamodb) printf '%s\n' "$SHOPREC_DYNAMODB_PORT" ;;
        s3) printf '%s\n' "$SHOPREC_S3_PORT" ;;
    esac
}

service_port_variable() {
    case "$1" in
        dynamodb) printf 'SHOPREC_DYNAMODB_PORT\n' ;;
        s3) printf 'SHOPREC_S3_PORT\n' ;;
    esac
}

# A string that the command line of the service's process contains. It guards
# against signalling an unrelated process that reused a stale pid.
service_marker() {
    case "$1" in
        dynamodb) printf 'DynamoDBLocal.jar\n' ;;
        s3) printf 'moto_server\n' ;;
    esac
}

pid_file() {
    printf '%s/%s.pid\n' "$STACK_DIR" "$1"
}

# File with the port that a running service was started on, which can differ
# from the current SHOPREC_*_PORT setting.
port_file() {
    printf '%s/%s.port\n' "$STACK_DIR" "$1"
}

# Print the port that service $1 was started on, or the configured port when
# no port file exists.
recorded_port() {
    local file
    file="$(port_file "$1")"
    if [[ -f "$file" ]]; then
        cat "$file"
    else
        service_port "$1"
    fi
}

log_file() {
    printf '%s/%s.log\n' "$STACK_DIR" "$1"
}

# Fill the array named by $2 with the command that runs service $1.
# shellcheck disable=SC2034 # command_ref is a nameref to the caller's array.
service_command() {
    local -n command_ref="$2"
    case "$1" in
        dynamodb)
            local java jar
            java="$(shoprec_find_java17)" || die "Java 17 not found. Run scripts/install-tools.sh."
            jar="$(shoprec_find_dynamodb_local_jar)" ||
                die "DynamoDB Local not found under $SHOPREC_NPM_PREFIX. Run scripts/install-tools.sh."
            # -sharedDb makes all clients see the same tables, because without it
            # DynamoDB Local keeps one database per access key and region.
            command_ref=("$java" "-Djava.library.path=$(dirname "$jar")/DynamoDBLocal_lib" -jar "$jar"
                -disableTelemetry -inMemory -sharedDb -port "$SHOPREC_DYNAMODB_PORT")
            ;;
        s3)
            [[ -x "$SHOPREC_VENV/bin/moto_server" ]] ||
                die "moto_server not found in $SHOPREC_VENV. Run scripts/install-tools.sh."
            command_ref=("$SHOPREC_VENV/bin/moto_server" -H 127.0.0.1 -p "$SHOPREC_S3_PORT")
            ;;
    esac
}

# Print "state pgid" of a process from /proc, or return 1 when it does not exist.
# /proc is read directly because minimal Debian images have no procps.
process_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # Fields after the command name, which is in parentheses and may contain spaces.
    local state pgid
    read -r state _ pgid _ <<<"${stat##*) }"
    printf '%s %s\n' "$state" "$pgid"
}

# Return 0 when pid $1 exists and is not a zombie.
process_alive() {
    local state
    state="$(process_state "$1")" || return 1
    [[ "${state%% *}" != Z ]]
}

# Return 0 when any live process is in process group $1.
process_group_alive() {
    local stat_file pid state
    for stat_file in /proc/[0-9]*/stat; do
        pid="${stat_file#/proc/}"
        pid="${pid%/stat}"
        state="$(process_state "$pid")" || continue
        if [[ "${state%% *}" != Z && "${state#* }" == "$1" ]]; then
            return 0
        fi
    done
    return 1
}

# Print the pid recorded for service $1 when that process still runs the
# service, else return 1.
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    process_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(service_marker "$1")" || return 1
    printf '%s\n' "$pid"
}

# Return 0 when something listens on TCP port $1 and 1 when the port is free.
# It tries to bind the port on all IPv4 and IPv6 addresses, because DynamoDB
# Local binds all of them.
port_in_use() {
    local result
    result="$("$SHOPREC_VENV/bin/python" - "$1" <<'EOF'
import errno
import socket
import sys

port = int(sys.argv[1])
result = "free"
for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        continue  # IPv6 is not available
    # SO_REUSEADDR ignores TIME_WAIT connections left by a stopped server.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            result = "in-use"
        elif error.errno != errno.EADDRNOTAVAIL:
            raise
    finally:
        sock.close()
print(result)
EOF
    )" || true
    case "$result" in
        in-use) return 0 ;;
        free) return 1 ;;
        *) die "could not check whether port $1 is free (see the Python error above)." ;;
    esac
}

# Print who listens on port $1, when ss is installed.
describe_port_owner() {
    if command -v ss >/dev/null; then
        ss -ltnpH "sport = :$1" 2>/dev/null || true
    fi
}

# Return 0 when http://127.0.0.1:$1/ returns any HTTP response.
port_responds() {
    curl --silent --output /dev/null --max-time 2 "http://127.0.0.1:$1/"
}

# Return 1 with a message when the port of service $1 is taken by a process
# that is not the running service itself.
check_port_free() {
    local name="$1" port
    port="$(service_port "$name")"
    running_pid "$name" >/dev/null && return 0
    if port_in_use "$port"; then
        describe_port_owner "$port" >&2
        printf 'error: port %s for %s is already in use by another process. Stop it, or set %s to a free port.\n' \
            "$port" "$name" "$(service_port_variable "$name")" >&2
        return 1
    fi
}

launch_service() {
    local name="$1" port pid
    port="$(service_port "$name")"

    if pid="$(running_pid "$name")"; then
        local running_port
        running_port="$(recorded_port "$name")"
        [[ "$running_port" == "$port" ]] ||
            die "$name already runs on port $running_port, not on $(service_port_variable "$name")=$port. Run '$0 stop' first, or set $(service_port_variable "$name")=$running_port."
        log "$name already running (pid $pid, port $port)"
        return 0
    fi
    rm -f "$(pid_file "$name")" "$(port_file "$name")"

    local -a command
    service_command "$name" command
    local log
    log="$(log_file "$name")"
    # setsid gives the service its own process group, so stop can signal the
    # JVM or Python server together with any child it forks. The service runs
    # in $STACK_DIR so that stray files it writes stay out of the work tree.
    (cd "$STACK_DIR" && exec setsid "${command[@]}" >"$log" 2>&1 </dev/null) &
    pid=$!
    printf '%s\n' "$pid" >"$(pid_file "$name")"
    printf '%s\n' "$port" >"$(port_file "$name")"
    log "Started $name (pid $pid, port $port, log $(log_file "$name"))"
}

wait_for_service() {
    local name="$1" port pid deadline failure=""
    port="$(service_port "$name")"
    pid="$(<"$(pid_file "$name")")"
    deadline=$((SECONDS + STARTUP_TIMEOUT))

    while ! port_responds "$port"; do
        if ! process_alive "$pid"; then
            failure="$name exited during startup"
            break
        fi
        if ((SECONDS >= deadline)); then
            failure="$name timed out: no HTTP response on http://127.0.0.1:$port/ within $STARTUP_TIMEOUT s"
            break
        fi
        sleep 0.5
    done
    # Another process that took the port after the check in launch_service
    # would respond too, while ours exits because it cannot bind.
    if [[ -z "$failure" ]] && ! process_alive "$pid"; then
        failure="$name exited during startup"
    fi

    if [[ -z "$failure" ]]; then
        log "$name responds on http://127.0.0.1:$port"
        return 0
    fi
    printf 'error: %s. Last lines of %s:\n' "$failure" "$(log_file "$name")" >&2
    tail -n 30 "$(log_file "$name")" >&2 || true
    stop_service "$name"
    return 1
}

stop_service() {
    local name="$1" file pid
    file="$(pid_file "$name")"
    if ! pid="$(running_pid "$name")"; then
        if [[ -f "$file" ]]; then
            log "Removing stale pid file $file, because $name is not running"
            rm -f "$file" "$(port_file "$name")"
        else
            log "$name is not running"
        fi
        return 0
    fi

    # Signal the whole process group only when the service leads its own
    # group, which is the case when this script started it with setsid.
    local target="$pid" state
    state="$(process_state "$pid")" || true
    if [[ "${state#* }" == "$pid" ]]; then
        target="-$pid"
    fi

    log "Stopping $name (pid $pid, port $(recorded_port "$name"))"
    kill -TERM -- "$target" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while still_running "$target"; do
        if ((SECONDS >= deadline)); then
            log "$name did not stop within $STOP_TIMEOUT s after SIGTERM, sending SIGKILL"
            kill -KILL -- "$target" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    # Reap the process when this shell started it, as after a failed start.
    wait "$pid" 2>/dev/null || true
    rm -f "$file" "$(port_file "$name")"
}

# Return 0 while the kill target ("-pgid" or "pid") still has a live process.
still_running() {
    if [[ "$1" == -* ]]; then
        process_group_alive "${1#-}"
    else
        process_alive "$1"
    fi
}

start_stack() {
    command -v curl >/dev/null || die "curl not found. Run scripts/install-tools.sh."
    [[ -x "$SHOPREC_VENV/bin/python" ]] || die "venv $SHOPREC_VENV not found. Run scripts/install-tools.sh."
    mkdir -p "$STACK_DIR"
    # Absolute, because each service starts after a cd into this folder.
    STACK_DIR="$(cd "$STACK_DIR" && pwd)"

    # Check every port before starting anything, so a conflict on the
    # second port does not leave the first service running.
    local name failed=0
    for name in "${SERVICES[@]}"; do
        check_port_free "$name" || failed=1
    done
    ((failed == 0)) || exit 1

    for name in "${SERVICES[@]}"; do
        launch_service "$name"
    done
    for name in "${SERVICES[@]}"; do
        wait_for_service "$name" || failed=1
    done
    ((failed == 0)) || die "the local stack did not start. Services that did start still run: stop them with '$0 stop'."
}

stop_stack() {
    local name
    for name in "${SERVICES[@]}"; do
        stop_service "$name"
    done
}

# Print one line per service, and return 3 unless every service runs and responds.
print_status() {
    local name port pid all_up=0
    for name in "${SERVICES[@]}"; do
        port="$(service_port "$name")"
        if pid="$(running_pid "$name")"; then
            port="$(recorded_port "$name")"
            if port_responds "$port"; then
                printf '%-8s running   pid %s, http://127.0.0.1:%s\n' "$name" "$pid" "$port"
            else
                printf '%-8s starting  pid %s, no response yet on http://127.0.0.1:%s\n' "$name" "$pid" "$port"
                all_up=3
            fi
        else
            if [[ -x "$SHOPREC_VENV/bin/python" ]] && port_in_use "$port"; then
                printf '%-8s stopped   (port %s is used by another process)\n' "$name" "$port"
            else
                printf '%-8s stopped\n' "$name"
            fi
            all_up=3
        fi
    done
    return "$all_up"
}

check_port_setting() {
    local variable="$1" value="$2"
    if [[ ! "$value" =~ ^[0-9]+$ ]] || ((10#$value < 1 || 10#$value > 65535)); then
        die "invalid $variable='$value': expected a TCP port number from 1 to 65535."
    fi
}

main() {
    check_port_setting SHOPREC_DYNAMODB_PORT "$SHOPREC_DYNAMODB_PORT"
    check_port_setting SHOPREC_S3_PORT "$SHOPREC_S3_PORT"
    [[ "$SHOPREC_DYNAMODB_PORT" != "$SHOPREC_S3_PORT" ]] ||
        die "SHOPREC_DYNAMODB_PORT and SHOPREC_S3_PORT are both $SHOPREC_S3_PORT: set them to different ports."
    [[ "$STARTUP_TIMEOUT" =~ ^[0-9]+$ ]] ||
        die "invalid SHOPREC_STACK_TIMEOUT='$STARTUP_TIMEOUT': expected a whole number of seconds."

    case "${1:-}" in
        start) start_stack ;;
        stop) stop_stack ;;
        restart)
            stop_stack
            start_stack
            ;;
        status) print_status ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
