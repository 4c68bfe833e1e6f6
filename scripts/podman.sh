#!/usr/bin/env bash
# Run Debian's podman as the Docker API that `sam local invoke` and
# `sam local start-api` talk to, with all podman configuration and state kept
# out of /etc.
#
#   scripts/podman.sh setup   install the Debian packages, write the podman
#                             configuration, import the Lambda base image
#   scripts/podman.sh start   start `podman system service` in the background
#   scripts/podman.sh stop    stop the service started by `start`
#   scripts/podman.sh status  exit 0 when that service runs and its socket
#                             responds, 3 otherwise
#   scripts/podman.sh env     print the exports for callers:
#                             eval "$(scripts/podman.sh env)"
#
# Environment:
#   SHOPREC_STATE  per-checkout state: configuration, socket, pid file, log
#                  (default: <repository>/.local)
#   SHOPREC_CACHE  state shared between checkouts and runs: image storage
#                  (default: $HOME/.cache/shoprec)
#
# The base image is not pulled: this machine reaches no container registry.
# `setup` builds a Debian bookworm root with debootstrap and imports it under
# the tag that SAM uses for the provided.al2023 runtime, so SAM must be run
# with --skip-pull-image.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHOPREC_STATE=${SHOPREC_STATE:-$REPO_ROOT/.local}
SHOPREC_CACHE=${SHOPREC_CACHE:-$HOME/.cache/shoprec}

CONFIG_DIR=$SHOPREC_STATE/podman
STORAGE_DIR=$SHOPREC_CACHE/podman
SOCKET=$CONFIG_DIR/podman.sock
PID_FILE=$CONFIG_DIR/service.pid
LOG_FILE=$CONFIG_DIR/service.log

# Per-boot state (runroot, tmp_dir) belongs on a tmpfs that a reboot empties.
# /tmp and /run may be on disk, so `start` clears this folder whenever no
# service is running. The folder is keyed on the storage path because runroot
# must pair with one graphroot. Its path stays short because conmon creates
# sockets under it and a Unix socket path is limited to 107 bytes.
RUN_DIR=${TMPDIR:-/tmp}/shoprec-podman-$(printf '%s' "$STORAGE_DIR" | sha256sum | cut -c1-12)

BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-x86_64
# Bump when the debootstrap recipe below changes, so `setup` rebuilds an image
# cached by an older version of this script.
BASE_IMAGE_RECIPE=1
BASE_IMAGE_LABEL=org.shoprec.base-image-recipe

APT_PACKAGES=(podman runc conmon debootstrap curl ca-certificates)
SERVICE_START_TIMEOUT_SECONDS=60

log() {
    printf 'podman.sh: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

export_podman_environment() {
    export CONTAINERS_CONF=$CONFIG_DIR/containers.conf
    export CONTAINERS_STORAGE_CONF=$CONFIG_DIR/storage.conf
    export CONTAINERS_REGISTRIES_CONF=$CONFIG_DIR/registries.conf
}

install_packages() {
    local missing=()
    local package
    for package in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi

    log "installing Debian packages: ${missing[*]}"
    # The lock timeout lets this wait for another apt-get run on the machine.
    apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "${missing[@]}"
}

make_directories() {
    mkdir -p "$CONFIG_DIR/networks" "$CONFIG_DIR/no-cni-plugins" "$STORAGE_DIR/storage" "$RUN_DIR/image-copy"
}

write_config() {
    make_directories

    # netns = "host" puts `podman run` containers in the host network
    # namespace. The Docker API ignores it: a create request from the docker
    # CLI or docker-py (network mode "default") gets the bridge network, which
    # would add a cni-podman0 bridge, iptables rules and files under
    # /var/lib/cni. The empty CNI plugin folder makes such a request fail
    # instead, so every container must ask for host networking itself. SAM
    # does so when started through scripts/sam_host_network.py with
    # --docker-network host.
    #
    # default_ulimits: nofile must not exceed the hard limit of the shell that
    # starts podman (20000 on the project's machines, see `ulimit -Hn`),
    # because raising it needs CAP_SYS_RESOURCE, which they do not grant.
    cat >"$CONFIG_DIR/containers.conf" <<EOF
# Written by scripts/podman.sh; changes are overwritten by its next run.
[containers]
netns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "$CONFIG_DIR/networks"
cni_plugin_dirs = ["$CONFIG_DIR/no-cni-plugins"]

# The paths below replace defaults under /run, /etc and /var/lib/containers.
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RUN_DIR/events.log"
tmp_dir = "$RUN_DIR/libpod"
static_dir = "$STORAGE_DIR/storage/libpod"
volume_path = "$STORAGE_DIR/storage/volumes"
image_copy_tmp_dir = "$RUN_DIR/image-copy"
hooks_dir = []
EOF

    cat >"$CONFIG_DIR/storage.conf" <<EOF
# Written by scripts/podman.sh; changes are overwritten by its next run.
[storage]
driver = "overlay"
graphroot = "$STORAGE_DIR/storage"
runroot = "$RUN_DIR/storage"
EOF

    # No registry is searched for short names and none is reachable anyway:
    # every image that SAM uses must already be in local storage.
    cat >"$CONFIG_DIR/registries.conf" <<EOF
# Written by scripts/podman.sh; changes are overwritten by its next run.
unqualified-search-registries = []
short-name-mode = "permissive"
EOF
}

# Print the URI of the first Debian mirror configured for apt, in either the
# one-line (sources.list) or the deb822 (*.sources) format.
find_debian_mirror() {
    local files=()
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && files+=("$file")
    done
    [ ${#files[@]} -gt 0 ] || return 1

    awk '
        /^[[:space:]]*deb[[:space:]]/ {
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; continue }
                if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit }
                break
            }
        }
        /^URIs:/ {
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit }
            }
        }
    ' "${files[@]}" | head -n 1
}

