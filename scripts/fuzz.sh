#!/usr/bin/env bash
# Runs one cargo-fuzz target of fuzz/ for a while.
#
# Usage: bash scripts/fuzz.sh request_parsing|csv_reader [SECONDS]
#
# cargo-fuzz needs the unstable sanitizer flags of rustc. So that a stable
# toolchain suffices, the script sets RUSTC_BOOTSTRAP=1 for the fuzz build alone. The fuzz build gets its own target folder because its flags differ
# from the main build's, which would otherwise be rebuilt from scratch.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

target="${1:?usage: bash scripts/fuzz.sh request_parsing|csv_reader [SECONDS]}"
seconds="${2:-60}"
case "$target" in
    request_parsing | csv_reader) ;;
    *) echo "fuzz.sh: unknown target $target: use request_parsing or csv_reader" >&2; exit 2 ;;
esac
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive whole number, got $seconds" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "Installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$SHOPREC_ROOT/fuzz"
mkdir -p "corpus/$target"
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$SHOPREC_CACHE/fuzz-target" \
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=65536
