"""Check the API responses that scripts/sam-invoke-events.sh stored.

Usage: <venv python> scripts/check_sam_responses.py OUTPUT_DIR

For each event in CHECKS it reads OUTPUT_DIR/<event>.json (the function's
API Gateway response, or the stream function's batch response), OUTPUT_DIR/<event>.log (the SAM CLI log with the
emulator's REPORT line) and its line in OUTPUT_DIR/invokes.tsv (exit status
and wall seconds of `sam local invoke`). It prints one line per event and
then `sam-local: N passed, M failed`, and exits 1 when any event failed.
"""

import base64
import json
import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent

# Values from the Online Retail data set that the events in events/ ask for.
SIMILAR_ITEM_ID = "85123A"
SIMILAR_ITEM_TITLE = "WHITE HANGING HEART T-LIGHT HOLDER"
USER_ID = "17850"
CANDIDATE_SOURCES = {"neighbours", "popular"}

# Lines of the Runtime Interface Emulator (RIE) in the SAM log. INIT REPORT
# is logged only at RIE log level debug (SAM_CLI_RIE_DEV=1) and gives the time
# from starting the bootstrap to its first request for an event. The
# "Init Duration" of the REPORT line is not that time: with SAM CLI 1.170.0
# it shows about 0.2 ms, less than starting a process takes.
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
REPORT_DURATION = re.compile(r"^REPORT RequestId: .*\tDuration: ([0-9.]+) ms", re.MULTILINE)


class CheckFailed(Exception):
    """A response that does not match the API contract."""

    # The response's statusCode as text, or "-" when there is none.
    status = "-"


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_field(record, name, kind, where):
    """Return record[name] after checking that it exists and has type `kind`."""
    expect(isinstance(record, dict), f"{where} is {type(record).__name__}, expected an object")
    expect(name in record, f"{where} has no field {name!r}")
    value = record[name]
    # bool is a subclass of int, so a number field must reject it explicitly.
    wrong_bool = kind in (int, float, (int, float)) and isinstance(value, bool)
    expect(isinstance(value, kind) and not wrong_bool, f"{where}.{name} is {value!r}, expected {kind_name(kind)}")
    return value


def kind_name(kind):
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def expect_non_empty_list(record, name, where):
    value = expect_field(record, name, list, where)
    expect(value, f"{where}.{name} is empty")
    return value


def expect_entries(entries, fields, where):
    """Check that every entry of a list has the given fields and types."""
    for index, entry in enumerate(entries):
        for name, kind in fields.items():
            value = expect_field(entry, name, kind, f"{where}[{index}]")
            if kind is str:
                expect(value.strip(), f"{where}[{index}].{name} is an empty string")


def decode_body(response):
    body = response.get("body")
    expect(isinstance(body, str), f"body is {body!r}, expected a JSON string")
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise CheckFailed(f"body is not JSON ({error}): {body[:200]!r}") from error


def content_type(response):
    headers = response.get("headers") or {}
    expect(isinstance(headers, dict), f"headers is {headers!r}, expected an object")
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value
    raise CheckFailed(f"no content-type header among {sorted(headers)}")


def check_similar_items(status, body):
    expect(status == 200, f"statusCode {status}, expected 200")
    item_id = expect_field(body, "item_id", str, "body")
    expect(item_id == SIMILAR_ITEM_ID, f"item_id {item_id!r}, expected {SIMILAR_ITEM_ID!r}")
    title = expect_field(body, "title", str, "body")
    expect(title == SIMILAR_ITEM_TITLE, f"title {title!r}, expected {SIMILAR_ITEM_TITLE!r}")
    neighbours = expect_non_empty_list(body, "neighbours", "body")
    expect_entries(neighbours, {"item_id": str, "title": str, "score": (int, float)}, "neighbours")
    return f"{item_id}: {len(neighbours)} neighbours, first {neighbours[0]['item_id']} score {neighbours[0]['score']:.3f}"


def check_popular_items(status, body):
    expect(status == 200, f"statusCode {status}, expected 200")
    items = expect_non_empty_list(body, "items", "body")
    expect_entries(items, {"item_id": str, "title": str}, "items")
    return f"{len(items)} items, window {body.get('window')}, first {items[0]['item_id']}"


def check_recommendations(status, body):
    expect(status == 200, f"statusCode {status}, expected 200")
    user_id = expect_field(body, "user_id", str, "body")
    expect(user_id == USER_ID, f"user_id {user_id!r}, expected {USER_ID!r}")
    model_version = expect_field(body, "model_version", str, "body")
    expect(model_version.strip(), "model_version is an empty string")
    known_user = expect_field(body, "known_user", bool, "body")
    expect(known_user is True, f"known_user is {known_user}, expected true for user {USER_ID}")
    recommendations = expect_non_empty_list(body, "recommendations", "body")
    expect_entries(
        recommendations, {"item_id": str, "title": str, "score": (int, float), "source": str}, "recommendations"
    )
    sources = [entry["source"] for entry in recommendations]
    unknown = sorted(set(sources) - CANDIDATE_SOURCES)
    expect(not unknown, f"recommendations have unknown source {unknown}, expected one of {sorted(CANDIDATE_SOURCES)}")
    counts = ", ".join(f"{sources.count(source)} {source}" for source in sorted(set(sources)))
    return f"user {user_id}: {len(recommendations)} recommendations ({counts}), model {model_version}"


