"""Python baseline of the inference function: GET /users/{user_id}/recommendations.

A plain Python Lambda handler that serves the same recommendations as the Rust
inference function from the same model artifacts and DynamoDB tables, so the
two can be timed against each other. It mirrors shared/src/recommend.rs and
its helpers step by step; README.md beside this file lists where it differs.

The module loads the active model version when it is imported, as a Python
Lambda function does in its init phase. Run it with
`python -m awslambdaric handler.handler` from this folder.
"""

import hashlib
import itertools
import json
import logging
import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import boto3
import numpy as np
import onnxruntime
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config

logger = logging.getLogger("shoprec.python_baseline")
logger.setLevel(logging.INFO)

# Feature names in the order the ranker reads them (FEATURES in recommend.rs).
FEATURE_NAMES = [
    "neighbour_score_sum",
    "neighbour_score_max",
    "neighbour_hits_log",
    "related_recency_days_log",
    "embedding_score",
    "recent_similarity",
    "popularity_log",
    "recent_popularity_log",
    "popularity_trend",
    "price_log_ratio",
    "history_size_log",
]
FEATURE_COUNT = len(FEATURE_NAMES)

# Weights of a viewed and a carted item relative to one order, as float32 values.
VIEW_WEIGHT = float(np.float32(0.3))
ADD_TO_CART_WEIGHT = float(np.float32(0.6))

# Candidates per source (CandidateLimits::default).
NEIGHBOUR_CANDIDATES = 200
EMBEDDING_CANDIDATES = 100
SIMILAR_TO_RECENT_CANDIDATES = 50
POPULAR_CANDIDATES = 50

# Latest history items whose embedding neighbours become candidates.
RECENT_SEEDS = 3
# Days used for related_recency_days_log when no history item led to the candidate.
UNRELATED_DAYS = np.float32(365.0)
SECONDS_PER_DAY = np.float32(86_400.0)
# Conjugate gradient steps of the request-time fold-in.
FOLD_IN_STEPS = 12

# Live profile bounds (live_profile.rs).
RECENT_EVENT_IDS = 100
MAX_ITEMS = 1_000
MAX_PURCHASE_TIMES = 1_000

EMBEDDING_DTYPE = "float32-le"
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_ID_BYTES = 128
DEFAULT_MODEL_REFRESH_SECONDS = 60


class ProblemError(Exception):
    """Error that the handler returns as an application/problem+json response."""

    def __init__(self, status, title, detail, field=None, value=None, headers=None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.value = value
        self.headers = headers or {}


def invalid_field(field, value, reason):
    return ProblemError(400, "Invalid request field", f"invalid {field} {json.dumps(value)}: {reason}", field, value)


def dependency_error(message):
    return ProblemError(503, "Dependency unavailable", message, headers={"retry-after": "1"})


def invalid_artifact(model_version, key, reason):
    return ProblemError(500, "Model artifact invalid", f"artifact {key} of model version {model_version} is invalid: {reason}")


def required_env(name):
    value = os.environ.get(name, "")
    if not value.strip():
        raise RuntimeError(f"configuration {name} is missing or empty: set it to the resource name")
    return value


PROFILES_TABLE = required_env("PROFILES_TABLE")
EVENTS_TABLE = required_env("EVENTS_TABLE")
MODEL_STATE_TABLE = required_env("MODEL_STATE_TABLE")
LIVE_PROFILES_TABLE = required_env("LIVE_PROFILES_TABLE")
ARTIFACT_BUCKET = required_env("ARTIFACT_BUCKET")
MODEL_REFRESH_SECONDS = int(os.environ.get("MODEL_REFRESH_SECONDS", DEFAULT_MODEL_REFRESH_SECONDS))
USER_ID_CLAIM = os.environ.get("USER_ID_CLAIM", "").strip() or None

# The same timeouts and retries as the Rust functions' request configuration.
_REQUEST_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 3, "mode": "standard"})
_s3_path_style = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
_S3_CONFIG = _REQUEST_CONFIG.merge(Config(s3={"addressing_style": "path"})) if _s3_path_style else _REQUEST_CONFIG
dynamodb = boto3.client("dynamodb", config=_REQUEST_CONFIG)
s3 = boto3.client("s3", config=_S3_CONFIG)
_deserializer = TypeDeserializer()
# Reads the trained profile while the request thread reads the live activity,
# as the Rust handler does with tokio::join.
_executor = ThreadPoolExecutor(max_workers=1)