base_image_is_current() {
    local recipe
    recipe=$(podman image inspect --format "{{ index .Labels \"$BASE_IMAGE_LABEL\" }}" "$BASE_IMAGE" 2>/dev/null) || return 1
    [ "$recipe" = "$BASE_IMAGE_RECIPE" ]
}

build_base_image() {
    if base_image_is_current; then
        log "base image $BASE_IMAGE is already in $STORAGE_DIR"
        return
    fi

    local mirror
    mirror=$(find_debian_mirror) || true
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d; debootstrap needs one"

    local rootfs=$STORAGE_DIR/rootfs.tmp
    rm -rf "$rootfs"
    log "building a Debian bookworm root in $rootfs from $mirror (takes about 2 minutes)"
    # ca-certificates gives HTTPS clients in a function a CA bundle.
    if ! debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" \
        >"$STORAGE_DIR/debootstrap.log" 2>&1; then
        tail -n 20 "$STORAGE_DIR/debootstrap.log" >&2
        die "debootstrap failed; full log: $STORAGE_DIR/debootstrap.log"
    fi

    # Package caches and lists are not needed at run time and take about 84 MB
    # of the 219 MB root (bookworm minbase).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$rootfs/var/task" "$rootfs/var/runtime" "$rootfs/opt"

    # The ENV and WORKDIR values are those in the Dockerfiles of
    # github.com/aws/aws-lambda-base-images, except LANG: Debian minbase has
    # no en_US.UTF-8 locale, and C.UTF-8 is built into glibc.
    # NOTE: copied from the nodejs Dockerfiles there, not from provided.al2023.
    log "importing the root as $BASE_IMAGE"
    tar -C "$rootfs" -c . | podman import --quiet \
        --change "ENV LANG=C.UTF-8" \
        --change "ENV TZ=:/etc/localtime" \
        --change "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin" \
        --change "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib" \
        --change "ENV LAMBDA_TASK_ROOT=/var/task" \
        --change "ENV LAMBDA_RUNTIME_DIR=/var/runtime" \
        --change "WORKDIR /var/task" \
        --change "LABEL $BASE_IMAGE_LABEL=$BASE_IMAGE_RECIPE" \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "imported $BASE_IMAGE"
}

# Succeed when PID_FILE names a running `podman system service`.
service_is_running() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid=$(cat "$PID_FILE")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'podman system service'
}

socket_answers() {
    [ "$(curl -s --max-time 2 --unix-socket "$SOCKET" http://d/_ping 2>/dev/null)" = "OK" ]
}

start_service() {
    command -v podman >/dev/null || die "podman is not installed; run: scripts/podman.sh setup"
    # sockaddr_un.sun_path has room for 107 bytes plus the terminating NUL.
    [ ${#SOCKET} -le 107 ] || die "socket path $SOCKET is longer than 107 bytes; set SHOPREC_STATE to a shorter path"

    if service_is_running; then
        log "service already running (pid $(cat "$PID_FILE")), socket $SOCKET"
        return
    fi

    write_config
    # No service is running, so the per-boot state is stale. Unmount leftover
    # container root filesystems before deleting it.
    if grep -q " $RUN_DIR/" /proc/self/mountinfo; then
        grep " $RUN_DIR/" /proc/self/mountinfo | awk '{ print $5 }' | sort -r | xargs -r -n 1 umount -l
    fi
    rm -rf "$RUN_DIR"
    make_directories
    rm -f "$SOCKET"

    log "starting podman system service on unix://$SOCKET, log: $LOG_FILE"
    setsid podman system service --time=0 "unix://$SOCKET" >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"

    local waited=0
    until socket_answers; do
        if ! service_is_running; then
            tail -n 20 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            die "podman system service exited during start; log: $LOG_FILE"
        fi
        if [ "$waited" -ge "$SERVICE_START_TIMEOUT_SECONDS" ]; then
            die "socket $SOCKET did not respond within ${SERVICE_START_TIMEOUT_SECONDS}s; log: $LOG_FILE"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "service running (pid $(cat "$PID_FILE"))"
}

stop_service() {
    if ! service_is_running; then
        log "service not running"
        rm -f "$PID_FILE" "$SOCKET"
        return
    fi

    local pid
    pid=$(cat "$PID_FILE")
    log "stopping podman system service (pid $pid)"
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge 30 ]; then
            log "pid $pid did not exit within 3s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE" "$SOCKET"
}

print_status() {
    if ! service_is_running; then
        log "service not running"
        return 3
    fi
    if ! socket_answers; then
        log "service running (pid $(cat "$PID_FILE")) but socket $SOCKET does not respond"
        return 3
    fi
    log "service running (pid $(cat "$PID_FILE")), socket $SOCKET"
}

print_environment() {
    printf 'export DOCKER_HOST=%q\n' "unix://$SOCKET"
    printf 'export CONTAINERS_CONF=%q\n' "$CONFIG_DIR/containers.conf"
    printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$CONFIG_DIR/storage.conf"
    printf 'export CONTAINERS_REGISTRIES_CONF=%q\n' "$CONFIG_DIR/registries.conf"
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

main() {
    [ $# -eq 1 ] || usage
    export_podman_environment
    case "$1" in
        setup)
            install_packages
            write_config
            build_base_image
            ;;
        start) start_service ;;
        stop) stop_service ;;
        status) print_status ;;
        env) print_environment ;;
        -h | --help | help) usage ;;
        *)
            log "unknown command: $1"
            usage
            ;;
    esac
}

main "$@"
