"""Compare the recommendations of the Python baseline with the Rust inference function.

Both run as Lambda functions against a minimal Lambda Runtime API served by
this script on 127.0.0.1, with the tables and bucket that scripts/env.sh
names. The script stores a few pending events for a visitor and sends the
same API Gateway HTTP API events to both functions. It prints the overlap of
the returned item ids per user. It also prints the time from process start to
the first response of each function, which covers init and one request.

Usage, from the repository root with the stack up and a model published:

    source scripts/env.sh
    ~/.cache/shoprec/python-baseline-venv/bin/python bench/python-baseline/compare.py \
        [--rust-binary "$CARGO_TARGET_DIR/release/inference"] [--users 17850 14911]
"""

import argparse
import http.server
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
VISITOR = "visitor-python-baseline"
# Items of the Online Retail data that the visitor views, carts and buys.
VISITOR_EVENTS = [("view", "85123A"), ("view", "22423"), ("add_to_cart", "84879"), ("purchase", "47566")]
# Seconds to wait for one response, including the init phase of a cold start.
RESPONSE_TIMEOUT = 120


class RuntimeApi:
    """The next/response/error endpoints of the Lambda Runtime API, one invocation at a time."""

    def __init__(self):
        self.events = queue.Queue()
        self.results = queue.Queue()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                request_id, body = api.events.get()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:compare")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                kind = self.path.rsplit("/", 1)[-1]
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                api.results.put((kind, body))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, event):
        self.events.put((str(uuid.uuid4()), json.dumps(event).encode()))
        try:
            kind, body = self.results.get(timeout=RESPONSE_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"no response within {RESPONSE_TIMEOUT} s") from None
        if kind != "response":
            raise RuntimeError(f"the function reported an {kind}: {body.decode(errors='replace')}")
        return json.loads(body)


def api_event(path, query):
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "compare"},
            "requestId": "compare",
            "routeKey": "$default",
            "stage": "$default",
            "time": "09/Dec/2011:12:00:00 +0000",
            "timeEpoch": 1323432000000,
        },
        "isBase64Encoded": False,
    }


def store_visitor_events():
    """Store the visitor's events as pending (not yet applied to a live profile), replacing earlier ones."""
    table = boto3.resource("dynamodb").Table(os.environ["EVENTS_TABLE"])
    now = int(time.time())
    for index, (event_type, item_id) in enumerate(VISITOR_EVENTS):
        table.put_item(
            Item={
                "user_id": VISITOR,
                "event_id": f"compare-{index}",
                "event_type": event_type,
                "item_id": item_id,
                "quantity": 1,
                "timestamp": now - 600 + 60 * index,
                "received_at": now,
            }
        )


def run_function(command, paths, query):
    """Start a function process, send it one request per path, and return (first-response seconds, bodies)."""
    api = RuntimeApi()
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "compare",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/compare",
        "AWS_LAMBDA_LOG_STREAM_NAME": "compare",
        "RUST_LOG": "warn",
    }
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=HERE, env=env, stdout=subprocess.DEVNULL)
    try:
        bodies = []
        first_response = None
        for path in paths:
            response = api.invoke(api_event(path, query))
            first_response = first_response or time.perf_counter() - started
            if response.get("statusCode") != 200:
                raise RuntimeError(f"{command[0]} returned status {response.get('statusCode')} for {path}: {response.get('body')}")
            bodies.append(json.loads(response["body"]))
        return first_response, bodies
    finally:
        process.terminate()
        process.wait(timeout=10)
        api.server.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/shoprec/target"))
    parser.add_argument("--rust-binary", default=f"{target}/release/inference", help="Rust inference function executable")
    parser.add_argument("--users", nargs="+", default=["17850", "14911"], help="known user ids to compare (the visitor is added)")
    parser.add_argument("--limit", type=int, default=10, help="recommendations per user")
    args = parser.parse_args()

    store_visitor_events()
    users = args.users + [VISITOR]
    paths = [f"/users/{user_id}/recommendations" for user_id in users]
    query = f"limit={args.limit}"

    rust_seconds, rust_bodies = run_function([args.rust_binary], paths, query)
    python_seconds, python_bodies = run_function([sys.executable, "-m", "awslambdaric", "handler.handler"], paths, query)

    print(f"first response (init + one request): rust {rust_seconds * 1e3:.0f} ms, python {python_seconds * 1e3:.0f} ms")
    identical = True
    for user_id, rust, python in zip(users, rust_bodies, python_bodies):
        rust_ids = [entry["item_id"] for entry in rust["recommendations"]]
        python_ids = [entry["item_id"] for entry in python["recommendations"]]
        overlap = len(set(rust_ids) & set(python_ids))
        same_order = rust_ids == python_ids
        identical &= same_order
        print(f"user {user_id}: overlap {overlap}/{len(rust_ids)}, same order {same_order}, fallback rust {rust['fallback']} python {python['fallback']}")
        for rank, (rust_entry, python_entry) in enumerate(zip(rust["recommendations"], python["recommendations"]), start=1):
            print(
                f"  {rank:>2}. rust {rust_entry['item_id']:<8} {rust_entry['score']:>10.5f} {rust_entry['source']:<16}"
                f" python {python_entry['item_id']:<8} {python_entry['score']:>10.5f} {python_entry['source']}"
            )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