def from_item(item):
    """Convert a DynamoDB item to plain Python values, with whole numbers as int."""
    return {name: plain(_deserializer.deserialize(value)) for name, value in item.items()}


def plain(value):
    if isinstance(value, dict):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# --- Model artifacts -------------------------------------------------------


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def get_object(key):
    try:
        return s3.get_object(Bucket=ARTIFACT_BUCKET, Key=key)["Body"].read()
    except Exception as error:
        raise dependency_error(f"S3 GetObject of s3://{ARTIFACT_BUCKET}/{key} failed: {error}") from error


def get_verified(manifest, name):
    """Download a file listed in the manifest and check its size and sha256."""
    model_version = manifest["model_version"]
    entry = next((file for file in manifest["files"] if file["name"] == name), None)
    if entry is None:
        raise invalid_artifact(model_version, name, "not listed in the manifest")
    data = get_object(entry["key"])
    if len(data) != entry["size"]:
        raise invalid_artifact(model_version, entry["key"], f"size is {len(data)} bytes, expected {entry['size']} from the manifest")
    digest = sha256_hex(data)
    if digest != entry["sha256"]:
        raise invalid_artifact(model_version, entry["key"], f"sha256 is {digest}, expected {entry['sha256']} from the manifest")
    return data


class Embeddings:
    """Item vectors with what fold-in and similarity need (embeddings.rs)."""

    def __init__(self, vectors, settings):
        self.factors = int(settings["factors"])
        self.regularization = np.float32(settings["regularization"])
        self.alpha = np.float32(settings["alpha"])
        self.vectors = vectors
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        safe = np.where(norms > 0, norms, np.float32(1.0))
        self.unit_vectors = (vectors / safe[:, None]).astype(np.float32)
        vectors64 = vectors.astype(np.float64)
        gramian = vectors64.T @ vectors64 + float(self.regularization) * np.eye(self.factors)
        self.gramian = gramian.astype(np.float32)
        self.nonzero = np.any(vectors != 0, axis=1)

    def fold_in(self, strengths):
        """Solve the user vector for {row: strength} by conjugate gradient, or None without usable rows."""
        rows = [row for row in strengths if self.nonzero[row]]
        if not rows:
            return None
        observed = self.vectors[rows]
        confidence = (np.float32(1.0) + self.alpha * np.array([strengths[row] for row in rows], dtype=np.float32)).astype(np.float32)
        extra = confidence - np.float32(1.0)

        def apply(p):
            return self.gramian @ p + observed.T @ (extra * (observed @ p))

        user = np.zeros(self.factors, dtype=np.float32)
        residual = (observed.T @ confidence).astype(np.float32)
        direction = residual.copy()
        residual_norm = np.float32(residual @ residual)
        for _ in range(FOLD_IN_STEPS):
            if residual_norm < 1e-20:
                break
            a_direction = apply(direction)
            curvature = np.float32(direction @ a_direction)
            if curvature <= 0:
                break
            step = residual_norm / curvature
            user += step * direction
            residual -= step * a_direction
            next_norm = np.float32(residual @ residual)
            direction = residual + (next_norm / residual_norm) * direction
            residual_norm = next_norm
        return user

    def max_similarity(self, rows):
        """Return, for every item, the highest cosine similarity to any of the rows (zeros without rows)."""
        if not rows:
            return np.zeros(len(self.vectors), dtype=np.float32)
        return (self.unit_vectors @ self.unit_vectors[rows].T).max(axis=1)


