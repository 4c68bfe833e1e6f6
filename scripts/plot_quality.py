#!/usr/bin/env python3
"""Draw NDCG@k for k = 1..k_max, one line per method, from a quality report into an SVG.

Usage: python scripts/plot_quality.py REPORT_JSON OUT_SVG [--title TEXT]

REPORT_JSON is an object with "k_max" and "methods", a list of
{"name": ..., "ndcg_at": [NDCG@1, ..., NDCG@k_max]}. The title defaults to its
"description". Other keys are ignored.

The same report gives a byte-identical SVG, because the element ids come from a
fixed salt and the file has no date. Text stays text in the viewer's fonts, so no
font is embedded. Exits with status 2 and a message when the report is invalid.
"""

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
# Above this k_max a tick for every k would crowd the axis.
MAX_LABELLED_K = 30


class ReportError(Exception):
    """A report file that is missing or invalid. The message names the file."""


def parse_args():
    parser = argparse.ArgumentParser(
        description="Draw NDCG@k for k = 1..k_max, one line per method, into an SVG."
    )
    parser.add_argument("report", metavar="REPORT_JSON", type=Path, help="quality report (JSON)")
    parser.add_argument("out", metavar="OUT_SVG", type=Path, help="SVG file to write")
    parser.add_argument(
        "--title", metavar="TEXT", help="plot title (default: the report's description)"
    )
    return parser.parse_args()


def read_report(path):
    """Read the report and check k_max and every method's name and ndcg_at list."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found") from None
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path}: expected a JSON object")

    k_max = report.get("k_max")
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ReportError(f"{path}: k_max must be an integer of at least 1, found {k_max!r}")
    methods = report.get("methods")
    if not isinstance(methods, list) or not methods:
        raise ReportError(f"{path}: methods must be a non-empty list, found {methods!r}")

    for position, method in enumerate(methods, start=1):
        if not isinstance(method, dict) or not isinstance(method.get("name"), str):
            raise ReportError(f"{path}: method {position}: missing or non-string \"name\"")
        name = method["name"]
        values = method.get("ndcg_at")
        if not isinstance(values, list):
            raise ReportError(f"{path}: method {name!r}: ndcg_at must be a list, found {values!r}")
        if len(values) != k_max:
            raise ReportError(
                f"{path}: method {name!r} has {len(values)} ndcg_at values, "
                f"expected k_max = {k_max}"
            )
        for k, value in enumerate(values, start=1):
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not is_number or not math.isfinite(value):
                raise ReportError(
                    f"{path}: method {name!r}: NDCG@{k} must be a finite number, found {value!r}"
                )
    return report


def draw(report, title):
    """Draw one NDCG@k line per method and return the figure."""
    k_max = report["k_max"]
    ks = range(1, k_max + 1)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, method in enumerate(report["methods"]):
        marker = MARKERS[index % len(MARKERS)]
        axes.plot(ks, method["ndcg_at"], marker=marker, markersize=4, label=method["name"])

    axes.set_xlabel("k")
    axes.set_ylabel("NDCG@k")
    axes.set_xlim(0.5, k_max + 0.5)
    if k_max <= MAX_LABELLED_K:
        axes.set_xticks(ks)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Starting the y axis at 0 keeps each line's height proportional to its NDCG.
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title(textwrap.fill(title, width=80), fontsize=10)
    figure.tight_layout()
    return figure


def main():
    args = parse_args()
    try:
        report = read_report(args.report)
    except ReportError as err:
        print(f"plot_quality.py: error: {err}", file=sys.stderr)
        return 2
    title = args.title or report.get("description") or "NDCG@k"

    plt.rcParams["svg.hashsalt"] = "shoprec"
    plt.rcParams["svg.fonttype"] = "none"
    figure = draw(report, str(title))
    try:
        figure.savefig(args.out, format="svg", metadata={"Date": None})
    except OSError as err:
        print(f"plot_quality.py: error: {args.out}: cannot write: {err.strerror}", file=sys.stderr)
        return 2
    print(f"plot_quality.py: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
