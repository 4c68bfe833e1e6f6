#!/usr/bin/env bash
# Print the path of the UCI Online Retail CSV (plain or gzip) that shoprec reads.
#
# Usage: scripts/fetch-data.sh [PATH]
#
# The path printed on standard output is the first that applies:
#   1. PATH, or else $SHOPREC_DATA, which must name an existing file.
#   2. The cached $SHOPREC_CACHE/data/online_retail.csv.gz ($HOME/.cache/shoprec by default).
#   3. A new cache file: the script downloads the UCI zip, converts "Online Retail.xlsx"
#      to CSV with scripts/xlsx_to_csv.py, and gzips it into the cache.
# Messages go to standard error. SHOPREC_DATA_URL replaces the download URL, for example
# with file:///path/to/online+retail.zip when the zip was fetched by hand.
#
# Data: UCI Machine Learning Repository, data set 352 "Online Retail" (Chen, Sain and
# Guo, 2012), licence CC BY 4.0.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

UCI_URL="https://archive.ics.uci.edu/static/public/352/online+retail.zip"
DATA_URL="${SHOPREC_DATA_URL:-$UCI_URL}"
XLSX_MEMBER="Online Retail.xlsx"
CACHE_FILE="$SHOPREC_CACHE/data/online_retail.csv.gz"
OPENPYXL_VERSION=3.1.5
EXPECTED_HEADER="InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
EXPECTED_ROWS=541909

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Print how to get the file without this script, then exit 1.
die_download_failed() {
    local curl_status="$1"
    cat >&2 <<EOF
error: failed to download $DATA_URL (curl exit status $curl_status).
This machine may be offline. To get the data by hand:
  1. Download $UCI_URL
     on a machine with internet access. It is a zip holding "$XLSX_MEMBER",
     the spreadsheet of the UCI Online Retail data set.
  2. Then do one of these:
     - Convert it here from the zip:
         SHOPREC_DATA_URL=file:///absolute/path/to/online+retail.zip $0
     - Put a gzip-compressed CSV of that spreadsheet at
         $CACHE_FILE
       with $EXPECTED_ROWS data rows, InvoiceDate as YYYY-MM-DD HH:MM:SS, and the header
         $EXPECTED_HEADER
     - Pass the path of such a CSV, plain or gzip, as the first argument or in SHOPREC_DATA.
EOF
    exit 1
}

# Print the path of a Python that can import openpyxl. Installs openpyxl==$OPENPYXL_VERSION
# into $SHOPREC_VENV when no python3 on PATH has it, creating the venv if needed.
# common.sh puts $SHOPREC_VENV/bin first on PATH, so an existing venv is tried first.
find_openpyxl_python() {
    if python3 -c 'import openpyxl' 2>/dev/null; then
        command -v python3
        return 0
    fi

    if [[ ! -x "$SHOPREC_VENV/bin/python" ]]; then
        log "Creating venv $SHOPREC_VENV"
        python3 -m venv "$SHOPREC_VENV" >&2
    fi
    log "Installing openpyxl==$OPENPYXL_VERSION into $SHOPREC_VENV"
    "$SHOPREC_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openpyxl==$OPENPYXL_VERSION" >&2 ||
        die "failed to install openpyxl==$OPENPYXL_VERSION into $SHOPREC_VENV. Install it by hand, or pass the path of a CSV instead."
    printf '%s\n' "$SHOPREC_VENV/bin/python"
}

# Print "HEADER<TAB>ROWS" for a plain or gzip CSV: its first line and its data row count.
describe_csv() {
    python3 - "$1" <<'EOF'
import csv, gzip, sys

path = sys.argv[1]
with open(path, "rb") as probe:
    compressed = probe.read(2) == b"\x1f\x8b"
opener = gzip.open if compressed else open
with opener(path, "rt", encoding="utf-8-sig", newline="") as source:
    reader = csv.reader(source)
    header = ",".join(next(reader, []))
    rows = sum(1 for _ in reader)
print(f"{header}\t{rows}")
EOF
}