class Model:
    """One model version loaded into memory: catalogue, popularity, neighbours, embeddings and ranker."""

    def __init__(self, manifest, catalogue, popularity, neighbours, embeddings, session):
        self.manifest = manifest
        self.model_version = manifest["model_version"]
        self.item_ids = [item["item_id"] for item in catalogue]
        self.index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.titles = {item["item_id"]: item["title"] for item in catalogue}
        self.prices = np.array([item["price"] for item in catalogue], dtype=np.float64)
        self.buyers = np.array([item["buyers"] for item in catalogue], dtype=np.float32)
        self.recent_buyers = np.array([item["recent_buyers"] for item in catalogue], dtype=np.float32)
        self.popular = popularity["recent"] + popularity["all_time"]
        self.recent_popular_count = max(len(popularity["recent"]), 1)
        # Per item: (neighbour id, float32 score, whether it is a co-purchase neighbour).
        self.neighbours = neighbours
        self.embeddings = embeddings
        self.session = session
        self.ranker_input = manifest["ranker"]["input"]
        self.ranker_output = manifest["ranker"]["output"]

    def title(self, item_id):
        return self.titles.get(item_id, "")


def get_active_model():
    try:
        output = dynamodb.get_item(TableName=MODEL_STATE_TABLE, Key={"name": {"S": "active"}}, ConsistentRead=True)
    except Exception as error:
        raise dependency_error(f"DynamoDB GetItem on table {MODEL_STATE_TABLE} failed: {error}") from error
    if "Item" not in output:
        raise ProblemError(503, "No active model", "no model version is active: run the trainer to publish one")
    return from_item(output["Item"])