def posted_event_ids():
    """Return the event ids in the body of events/post-events.json."""
    event = json.loads((REPOSITORY / "events" / "post-events.json").read_text(encoding="utf-8"))
    return {entry["event_id"] for entry in json.loads(event["body"])["events"]}


def check_post_events(status, body):
    # The handler returns 201 when it stored at least one event and 200 when
    # every event id was already stored, as on a second run against one stack.
    expect(status in (200, 201), f"statusCode {status}, expected 201 or 200")
    stored = expect_field(body, "stored", list, "body")
    duplicates = expect_field(body, "duplicates", list, "body")
    expected_ids = posted_event_ids()
    reported_ids = stored + duplicates
    expect(
        sorted(reported_ids) == sorted(expected_ids),
        f"stored {stored} + duplicates {duplicates}, expected each of {sorted(expected_ids)} exactly once",
    )
    expect((status == 201) == bool(stored), f"statusCode {status} does not match {len(stored)} stored events")
    return f"{len(stored)} stored, {len(duplicates)} duplicates"


def check_preferences(status, body):
    expect(status == 200, f"statusCode {status}, expected 200")
    user_id = expect_field(body, "user_id", str, "body")
    expect(user_id == USER_ID, f"user_id {user_id!r}, expected {USER_ID!r}")
    favourites = expect_non_empty_list(body, "favourite_items", "body")
    themes = expect_field(body, "themes", list, "body")
    return f"user {user_id}: {len(favourites)} favourite items, {len(themes)} themes"


def check_stream_batch(response):
    """Check the partial batch response of the live-profile function."""
    failures = expect_field(response, "batchItemFailures", list, "response")
    expect(not failures, f"batchItemFailures {failures}, expected none")
    return "no failed records"


# Events whose function returns its own response instead of an API Gateway
# one. Their check reads the whole response.
STREAM_EVENTS = {"new-events"}

CHECKS = {
    "similar-items": check_similar_items,
    "popular-items": check_popular_items,
    "recommendations": check_recommendations,
    "post-events": check_post_events,
    "preferences": check_preferences,
    "new-events": check_stream_batch,
}


def read_invokes(output_dir):
    """Return {event name: (SAM exit status, wall seconds)} from invokes.tsv."""
    path = output_dir / "invokes.tsv"
    if not path.is_file():
        return {}
    invokes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _function, status, seconds = line.split("\t")
        invokes[name] = (int(status), seconds)
    return invokes


def check_event(output_dir, name, check, invoke):
    """Return (status text, summary) for one event, raising CheckFailed on a mismatch."""
    expect(invoke is not None, f"not invoked: no line for {name} in {output_dir / 'invokes.tsv'}")
    sam_status, _seconds = invoke
    expect(sam_status == 0, f"sam local invoke exited with status {sam_status}; log: {output_dir / (name + '.log')}")
    path = output_dir / f"{name}.json"
    expect(path.is_file(), f"no response file {path}")
    text = path.read_text(encoding="utf-8")
    expect(text.strip(), f"empty response in {path}")
    try:
        response = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckFailed(f"response is not JSON ({error}): {text[:200]!r}") from error
    expect(isinstance(response, dict), f"response is {type(response).__name__}, expected an object")
    expect(
        "errorType" not in response,
        f"Lambda error {response.get('errorType')}: {response.get('errorMessage')}",
    )
    if name in STREAM_EVENTS:
        return "-", check(response)
    status = response.get("statusCode")
    expect(isinstance(status, int), f"statusCode is {status!r}, expected a number")
    try:
        return str(status), check_response(response, status, check)
    except CheckFailed as error:
        error.status = str(status)
        raise


def check_response(response, status, check):
    """Return the summary of a response with a numeric status code."""
    body = decode_body(response)
    if status >= 400:
        # A problem response (application/problem+json): its title and detail
        # explain the failure better than a shape check would.
        raise CheckFailed(f"statusCode {status}: {json.dumps(body)[:300]}")
    media_type = content_type(response)
    expect(
        media_type.split(";")[0].strip().lower() == "application/json",
        f"content-type {media_type!r}, expected application/json",
    )
    return check(status, body)


def timing(output_dir, name, invoke):
    """Return "init 25.5 ms, duration 71.4 ms, invoke 10.4 s" from the files that exist."""
    parts = []
    log_file = output_dir / f"{name}.log"
    if log_file.is_file():
        log = log_file.read_text(encoding="utf-8", errors="replace")
        init = INIT_REPORT.search(log)
        parts.append(f"init {float(init.group(1)):.1f} ms" if init else "init not logged")
        duration = REPORT_DURATION.search(log)
        if duration:
            parts.append(f"duration {float(duration.group(1)):.1f} ms")
    if invoke is not None:
        parts.append(f"invoke {invoke[1]} s")
    return ", ".join(parts)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    output_dir = Path(sys.argv[1])
    invokes = read_invokes(output_dir)
    passed = failed = 0
    for name, check in CHECKS.items():
        invoke = invokes.get(name)
        try:
            status, summary = check_event(output_dir, name, check, invoke)
            result = "PASS"
            passed += 1
        except CheckFailed as error:
            status, summary = error.status, str(error)
            result = "FAIL"
            failed += 1
        print(f"{result} {name:<16} {status:>3}  {summary}  [{timing(output_dir, name, invoke)}]")
    print(f"sam-local: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
