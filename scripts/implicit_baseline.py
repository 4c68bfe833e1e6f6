#!/usr/bin/env python3
"""Train implicit's ALS on a split exported by the shoprec trainer and write its top-N lists.

Reads params.json, train.csv and test_users.csv from SPLIT_DIR. Writes
implicit.jsonl with one line per test user: up to top_n item ids, best first,
leaving out the items in that user's training rows. Writes implicit.json with
the parameters, the matrix size, the thread count and the timings.

The model minimises the same objective as shoprec's ALS: confidence
c_ui = 1 + alpha * r_ui for observed pairs and 1 for all other pairs,
preference 1 for observed pairs, and the penalty
regularization * (|x_u|^2 + |y_i|^2) with no scaling by counts.
implicit 0.7.3 (implicit/cpu/als.py) takes each matrix value times its own
alpha parameter as C_ui, puts C_ui - 1 into the left-hand side and C_ui into
the right-hand side of every least-squares solve, and adds regularization * I
unscaled. So the matrix stores 1 + alpha * r_ui and implicit gets alpha=1.0.

Usage: python scripts/implicit_baseline.py SPLIT_DIR
Exits with status 2 and a message naming the file when an input is missing or invalid.
"""

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import implicit
import numpy as np
import scipy.sparse
import threadpoolctl
from implicit.cpu.als import AlternatingLeastSquares

# Smallest allowed value of each integer parameter.
INTEGER_PARAMS = {"factors": 1, "iterations": 1, "seed": 0, "top_n": 1}
FLOAT_PARAMS = ("regularization", "alpha")


class InputError(Exception):
    """An input file that is missing or invalid. The message names the file."""


def parse_args():
    parser = argparse.ArgumentParser(
        description="Train implicit's AlternatingLeastSquares on a shoprec split and write "
        "SPLIT_DIR/implicit.jsonl (top-N item ids per test user) and "
        "SPLIT_DIR/implicit.json (parameters and timings)."
    )
    parser.add_argument(
        "split_dir",
        metavar="SPLIT_DIR",
        type=Path,
        help="folder with params.json, train.csv and test_users.csv from the shoprec trainer",
    )
    return parser.parse_args()