def decode_neighbours(data, catalogue, model_version):
    """Decode neighbours.bin (the layout of encode_neighbours in model.rs) into lists by item id."""
    key = f"models/{model_version}/neighbours.bin"
    words = np.frombuffer(data[: len(data) // 4 * 4], dtype="<u4")
    if data[:4] != b"SRNB" or len(words) < 4 or words[1] != 1:
        raise invalid_artifact(model_version, key, "does not start with the neighbours magic SRNB and layout 1")
    items, entries = int(words[2]), int(words[3])
    if items != len(catalogue) or len(data) != 4 * (4 + items + 1 + 3 * entries):
        raise invalid_artifact(model_version, key, f"{len(data)} bytes of {items} items and {entries} entries for {len(catalogue)} catalogue items")
    offsets = words[4 : 5 + items].tolist()
    targets = words[5 + items : 5 + items + entries].tolist()
    scores = np.frombuffer(data, dtype="<f4")[5 + items + entries : 5 + items + 2 * entries].tolist()
    supports = words[5 + items + 2 * entries :].tolist()
    if offsets[0] != 0 or offsets[-1] != entries or any(b < a for a, b in zip(offsets, offsets[1:])) or any(t >= items for t in targets):
        raise invalid_artifact(model_version, key, "offsets or neighbour rows are out of range")
    item_ids = [item["item_id"] for item in catalogue]
    neighbours = {}
    for row, (start, end) in enumerate(zip(offsets, offsets[1:])):
        if end > start:
            neighbours[item_ids[row]] = [
                (item_ids[target], score, not support & 0x80000000)
                for target, score, support in zip(targets[start:end], scores[start:end], supports[start:end])
            ]
    return neighbours


def load_model(active):
    """Load the active model version, checking the manifest and every file as artifacts.rs does."""
    model_version = active["model_version"]
    manifest_bytes = get_object(active["manifest_key"])
    digest = sha256_hex(manifest_bytes)
    if digest != active["manifest_sha256"]:
        raise invalid_artifact(
            model_version, active["manifest_key"], f"sha256 is {digest}, the active model record says {active['manifest_sha256']}"
        )
    manifest = json.loads(manifest_bytes)
    if manifest["model_version"] != model_version:
        raise invalid_artifact(model_version, active["manifest_key"], f"names model version {manifest['model_version']}")

    catalogue = json.loads(get_verified(manifest, "catalogue.json"))
    popularity = json.loads(get_verified(manifest, "popularity.json"))
    neighbours = decode_neighbours(get_verified(manifest, "neighbours.bin"), catalogue, model_version)

    embeddings = None
    contract = manifest.get("embeddings")
    if contract is not None:
        key = f"models/{model_version}/{contract['item_file']}"
        if contract["dtype"] != EMBEDDING_DTYPE or contract["items"] != len(catalogue):
            raise invalid_artifact(
                model_version,
                key,
                f"{contract['items']} rows of {contract['dtype']} do not match the {len(catalogue)} catalogue items of {EMBEDDING_DTYPE}",
            )
        data = get_verified(manifest, contract["item_file"])
        factors = int(contract["settings"]["factors"])
        if factors == 0 or len(data) != 4 * len(catalogue) * factors:
            raise invalid_artifact(model_version, key, f"{len(data)} bytes do not fill {len(catalogue)} items of {factors} float32 factors")
        vectors = np.frombuffer(data, dtype="<f4").reshape(len(catalogue), factors).astype(np.float32)
        embeddings = Embeddings(vectors, contract["settings"])

    ranker = manifest["ranker"]
    if ranker["features"] != FEATURE_NAMES:
        raise ProblemError(
            500,
            "Ranker failure",
            f"ranker failed: the model expects features {ranker['features']} but this handler computes {FEATURE_NAMES}",
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(get_verified(manifest, ranker["file"]), options, providers=["CPUExecutionProvider"])
    inputs = {node.name for node in session.get_inputs()}
    outputs = {node.name for node in session.get_outputs()}
    if ranker["input"] not in inputs or ranker["output"] not in outputs:
        raise ProblemError(
            500,
            "Ranker failure",
            f"ranker failed: the ONNX model lacks input {ranker['input']!r} or output {ranker['output']!r} named in the manifest",
        )
    return Model(manifest, catalogue, popularity, neighbours, embeddings, session)


_model = None
_model_checked_at = None


def current_model():
    """Return the loaded model, checking the active version once per refresh interval (model_cache.rs)."""
    global _model, _model_checked_at
    if _model is not None and time.monotonic() - _model_checked_at < MODEL_REFRESH_SECONDS:
        return _model
    try:
        active = get_active_model()
        if _model is None or _model.model_version != active["model_version"]:
            started = time.perf_counter()
            try:
                _model = load_model(active)
            except ProblemError:
                raise
            except Exception as error:
                # A file that passed its sha256 check but does not parse, or an ONNX model that ONNX Runtime rejects.
                key = f"models/{active['model_version']}/"
                raise invalid_artifact(active["model_version"], key, f"loading failed: {error!r}") from error
            logger.info("loaded model version %s in %.0f ms", _model.model_version, (time.perf_counter() - started) * 1e3)
        _model_checked_at = time.monotonic()
    except ProblemError as error:
        if _model is None:
            raise
        logger.error("model refresh failed, keeping model version %s: %s", _model.model_version, error.detail)
        _model_checked_at = time.monotonic()
    return _model


# Load the model in the init phase. A failure is logged and retried by the
# first request, which returns the error as a problem response if the retry fails too.
try:
    current_model()
except ProblemError as init_error:
    logger.error("loading the active model at init failed: %s", init_error.detail)


# --- User history ----------------------------------------------------------


def get_trained_profile(model_version, user_id):
    try:
        output = dynamodb.get_item(
            TableName=PROFILES_TABLE,
            Key={"model_version": {"S": model_version}, "user_id": {"S": user_id}},
            ConsistentRead=True,
        )
    except Exception as error:
        raise dependency_error(f"DynamoDB GetItem on table {PROFILES_TABLE} failed: {error}") from error
    return from_item(output["Item"]) if "Item" in output else None


def list_pending_events(user_id):
    """Read the user's events that the stream function has not applied to the live profile yet."""
    events = []
    request = {
        "TableName": EVENTS_TABLE,
        "ConsistentRead": True,
        "KeyConditionExpression": "#user_id = :user_id",
        "FilterExpression": "attribute_not_exists(#applied_at)",
        "ExpressionAttributeNames": {"#user_id": "user_id", "#applied_at": "applied_at"},
        "ExpressionAttributeValues": {":user_id": {"S": user_id}},
    }
    while True:
        try:
            page = dynamodb.query(**request)
        except Exception as error:
            raise dependency_error(f"DynamoDB Query on table {EVENTS_TABLE} failed: {error}") from error
        for item in page.get("Items", []):
            event = from_item(item)
            if {"event_id", "event_type", "item_id", "quantity", "timestamp"} <= event.keys():
                events.append(event)
            else:
                logger.error("skipping an events table item that is not an event: user %s, event %s", user_id, event.get("event_id"))
        if "LastEvaluatedKey" not in page:
            return events
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def get_live_profile(user_id):
    try:
        output = dynamodb.get_item(TableName=LIVE_PROFILES_TABLE, Key={"user_id": {"S": user_id}}, ConsistentRead=True)
    except Exception as error:
        raise dependency_error(f"DynamoDB GetItem on table {LIVE_PROFILES_TABLE} failed: {error}") from error
    if "Item" not in output:
        return {"items": {}, "purchase_times": [], "events": {"view": 0, "add_to_cart": 0, "purchase": 0}, "recent_event_ids": []}
    return from_item(output["Item"])


def apply_event(profile, event):
    """Fold one event into the live profile's item counts (LiveProfile::apply)."""
    activity = profile["items"].setdefault(event["item_id"], {"views": 0, "add_to_carts": 0, "purchases": 0, "last_at": 0})
    kind = event["event_type"]
    if kind == "view":
        activity["views"] += 1
        profile["events"]["view"] += 1
    elif kind == "add_to_cart":
        activity["add_to_carts"] += 1
        profile["events"]["add_to_cart"] += 1
    elif kind == "purchase":
        activity["purchases"] += 1
        profile["events"]["purchase"] += 1
        profile["purchase_times"].append(event["timestamp"])
        profile["purchase_times"].sort()
    activity["last_at"] = max(activity["last_at"], event["timestamp"])
    profile["recent_event_ids"] = (profile["recent_event_ids"] + [event["event_id"]])[-RECENT_EVENT_IDS:]
    del profile["purchase_times"][:-MAX_PURCHASE_TIMES]
    while len(profile["items"]) > MAX_ITEMS:
        oldest = min(profile["items"].items(), key=lambda entry: (entry[1]["last_at"], entry[0]))[0]
        del profile["items"][oldest]


def live_activity(user_id):
    """Read the live profile with the pending events folded in, pending events first (store/live.rs)."""
    pending = list_pending_events(user_id)
    profile = get_live_profile(user_id)
    for event in pending:
        if event["event_id"] not in profile["recent_event_ids"]:
            apply_event(profile, event)
    return profile


class History:
    """A user's purchases and interests at request time (UserHistory)."""

    def __init__(self):
        self.purchased = {}
        self.interest = {}
        self.last_at = {}

    def touch(self, item_id, at):
        self.last_at[item_id] = max(self.last_at.get(item_id, at), at)

    def contains(self, item_id):
        return item_id in self.purchased or item_id in self.interest

    def size(self):
        return len(self.purchased) + len(self.interest)

    def recent_items(self, count):
        items = list(self.purchased) + list(self.interest)
        items.sort(key=lambda item_id: (-self.last_at.get(item_id, -(2**63)), item_id))
        return items[:count]


def user_history(profile, live):
    """Build the recommender's view of a user from the trained and the live profile (preferences.rs)."""
    history = History()
    if profile is not None:
        for purchase in profile["purchases"]:
            history.purchased[purchase["item_id"]] = float(purchase["orders"])
            history.touch(purchase["item_id"], purchase["last_at"])
    for item_id in sorted(live["items"]):
        activity = live["items"][item_id]
        if activity["purchases"] > 0:
            history.purchased[item_id] = history.purchased.get(item_id, 0.0) + activity["purchases"]
        if activity["add_to_carts"] > 0:
            history.interest[item_id] = ADD_TO_CART_WEIGHT
        elif activity["views"] > 0:
            history.interest[item_id] = VIEW_WEIGHT
        history.touch(item_id, activity["last_at"])
    history.interest = {item_id: weight for item_id, weight in history.interest.items() if item_id not in history.purchased}
    return history


# --- Candidates, features and ranking ---------------------------------------


class Candidate:
    __slots__ = ("item_id", "source", "score_sum", "score_max", "hits", "related_last_at")

    def __init__(self, item_id, source):
        self.item_id = item_id
        self.source = source
        self.score_sum = 0.0
        self.score_max = 0.0
        self.hits = 0
        self.related_last_at = None


def neighbour_candidates(model, history):
    """Collect the neighbours of the history items, best summed score first."""
    scored = {}
    interest_floor = 1.0 if not history.purchased else 0.0
    seeds = [(item_id, 1.0) for item_id in history.purchased]
    seeds += [(item_id, max(weight, interest_floor)) for item_id, weight in history.interest.items()]
    for seed, weight in seeds:
        neighbours = model.neighbours.get(seed)
        if neighbours is None:
            continue
        seed_at = history.last_at.get(seed)
        for item_id, neighbour_score, co_purchase in neighbours:
            if history.contains(item_id):
                continue
            candidate = scored.get(item_id)
            if candidate is None:
                candidate = scored[item_id] = Candidate(item_id, "neighbours" if co_purchase else "title_neighbours")
            elif co_purchase:
                candidate.source = "neighbours"
            # The product of two float32 values is exact in float64, so rounding it gives the float32 product.
            score = float(np.float32(weight * neighbour_score))
            # NOTE: Rust adds in float32 in hash-map order, so the rounded sum can differ in the last bit.
            candidate.score_sum += score
            candidate.score_max = max(candidate.score_max, score)
            candidate.hits += 1
            if seed_at is not None and (candidate.related_last_at is None or seed_at > candidate.related_last_at):
                candidate.related_last_at = seed_at
    candidates = list(scored.values())
    for candidate in candidates:
        candidate.score_sum = float(np.float32(candidate.score_sum))
    candidates.sort(key=lambda candidate: (-candidate.score_sum, candidate.item_id))
    return candidates[:NEIGHBOUR_CANDIDATES]


def top_rows(values, count, keep):
    """Return the rows of the `count` highest values among rows where `keep` is true, best first, ties by row."""
    rows = np.flatnonzero(keep)
    order = np.lexsort((rows, -values[rows]))
    return rows[order[:count]].tolist()


def generate_candidates(model, history):
    """Collect neighbour, embedding and popular candidates, and each candidate's embedding signals."""
    candidates = neighbour_candidates(model, history)
    chosen = {candidate.item_id for candidate in candidates}

    user_scores = recent_similarity = None
    embeddings = model.embeddings
    if embeddings is not None:
        strengths = {}
        for item_id, strength in list(history.purchased.items()) + list(history.interest.items()):
            row = model.index.get(item_id)
            if row is not None:
                strengths[row] = strength
        user = embeddings.fold_in(strengths)
        if user is not None:
            user_scores = embeddings.vectors @ user
            seeds = [model.index[item_id] for item_id in history.recent_items(RECENT_SEEDS) if item_id in model.index]
            recent_similarity = embeddings.max_similarity(seeds)

    if user_scores is not None:
        fresh = np.ones(len(model.item_ids), dtype=bool)
        for item_id in list(history.purchased) + list(history.interest) + list(chosen):
            row = model.index.get(item_id)
            if row is not None:
                fresh[row] = False
        rows = top_rows(user_scores, EMBEDDING_CANDIDATES, fresh)
        near_recent = top_rows(recent_similarity, SIMILAR_TO_RECENT_CANDIDATES + len(rows), fresh)
        from_user = set(rows)
        rows += [row for row in near_recent if row not in from_user][:SIMILAR_TO_RECENT_CANDIDATES]
        for row in rows:
            chosen.add(model.item_ids[row])
            candidates.append(Candidate(model.item_ids[row], "embedding"))

    popular = (item_id for item_id in unseen_popular(model, history) if item_id not in chosen)
    candidates += [Candidate(item_id, "popular") for item_id in itertools.islice(popular, POPULAR_CANDIDATES)]
    return candidates, user_scores, recent_similarity


def unseen_popular(model, history):
    """Yield popular item ids, recent first and then all-time, each once, without history items."""
    seen = set()
    for item_id in model.popular:
        if not history.contains(item_id) and item_id not in seen:
            seen.add(item_id)
            yield item_id


def build_features(model, history, candidates, user_scores, recent_similarity):
    """Build the float32 feature matrix [candidates, FEATURE_COUNT] in FEATURE_NAMES order."""
    count = len(candidates)
    rows = np.array([model.index.get(candidate.item_id, -1) for candidate in candidates], dtype=np.int64)
    known = rows >= 0
    safe_rows = np.where(known, rows, 0)

    latest_at = max(history.last_at.values()) if history.last_at else None
    related_days = np.full(count, UNRELATED_DAYS, dtype=np.float32)
    if latest_at is not None:
        for position, candidate in enumerate(candidates):
            if candidate.related_last_at is not None:
                days = np.float32(max(latest_at - candidate.related_last_at, 0)) / SECONDS_PER_DAY
                related_days[position] = min(days, UNRELATED_DAYS)

    embedding_score = np.zeros(count, dtype=np.float32)
    similarity = np.zeros(count, dtype=np.float32)
    if user_scores is not None:
        embedding_score = np.where(known, user_scores[safe_rows], np.float32(0.0))
        similarity = np.where(known, recent_similarity[safe_rows], np.float32(0.0))

    buyers_log = np.log1p(np.where(known, model.buyers[safe_rows], np.float32(0.0)))
    recent_buyers_log = np.log1p(np.where(known, model.recent_buyers[safe_rows], np.float32(0.0)))

    # Median price of the purchased items, or of the items of interest for a user who bought nothing yet.
    basis = history.purchased if history.purchased else history.interest
    prices = sorted(model.prices[model.index[item_id]] for item_id in basis if item_id in model.index)
    median = prices[len(prices) // 2] if prices else None
    price_log_ratio = np.zeros(count, dtype=np.float32)
    if median is not None and median > 0:
        candidate_prices = np.where(known, model.prices[safe_rows], 0.0)
        priced = candidate_prices > 0
        price_log_ratio[priced] = np.log(candidate_prices[priced] / median)

    features = np.empty((count, FEATURE_COUNT), dtype=np.float32)
    features[:, 0] = [candidate.score_sum for candidate in candidates]
    features[:, 1] = [candidate.score_max for candidate in candidates]
    features[:, 2] = np.log1p(np.array([candidate.hits for candidate in candidates], dtype=np.float32))
    features[:, 3] = np.log1p(related_days)
    features[:, 4] = embedding_score
    features[:, 5] = similarity
    features[:, 6] = buyers_log
    features[:, 7] = recent_buyers_log
    features[:, 8] = recent_buyers_log - buyers_log
    features[:, 9] = price_log_ratio
    features[:, 10] = np.log1p(np.float32(history.size()))
    return features


def float32_json(value):
    """Return the float that prints as the shortest form of a float32, as Rust's serde_json writes it."""
    return float(str(np.float32(value)))


def recommend(model, history, limit):
    candidates, user_scores, recent_similarity = generate_candidates(model, history)
    if not candidates:
        return []
    features = build_features(model, history, candidates, user_scores, recent_similarity)
    try:
        scores = model.session.run([model.ranker_output], {model.ranker_input: features})[0].reshape(-1)
    except Exception as error:
        raise ProblemError(500, "Ranker failure", f"ranker failed: inference failed: {error}") from error
    if len(scores) != len(candidates):
        raise ProblemError(500, "Ranker failure", f"ranker failed: the model returned {len(scores)} scores for {len(candidates)} candidates")
    ranked = sorted(zip(candidates, scores.tolist()), key=lambda pair: (-pair[1], pair[0].item_id))[:limit]
    return [
        {"item_id": candidate.item_id, "title": model.title(candidate.item_id), "score": float32_json(score), "source": candidate.source}
        for candidate, score in ranked
    ]


def popular_fallback(model, history, limit):
    recommendations = []
    for rank, item_id in enumerate(unseen_popular(model, history)):
        if rank >= limit:
            break
        score = np.float32(1.0) - np.float32(rank) / np.float32(model.recent_popular_count)
        recommendations.append({"item_id": item_id, "title": model.title(item_id), "score": float32_json(score), "source": "popular"})
    return recommendations


def serve(model, history, limit):
    """Return (fallback, recommendations): the ranked candidates, or popular items when there is nothing to rank."""
    ranked = recommend(model, history, limit) if history.purchased or history.interest else []
    if not ranked:
        return "popular", popular_fallback(model, history, limit)
    return None, ranked


# --- HTTP ------------------------------------------------------------------


def validate_id(field, value):
    if not value.strip():
        raise invalid_field(field, value, "must not be empty or only white space")
    size = len(value.encode("utf-8"))
    if size > MAX_ID_BYTES:
        raise invalid_field(field, value[:32] + "…", f"must be at most {MAX_ID_BYTES} bytes, got {size}")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        raise invalid_field(field, value, "must not contain control characters")


def route_user_id(event):
    """Return the user id of GET .../users/{user_id}/recommendations, or raise the problem for another route."""
    http = event.get("requestContext", {}).get("http", {})
    method = http.get("method", "GET")
    raw_path = event.get("rawPath") or http.get("path") or "/"
    segments = []
    for segment in raw_path.split("/"):
        if not segment:
            continue
        try:
            segments.append(urllib.parse.unquote_to_bytes(segment).decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid_field("path", segment, "is not valid UTF-8 once percent-decoded") from None
    path = "/" + "/".join(segments)
    tail = segments[-3:]
    if len(tail) == 3 and tail[0] == "users" and tail[2] == "recommendations":
        if method != "GET":
            raise ProblemError(405, "Method not allowed", f"method {method} is not allowed on {path}: use GET", headers={"allow": "GET"})
        validate_id("user_id", tail[1])
        return tail[1]
    raise ProblemError(404, "Route not found", f"no route for {method} {path}")


def parse_limit(event):
    """Read `limit` from the raw query string (or queryStringParameters without one): 1 to MAX_LIMIT."""
    raw_query = event.get("rawQueryString")
    if raw_query:
        values = urllib.parse.parse_qs(raw_query, keep_blank_values=True).get("limit")
    else:
        value = (event.get("queryStringParameters") or {}).get("limit")
        values = None if value is None else value.split(",")
    if values is None:
        return DEFAULT_LIMIT
    if len(values) != 1:
        raise invalid_field("limit", ",".join(values), "must be given once")
    text = values[0]
    if not text or not all("0" <= char <= "9" for char in text):
        raise invalid_field("limit", text, f"must be a whole number between 1 and {MAX_LIMIT}")
    if not 1 <= int(text) <= MAX_LIMIT:
        raise invalid_field("limit", text, f"must be between 1 and {MAX_LIMIT}")
    return int(text)


def authorize_user(event, user_id):
    """Check that the JWT claim named by USER_ID_CLAIM equals the path's user id, when it is set."""
    if USER_ID_CLAIM is None:
        return
    authorizer = event.get("requestContext", {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    value = claims.get(USER_ID_CLAIM)
    if value == user_id:
        return
    found = "is missing" if value is None else "names another user"
    raise ProblemError(
        403,
        "Forbidden",
        f"the token's {json.dumps(USER_ID_CLAIM)} claim {found}, so it may not act for user {json.dumps(user_id)}: use the caller's own user id",
    )


def problem_response(error):
    problem = {"type": "about:blank", "title": error.title, "status": error.status, "detail": error.detail}
    if error.field is not None:
        problem["field"] = error.field
        problem["value"] = error.value
    headers = {"content-type": "application/problem+json", **error.headers}
    return {"statusCode": error.status, "headers": headers, "body": json.dumps(problem, ensure_ascii=False, separators=(",", ":"))}


def recommendations(event):
    user_id = route_user_id(event)
    authorize_user(event, user_id)
    limit = parse_limit(event)
    model = current_model()

    profile_future = _executor.submit(get_trained_profile, model.model_version, user_id)
    live = live_activity(user_id)
    profile = profile_future.result()
    history = user_history(profile, live)

    fallback, ranked = serve(model, history, limit)
    events = sum(live["events"].values())
    logger.info(
        "served recommendations: user %s, model version %s, known user %s, events %d, returned %d, fallback %s",
        user_id,
        model.model_version,
        profile is not None,
        events,
        len(ranked),
        fallback or "none",
    )
    body = {
        "user_id": user_id,
        "model_version": model.model_version,
        "known_user": profile is not None,
        "fallback": fallback,
        "recommendations": ranked,
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
    }


def handler(event, context):
    """Lambda entry point: an API Gateway HTTP API (payload 2.0) event in, a proxy response out."""
    try:
        return recommendations(event)
    except ProblemError as error:
        request_id = getattr(context, "aws_request_id", "")
        if error.status >= 500:
            logger.error("request %s failed with %d: %s", request_id, error.status, error.detail)
        else:
            logger.info("request %s rejected with %d: %s", request_id, error.status, error.detail)
        return problem_response(error)
    except Exception as error:
        # Every request gets a response, as from the Rust handler, which has no untyped errors.
        logger.exception("request %s failed with an unexpected error", getattr(context, "aws_request_id", ""))
        return problem_response(ProblemError(500, "Internal error", f"the request failed: {error!r}"))
