#!/usr/bin/env bash
# Create or update the venv of the Python baseline handler from requirements.txt.
# It lives in $SHOPREC_CACHE/python-baseline-venv (~/.cache/shoprec by default)
# and is built from the project's Python in $SHOPREC_CACHE/venv, which
# scripts/install-tools.sh installs. Running it again only installs what changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
source "$here/../../scripts/common.sh"

venv="$SHOPREC_CACHE/python-baseline-venv"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

[[ -x "$SHOPREC_VENV/bin/python" ]] ||
    { printf 'error: %s not found. Run scripts/install-tools.sh first.\n' "$SHOPREC_VENV/bin/python" >&2; exit 1; }

if [[ ! -x "$venv/bin/python" ]]; then
    printf 'Creating %s\n' "$venv"
    "$SHOPREC_VENV/bin/python" -m venv "$venv"
fi

wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(<"$stamp")" == "$wanted" ]]; then
    printf '%s is up to date with %s\n' "$venv" "$requirements"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
"$venv/bin/python" -m pip check
printf '%s\n' "$wanted" >"$stamp"
printf 'Installed %s into %s\n' "$requirements" "$venv"