def read_params(path):
    """Read params.json and check that every parameter is present and in range."""
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(params, dict):
        raise InputError(f"{path}: expected a JSON object")

    for name in [*INTEGER_PARAMS, *FLOAT_PARAMS]:
        if name not in params:
            raise InputError(f"{path}: missing key {name!r}")
    for name, minimum in INTEGER_PARAMS.items():
        value = params[name]
        # bool is a subclass of int, so reject it by name.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(
                f"{path}: {name} must be an integer of at least {minimum}, found {value!r}"
            )
    for name in FLOAT_PARAMS:
        value = params[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise InputError(f"{path}: {name} must be a non-negative number, found {value!r}")
    return params


def read_csv_rows(path, columns):
    """Yield (line number, {column: text}) for each data row of a CSV file with a header.

    Other columns are allowed and ignored. Blank lines are skipped.
    """
    try:
        file = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    with file:
        reader = csv.reader(file)
        try:
            yield from parse_csv_rows(path, reader, columns)
        except (UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"{path}: invalid CSV: {err}") from None


def parse_csv_rows(path, reader, columns):
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: file is empty, expected a header with {','.join(columns)}")
    for column in columns:
        if column not in header:
            raise InputError(f"{path}: missing column {column!r} (header: {','.join(header)})")
    positions = {column: header.index(column) for column in columns}

    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(
                f"{path}: line {reader.line_num}: expected {len(header)} fields, found {len(row)}"
            )
        fields = {column: row[position] for column, position in positions.items()}
        for column, text in fields.items():
            if text == "":
                raise InputError(f"{path}: line {reader.line_num}: empty {column}")
        yield reader.line_num, fields


def parse_value(path, line, text):
    """Parse an interaction strength r_ui, which must be a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: line {line}: value {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{path}: line {line}: value {text!r} must be a finite number above 0")
    return value


def read_train(path, alpha):
    """Read train.csv into a users x items CSR matrix with values 1 + alpha * r_ui.

    Returns the user ids and item ids in index order, and the matrix.
    """
    user_index = {}
    item_index = {}
    first_line_of_pair = {}
    rows, columns, values = [], [], []
    for line, fields in read_csv_rows(path, ("user_id", "item_id", "value")):
        user = user_index.setdefault(fields["user_id"], len(user_index))
        item = item_index.setdefault(fields["item_id"], len(item_index))
        # scipy adds up duplicate entries, which would give the pair a confidence of
        # 2 + alpha * (r1 + r2) instead of one observation.
        first_line = first_line_of_pair.setdefault((user, item), line)
        if first_line != line:
            raise InputError(
                f"{path}: line {line}: duplicate pair user_id {fields['user_id']!r}, "
                f"item_id {fields['item_id']!r} (first on line {first_line}). "
                "Expected one row per pair."
            )
        rows.append(user)
        columns.append(item)
        values.append(parse_value(path, line, fields["value"]))
    if not values:
        raise InputError(f"{path}: no data rows")

    confidence = (1.0 + alpha * np.asarray(values, dtype=np.float64)).astype(np.float32)
    user_items = scipy.sparse.csr_matrix(
        (confidence, (rows, columns)), shape=(len(user_index), len(item_index)), dtype=np.float32
    )
    return list(user_index), list(item_index), user_items


def read_test_users(path, user_ids):
    """Read test_users.csv and return the row index of each user in the training matrix."""
    user_index = {user_id: index for index, user_id in enumerate(user_ids)}
    first_line_of_user = {}
    indices = []
    for line, fields in read_csv_rows(path, ("user_id",)):
        user_id = fields["user_id"]
        if user_id not in user_index:
            raise InputError(
                f"{path}: line {line}: user_id {user_id!r} is not in train.csv, "
                "so the model has no factors for it"
            )
        first_line = first_line_of_user.setdefault(user_id, line)
        if first_line != line:
            raise InputError(
                f"{path}: line {line}: duplicate user_id {user_id!r} (first on line {first_line})"
            )
        indices.append(user_index[user_id])
    if not indices:
        raise InputError(f"{path}: no data rows")
    return np.asarray(indices, dtype=np.int32)


def count_openmp_threads():
    """Return the thread count that implicit's OpenMP loops use with num_threads=0.

    That is OpenMP's default team size, which OMP_NUM_THREADS sets and which
    otherwise is the number of cores. A build without OpenMP runs its loops on one thread.
    """
    counts = [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "openmp"
    ]
    return max(counts, default=1)


def fit_model(params, user_items):
    """Fit the ALS model and return it with the wall-clock seconds of model.fit."""
    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["regularization"],
        alpha=1.0,
        iterations=params["iterations"],
        random_state=params["seed"],
        use_cg=True,
        calculate_training_loss=False,
    )
    # NOTE: with use_cg=True each least-squares solve is 3 conjugate-gradient steps
    # started from the previous factors, so the factors differ from an exact ALS
    # solve even though the objective is the same.
    start = time.perf_counter()
    # The progress bar would write to stderr on every iteration.
    model.fit(user_items, show_progress=False)
    return model, time.perf_counter() - start


def recommend(model, user_items, test_rows, top_n):
    """Return the top item indices for each test row, and the wall-clock seconds it took."""
    start = time.perf_counter()
    item_indices, _scores = model.recommend(
        test_rows, user_items[test_rows], N=top_n, filter_already_liked_items=True
    )
    seconds = time.perf_counter() - start

    # implicit 0.7.3 fills a row that has fewer than N unseen items with the filtered
    # items (score -FLT_MAX) and, past the item count, with item 0 (score 0). The slice
    # drops that padding, and the check against the user's training rows drops the rest.
    lists = []
    for row, ranked in zip(test_rows, item_indices):
        seen = set(user_items.indices[user_items.indptr[row] : user_items.indptr[row + 1]].tolist())
        ranked = ranked[: user_items.shape[1]].tolist()
        lists.append([item for item in ranked if item not in seen])
    return lists, seconds


def write_recommendations(path, user_ids, item_ids, test_rows, lists):
    with path.open("w", encoding="utf-8") as file:
        for row, items in zip(test_rows, lists):
            line = {"user_id": user_ids[row], "item_ids": [item_ids[item] for item in items]}
            file.write(json.dumps(line, ensure_ascii=False) + "\n")


def main():
    args = parse_args()
    split_dir = args.split_dir
    try:
        params = read_params(split_dir / "params.json")
        user_ids, item_ids, user_items = read_train(split_dir / "train.csv", params["alpha"])
        test_rows = read_test_users(split_dir / "test_users.csv", user_ids)
    except InputError as err:
        print(f"implicit_baseline.py: error: {err}", file=sys.stderr)
        return 2

    # implicit 0.7.3 warns (implicit/utils.py) that a multi-threaded BLAS inside its
    # OpenMP loops can make fitting much slower. So BLAS runs on one thread, and
    # OpenMP keeps its default thread count (OMP_NUM_THREADS, else all cores).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        model, fit_seconds = fit_model(params, user_items)
        lists, recommend_seconds = recommend(model, user_items, test_rows, params["top_n"])
    threads = count_openmp_threads()

    jsonl_path = split_dir / "implicit.jsonl"
    write_recommendations(jsonl_path, user_ids, item_ids, test_rows, lists)
    report = {
        "library": "implicit",
        "version": implicit.__version__,
        "model": "AlternatingLeastSquares",
        "factors": params["factors"],
        "regularization": params["regularization"],
        "alpha": params["alpha"],
        "iterations": params["iterations"],
        "use_cg": True,
        "threads": threads,
        "fit_seconds": fit_seconds,
        "recommend_seconds": recommend_seconds,
        "users": user_items.shape[0],
        "items": user_items.shape[1],
        "pairs": user_items.nnz,
    }
    (split_dir / "implicit.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    thread_word = "thread" if threads == 1 else "threads"
    print(
        f"implicit {implicit.__version__} ALS: {report['users']} users, {report['items']} items, "
        f"{report['pairs']} pairs, {threads} OpenMP {thread_word}; fit {fit_seconds:.2f} s, "
        f"recommend {recommend_seconds:.2f} s for {len(test_rows)} users; wrote {jsonl_path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