# Check the header and row count of a converted file. A wrong header is an error,
# because shoprec would reject the file. A different row count is only a warning,
# because a later release of the data set may add or fix rows.
check_csv() {
    local path="$1" description header rows
    description="$(describe_csv "$path")" || die "failed to read $path as CSV."
    header="${description%$'\t'*}"
    rows="${description##*$'\t'}"

    [[ "$header" == "$EXPECTED_HEADER" ]] ||
        die "$path has the header '$header', expected '$EXPECTED_HEADER'. Check that the download is the UCI Online Retail zip."
    if [[ "$rows" != "$EXPECTED_ROWS" ]]; then
        log "warning: $path has $rows data rows, expected $EXPECTED_ROWS. The row counts asserted by the ingest tests will not match."
    else
        log "Checked $path: expected header and $rows data rows"
    fi
}

# Download the zip, convert its spreadsheet and write the gzip CSV to $CACHE_FILE.
download_and_convert() {
    local work_dir
    work_dir="$(mktemp -d)"
    # The trap runs after this function returns, when the local is gone, so the path is
    # expanded now.
    # shellcheck disable=SC2064
    trap "rm -rf '$work_dir'" EXIT

    log "Downloading $DATA_URL"
    local curl_status=0
    curl --fail --location --silent --show-error --connect-timeout 30 --max-time 900 \
        --retry 2 --output "$work_dir/online_retail.zip" "$DATA_URL" || curl_status=$?
    if ((curl_status != 0)); then
        die_download_failed "$curl_status"
    fi

    log "Extracting $XLSX_MEMBER"
    python3 - "$work_dir/online_retail.zip" "$XLSX_MEMBER" "$work_dir/online_retail.xlsx" <<'EOF' ||
import shutil, sys, zipfile

archive_path, member, target = sys.argv[1:]
try:
    with zipfile.ZipFile(archive_path) as archive, archive.open(member) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink)
except (zipfile.BadZipFile, KeyError) as error:
    sys.exit(f"error: {error}")
EOF
        die "failed to extract '$XLSX_MEMBER' from $DATA_URL. Check that it is the UCI Online Retail zip."

    local python
    python="$(find_openpyxl_python)"

    log "Converting $XLSX_MEMBER to CSV (openpyxl reads about 540,000 rows, which may take minutes)"
    "$python" "$SHOPREC_ROOT/scripts/xlsx_to_csv.py" "$work_dir/online_retail.xlsx" "$work_dir/online_retail.csv"
    gzip -c -n "$work_dir/online_retail.csv" >"$work_dir/online_retail.csv.gz"
    check_csv "$work_dir/online_retail.csv.gz"

    # Move into place last, so an interrupted run leaves no partial cache file.
    mkdir -p "$(dirname "$CACHE_FILE")"
    mv "$work_dir/online_retail.csv.gz" "$CACHE_FILE.partial"
    mv "$CACHE_FILE.partial" "$CACHE_FILE"
    log "Wrote $CACHE_FILE"
}

main() {
    if (($# > 1)); then
        die "expected at most one argument (the path of the Online Retail CSV), got $#."
    fi

    local given="${1:-${SHOPREC_DATA:-}}"
    if [[ -n "$given" ]]; then
        [[ -f "$given" ]] || die "data file '$given' not found (from the argument or SHOPREC_DATA). Pass the path of the Online Retail CSV, or unset SHOPREC_DATA to use the cache."
        [[ -r "$given" ]] || die "data file '$given' is not readable. Check its permissions."
        printf '%s\n' "$given"
        return 0
    fi

    if [[ -f "$CACHE_FILE" ]]; then
        log "Using cached $CACHE_FILE"
        printf '%s\n' "$CACHE_FILE"
        return 0
    fi

    download_and_convert
    printf '%s\n' "$CACHE_FILE"
}

main "$@"
