#!/usr/bin/env bash
# Measures recommendation quality on the Online Retail data and writes
# docs/benchmarks/quality.md with its tables and NDCG@k plots.
#
# For each split (time and random) it exports the split and trains the
# `implicit` library's ALS on it, with the same factors, regularisation,
# confidence and iterations as this project's ALS. Then `trainer evaluate`
# trains the whole pipeline on the same training part and scores every method,
# the implicit lists included, with the same metric code.
#
# Usage: bash scripts/bench-quality.sh [DATA]
# DATA defaults to $SHOPREC_DATA or the cached download (scripts/fetch-data.sh).
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

data="${1:-${SHOPREC_DATA:-}}"
if [[ -z "$data" ]]; then
    data="$(bash "$SHOPREC_ROOT/scripts/fetch-data.sh")"
fi
[[ -f "$data" ]] || { echo "bench-quality: data file $data not found: pass the Online Retail CSV path" >&2; exit 2; }
# The script works from the repository root, so a relative path must be resolved first.
data="$(realpath "$data")"
cd "$SHOPREC_ROOT"

bash scripts/install-tools.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

bench_venv="$SHOPREC_CACHE/bench-venv"
if [[ ! -x "$bench_venv/bin/python" ]] || ! cmp -s scripts/bench-requirements.txt "$bench_venv/requirements.txt"; then
    log "Installing the benchmark's Python packages into $bench_venv"
    rm -rf "$bench_venv"
    python3 -m venv "$bench_venv"
    "$bench_venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/bench-requirements.txt
    cp scripts/bench-requirements.txt "$bench_venv/requirements.txt"
fi

log "Building the trainer (release)"
cargo build --release --locked -p trainer
trainer="$CARGO_TARGET_DIR/release/trainer"

work="$SHOPREC_STATE/bench-quality"
out="docs/benchmarks"
mkdir -p "$work" "$out"

for split in time random; do
    log "Split: $split"
    split_dir="$work/$split"
    rm -rf "$split_dir"
    "$trainer" export-split --data "$data" --split "$split" --out "$split_dir"
    "$bench_venv/bin/python" scripts/implicit_baseline.py "$split_dir"
    "$trainer" evaluate --data "$data" --split "$split" \
        --peer "implicit ALS=$split_dir/implicit.jsonl" --report-dir "$work"
    "$bench_venv/bin/python" scripts/plot_quality.py "$work/quality-$split.json" "$out/quality-ndcg-$split.svg"
done

log "Training on the full data (dry run) for the training time"
full_training="$("$trainer" train --data "$data" --dry-run | awk '$1 == "total" { print $2 }')"

targets="$("$bench_venv/bin/python" - "$work/quality-time.json" "$full_training" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
ndcg = {method["name"]: method["metrics"][0]["ndcg"] for method in report["methods"]}
k = report["methods"][0]["metrics"][0]["k"]
pipeline = ndcg["ranked pipeline"]
for name in ("implicit ALS", "item neighbours"):
    verdict = "beats" if pipeline > ndcg[name] else "does NOT beat"
    ratio = f" ({pipeline / ndcg[name]:.2f} times)" if ndcg[name] > 0 else ""
    print(f"- The ranked pipeline {verdict} {name} on the time split: NDCG@{k} {pipeline:.4f} against {ndcg[name]:.4f}{ratio}.")
print(f"- Training every part on the full data set takes {float(sys.argv[2]):.1f} s (trainer train --dry-run); the target is under a minute.")
PY
)"

implicit_version="$("$bench_venv/bin/python" -c 'import implicit; print(implicit.__version__)')"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
{
    cat <<EOF
# Recommendation quality

Measured by \`bash scripts/bench-quality.sh\` on $(date -u +%Y-%m-%d), on $(nproc) cores of $cpu,
with the Online Retail data (541,909 rows; the README says where to get it) and implicit $implicit_version.

Every method ranks for the same test users, who must have bought something in
the training part, and is scored by the same code (\`shoprec::train::evaluate\`).
A relevant item is one the user bought in the test part and not in the training
part. The ranked pipeline is the served path: candidates from neighbours,
embeddings and popularity, features, and the exported ONNX ranker run by ONNX
Runtime, with the popular fallback. Its training time covers every training
step (items, embeddings, profiles and the ranker); the ALS rows give the
factorisation alone. implicit's ALS runs with the same factors, regularisation,
confidence (1 + alpha x orders) and iterations as this project's ALS.

Columns: HR is the share of users with a hit in the top k. MAP is normalised
by min(relevant, k). Coverage is the share of the catalogue recommended to
anyone, and fallback is the share of users served the popular list.

## Targets

$targets

The ALS settings (64 factors, alpha 2, penalty 0.05, 15 iterations) were
chosen by the embeddings' NDCG@10 on the ranker's validation users, which
lie inside the training part. implicit gets the
same settings. Its factorisation is faster than this project's: its
conjugate gradient is compiled Cython with OpenMP, this project's runs
scalar loops over rayon.

## Time split

$(cat "$work/quality-time.md")

![NDCG@k on the time split](quality-ndcg-time.svg)

## Random split

$(cat "$work/quality-random.md")

![NDCG@k on the random split](quality-ndcg-random.svg)

## Reproduce

\`\`\`
bash scripts/bench-quality.sh path/to/online_retail.csv.gz
\`\`\`

The raw reports are written to \`.local/bench-quality/quality-{time,random}.json\`.
EOF
} > "$out/quality.md"
log "Wrote $out/quality.md"
