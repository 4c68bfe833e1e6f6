#!/usr/bin/env python3
"""Time cold starts and warm load of Lambda functions under the Lambda Runtime
Interface Emulator (RIE) that ships with the SAM CLI.

Usage (scripts/bench-lambda.sh passes the four shoprec functions):

    python scripts/bench_lambda.py [options] --function SPEC [--function SPEC ...]

Each SPEC names one function, the command that starts its runtime, an optional
working folder and the event to invoke it with:

    NAME=COMMAND[@FOLDER]:EVENT

- NAME labels the results and becomes AWS_LAMBDA_FUNCTION_NAME.
- COMMAND is split like a shell word list (shlex). RIE starts it as its
  runtime process, so it must speak the Lambda Runtime API: a custom-runtime
  `bootstrap` binary, or `python -m awslambdaric MODULE.FUNCTION`.
- FOLDER is the runtime's working folder (default: the current folder).
- EVENT is a JSON file, relative to the current folder, that is sent as the
  payload of every invocation.

The last ":" of a SPEC starts the event path and the last "@" before it starts
the folder, so COMMAND may contain neither after its last ":".

Examples, from the repository root:

    --function inference=$CARGO_TARGET_DIR/lambda/inference/bootstrap:events/recommendations.json
    --function "python-inference=$SHOPREC_VENV/bin/python -m awslambdaric handler.handler@bench/python-baseline:events/recommendations.json"

For each function the harness:

1. Cold start, --repeats times: starts RIE on two free ports of 127.0.0.1
   with the command, times from the start of the RIE process to the first
   complete response to one invocation, and stops RIE and the runtime by pid.
   The time includes RIE's own start, the runtime's init (for shoprec: the
   SDK clients and the model load from DynamoDB and S3) and the first request.
2. Warm load: keeps the last cold instance and sends --requests sequential
   invocations over one keep-alive loopback connection. It reports p50, p99
   and max latency, errors and requests per second. RIE serves one invocation
   at a time, so the rate is that of one instance.
3. Peak RSS: VmHWM from /proc/PID/status of the runtime process, the direct
   child of RIE, read after the warm load.

An invocation counts as an error when RIE returns a non-2xx status, when the
payload is a Lambda error (`errorType` or `errorMessage`), when an API
Gateway response has a non-2xx `statusCode`, or when a stream batch response
lists `batchItemFailures`.

The runtime gets a small environment: PATH, HOME, LANG, the AWS region,
credentials and endpoint variables, the shoprec table and bucket variables,
ORT_DYLIB_PATH, MODEL_REFRESH_SECONDS and the CANDIDATES_* limits when set,
RUST_LOG (default warn) and the AWS_LAMBDA_* variables below. The endpoints must be loopback addresses.
RIE does not enforce AWS_LAMBDA_FUNCTION_MEMORY_SIZE, so the runtime can use
more memory and CPU here than in Lambda.

The results go to standard output as text and as a Markdown table, and with
--json to a file. RIE's output, which includes the runtime's logs, goes to
--log-dir.
"""

import argparse
import http.client
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# Variables copied from this process into the runtime's environment when set.
PASSED_VARIABLES = (
    "PATH",
    "HOME",
    "LANG",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "ITEMS_TABLE",
    "PROFILES_TABLE",
    "EVENTS_TABLE",
    "MODEL_STATE_TABLE",
    "LIVE_PROFILES_TABLE",
    "ARTIFACT_BUCKET",
    "ORT_DYLIB_PATH",
    "MODEL_REFRESH_SECONDS",
    "CANDIDATES_NEIGHBOURS",
    "CANDIDATES_EMBEDDING",
    "CANDIDATES_SIMILAR_TO_RECENT",
    "CANDIDATES_POPULAR",
)
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Seconds to wait for RIE and the runtime to stop after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
# Seconds between connection attempts while RIE starts.
CONNECT_RETRY_INTERVAL = 0.001


class BenchError(Exception):
    """A failure that stops the benchmark, with a message for the user."""


@dataclass
class FunctionSpec:
    name: str
    command: list
    folder: Path
    event_path: Path
    payload: bytes


@dataclass
class FunctionResult:
    name: str
    command: str
    event: str
    cold_seconds: list = field(default_factory=list)
    cold_load_average: list = field(default_factory=list)
    warm_seconds: list = field(default_factory=list)
    warm_errors: int = 0
    warm_wall_seconds: float = 0.0
    warm_load_average: list = field(default_factory=list)
    peak_rss_kib: int = 0
    first_error: str = ""
    first_response: str = ""
    # From the runtime's output during the warm load: RIE's REPORT durations
    # and the handler's own EMF "Latency" values, in milliseconds.
    report_durations_ms: list = field(default_factory=list)
    handler_latencies_ms: list = field(default_factory=list)


def parse_function_spec(text):
    """Parse NAME=COMMAND[@FOLDER]:EVENT into a FunctionSpec."""
    name, separator, rest = text.partition("=")
    if not separator or not name:
        raise BenchError(f"invalid --function {text!r}: expected NAME=COMMAND[@FOLDER]:EVENT")
    command_text, separator, event = rest.rpartition(":")
    if not separator or not command_text or not event:
        raise BenchError(f"invalid --function {text!r}: the event file after the last ':' is missing")
    folder = "."
    if "@" in command_text:
        command_text, _, folder = command_text.rpartition("@")
    command = shlex.split(command_text)
    if not command:
        raise BenchError(f"invalid --function {text!r}: the command is empty")

    folder_path = Path(folder).resolve()
    if not folder_path.is_dir():
        raise BenchError(f"working folder {folder_path} of function {name} not found")
    # A relative program path with a "/" is relative to the runtime's folder.
    # abspath keeps symbolic links: a venv's python finds its packages only
    # when started through the link in the venv.
    program = command[0]
    if "/" in program:
        program_path = Path(os.path.abspath(folder_path / program))
        if not os.access(program_path, os.X_OK):
            raise BenchError(f"runtime command {program_path} of function {name} not found or not executable")
        command[0] = str(program_path)

    event_path = Path(event).resolve()
    try:
        payload = event_path.read_bytes()
        json.loads(payload)
    except OSError as error:
        raise BenchError(f"event file {event} of function {name} cannot be read: {error}") from error
    except ValueError as error:
        raise BenchError(f"event file {event} of function {name} is not valid JSON: {error}") from error
    return FunctionSpec(name, command, folder_path, event_path, payload)


def check_loopback_endpoints():
    for variable in ENDPOINT_VARIABLES:
        value = os.environ.get(variable)
        if not value:
            raise BenchError(f"{variable} is not set: run 'source scripts/env.sh' first")
        host = value.split("://", 1)[-1].split("/", 1)[0]
        if not host.startswith("["):
            host = host.rsplit(":", 1)[0]
        elif "]:" in host:
            host = host.rsplit(":", 1)[0]
        if host not in LOOPBACK_HOSTS:
            raise BenchError(f"{variable}={value} is not a loopback address: this benchmark runs only against local emulators")


def free_port():
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runtime_environment(spec, args):
    environment = {name: os.environ[name] for name in PASSED_VARIABLES if os.environ.get(name)}
    environment["RUST_LOG"] = args.rust_log
    environment["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
    environment["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST"
    environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(args.memory_mb)
    environment["AWS_LAMBDA_FUNCTION_TIMEOUT"] = str(int(args.timeout))
    environment["AWS_LAMBDA_LOG_GROUP_NAME"] = f"/aws/lambda/{spec.name}"
    environment["AWS_LAMBDA_LOG_STREAM_NAME"] = "bench"
    return environment


def child_pids(pid):
    """Return the pids of the direct children of pid, from /proc."""
    children = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as file:
                children.update(int(child) for child in file.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(children)


def read_status_kib(pid, key):
    """Return a "kB" field of /proc/PID/status, such as VmHWM, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key} field")


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class EmulatorInstance:
    """One RIE process with its runtime, started and stopped by pid."""

    def __init__(self, rie, spec, args, log_path):
        self.spec = spec
        self.port = free_port()
        runtime_api_port = free_port()
        command = [
            str(rie),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{runtime_api_port}",
            "--log-level",
            args.rie_log_level,
            *spec.command,
        ]
        self.log_file = open(log_path, "ab")
        self.log_file.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {shlex.join(command)}\n".encode())
        self.log_file.flush()
        self.runtime_pids = []
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=spec.folder,
            env=runtime_environment(spec, args),
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def first_invocation(self, timeout):
        """Invoke once as soon as RIE accepts connections.

        Returns the open connection, the seconds since RIE started, and the
        HTTP status and body of the response.
        """
        deadline = self.started + timeout
        while True:
            if self.process.poll() is not None:
                raise BenchError(
                    f"RIE for {self.spec.name} exited with status {self.process.returncode} before it responded; "
                    f"see {self.log_file.name}"
                )
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=max(deadline - time.perf_counter(), 0.1))
            try:
                connection.connect()
            except ConnectionRefusedError:
                connection.close()
                if time.perf_counter() > deadline:
                    raise BenchError(f"RIE for {self.spec.name} did not accept connections within {timeout} s") from None
                time.sleep(CONNECT_RETRY_INTERVAL)
                continue
            status, body = invoke(connection, self.spec.payload)
            elapsed = time.perf_counter() - self.started
            self.runtime_pids = child_pids(self.process.pid)
            return connection, elapsed, status, body

    def peak_rss_kib(self):
        if len(self.runtime_pids) != 1:
            raise BenchError(f"expected one runtime process under RIE pid {self.process.pid}, found {self.runtime_pids}")
        return read_status_kib(self.runtime_pids[0], "VmHWM")

    def stop(self):
        """Stop RIE by pid, then any runtime process that outlived it."""
        runtime_pids = self.runtime_pids or child_pids(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in runtime_pids:
            if not process_alive(pid):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT
                while process_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if process_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # It exited between the check and the signal.
        self.log_file.close()


def invoke(connection, payload):
    connection.request("POST", INVOKE_PATH, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def invocation_error(status, body):
    """Return why an invocation failed, or "" when it succeeded."""
    if not 200 <= status < 300:
        return f"RIE status {status}: {body[:200]!r}"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"response is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict):
        return ""
    if "errorType" in payload or "errorMessage" in payload:
        return f"Lambda error {payload.get('errorType')}: {payload.get('errorMessage')}"
    status_code = payload.get("statusCode")
    if status_code is not None and not (isinstance(status_code, int) and 200 <= status_code < 300):
        return f"statusCode {status_code}: {str(payload.get('body'))[:200]}"
    if payload.get("batchItemFailures"):
        return f"batchItemFailures: {payload['batchItemFailures']}"
    return ""


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of sorted values."""
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[int(rank) - 1]


def bench_function(rie, spec, args, log_dir):
    result = FunctionResult(spec.name, shlex.join(spec.command), str(spec.event_path))
    log_path = log_dir / f"{spec.name}.log"
    log_path.unlink(missing_ok=True)

    for repeat in range(args.repeats):
        instance = EmulatorInstance(rie, spec, args, log_path)
        keep = repeat == args.repeats - 1
        try:
            connection, elapsed, status, body = instance.first_invocation(args.timeout)
            error = invocation_error(status, body)
            if error:
                raise BenchError(f"cold invocation of {spec.name} failed: {error}; see {log_path}")
            result.cold_seconds.append(elapsed)
            result.first_response = result.first_response or body[:300].decode(errors="replace")
            result.cold_load_average.append(os.getloadavg()[0])
            print(f"{spec.name}: cold start {repeat + 1}/{args.repeats}: {elapsed * 1000:.1f} ms", file=sys.stderr)
            if keep:
                run_warm_load(instance, connection, spec, args, result)
            connection.close()
        finally:
            instance.stop()
    return result


def run_warm_load(instance, connection, spec, args, result):
    # Lets RIE write the cold invocation's REPORT line before the warm part of the log starts.
    time.sleep(0.5)
    log_offset = os.path.getsize(instance.log_file.name)
    result.warm_load_average.append(os.getloadavg()[0])
    started = time.perf_counter()
    for _ in range(args.requests):
        before = time.perf_counter()
        status, body = invoke(connection, spec.payload)
        result.warm_seconds.append(time.perf_counter() - before)
        error = invocation_error(status, body)
        if error:
            result.warm_errors += 1
            result.first_error = result.first_error or error
    result.warm_wall_seconds = time.perf_counter() - started
    result.warm_load_average.append(os.getloadavg()[0])
    result.peak_rss_kib = instance.peak_rss_kib()
    # RIE copies the runtime's output after it returns the response.
    time.sleep(0.5)
    read_warm_log(Path(instance.log_file.name), log_offset, result)


def read_warm_log(log_path, offset, result):
    """Collect RIE's REPORT durations and EMF Latency values written after offset."""
    with open(log_path, "rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace").splitlines()
    for line in lines:
        if line.startswith("REPORT RequestId:") and "Duration: " in line:
            result.report_durations_ms.append(float(line.split("Duration: ", 1)[1].split()[0]))
        elif line.startswith('{"_aws"') and '"Latency"' in line:
            try:
                latency = json.loads(line).get("Latency")
            except ValueError:
                continue
            if isinstance(latency, list):
                result.handler_latencies_ms.extend(float(value) for value in latency)
            elif isinstance(latency, (int, float)):
                result.handler_latencies_ms.append(float(latency))


def distribution_ms(values):
    values = sorted(values)
    if not values:
        return None
    return {"count": len(values), "p50": percentile(values, 0.50), "p99": percentile(values, 0.99), "max": values[-1]}


def summarise(result):
    cold = sorted(result.cold_seconds)
    warm = sorted(result.warm_seconds)
    summary = {
        "name": result.name,
        "command": result.command,
        "event": result.event,
        "cold_ms": {
            "min": cold[0] * 1000,
            "median": statistics.median(cold) * 1000,
            "max": cold[-1] * 1000,
            "all": [value * 1000 for value in result.cold_seconds],
        },
        "cold_load_average_1min": result.cold_load_average,
        "peak_rss_mib": result.peak_rss_kib / 1024,
    }
    if warm:
        summary["warm"] = {
            "requests": len(warm),
            "p50_ms": percentile(warm, 0.50) * 1000,
            "p99_ms": percentile(warm, 0.99) * 1000,
            "max_ms": warm[-1] * 1000,
            "errors": result.warm_errors,
            "first_error": result.first_error,
            "requests_per_second": len(warm) / result.warm_wall_seconds,
            "load_average_1min_before_after": result.warm_load_average,
            "rie_report_duration_ms": distribution_ms(result.report_durations_ms),
            "handler_emf_latency_ms": distribution_ms(result.handler_latencies_ms),
        }
    summary["first_response"] = result.first_response
    return summary


def print_markdown(summaries):
    print("| function | cold min | cold median | cold max | warm p50 | warm p99 | warm max | requests/s | errors | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for summary in summaries:
        cold = summary["cold_ms"]
        warm = summary.get("warm")
        warm_cells = (
            f"{warm['p50_ms']:.2f} ms | {warm['p99_ms']:.2f} ms | {warm['max_ms']:.2f} ms | "
            f"{warm['requests_per_second']:.0f} | {warm['errors']} of {warm['requests']}"
            if warm
            else "| | | |"
        )
        print(
            f"| `{summary['name']}` | {cold['min']:.0f} ms | {cold['median']:.0f} ms | {cold['max']:.0f} ms | "
            f"{warm_cells} | {summary['peak_rss_mib']:.1f} MiB |"
        )


def default_rie():
    """Return the RIE binary inside the aws-sam-cli package of this Python."""
    import samcli  # noqa: PLC0415 (imported here so --rie works without the SAM CLI)

    return Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Time cold starts and warm load of Lambda functions under the Lambda Runtime Interface Emulator.",
        epilog="See the module docstring for the --function format.",
    )
    parser.add_argument(
        "--function",
        action="append",
        required=True,
        metavar="NAME=COMMAND[@FOLDER]:EVENT",
        help="function to time; repeat the option for each function",
    )

    parser.add_argument("--repeats", type=int, default=10, help="cold starts per function (default 10)")
    parser.add_argument("--requests", type=int, default=2000, help="warm invocations per function (default 2000)")
    parser.add_argument("--rie", type=Path, help="RIE binary (default: aws-lambda-rie-x86_64 of the installed SAM CLI)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for one cold start (default 60)")

    parser.add_argument(
        "--memory-mb",
        type=int,
        default=512,
        help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE for the runtime, in MB; RIE does not enforce it (default 512)",
    )
    parser.add_argument("--rust-log", default="warn", help="RUST_LOG for the runtime (default warn)")
    parser.add_argument("--rie-log-level", default="error", help="RIE --log-level (default error)")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path(os.environ.get("SHOPREC_STATE", ".local")) / "bench-lambda",
        help="folder for each function's RIE and runtime output (default $SHOPREC_STATE/bench-lambda)",
    )
    parser.add_argument("--json", type=Path, help="also write the results, with every cold time, to this JSON file")

    args = parser.parse_args(argv)
    if args.repeats < 1 or args.requests < 0:
        parser.error("--repeats must be at least 1 and --requests at least 0")
    return args


def main(argv):
    args = parse_arguments(argv)
    try:
        specs = [parse_function_spec(text) for text in args.function]
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise BenchError(f"function names must be unique, got {names}")
        check_loopback_endpoints()
        rie = args.rie or default_rie()
        if not os.access(rie, os.X_OK):
            raise BenchError(f"RIE binary {rie} not found or not executable: run scripts/install-tools.sh or pass --rie")
        args.log_dir.mkdir(parents=True, exist_ok=True)

        summaries = []
        for spec in specs:
            summary = summarise(bench_function(rie, spec, args, args.log_dir))
            summaries.append(summary)
            print(json.dumps(summary, indent=2), file=sys.stderr)
    except BenchError as error:
        print(f"bench_lambda.py: error: {error}", file=sys.stderr)
        return 1

    print_markdown(summaries)
    if args.json:
        report = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "repeats": args.repeats,
            "requests": args.requests,
            "nproc": os.cpu_count(),
            "functions": summaries,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
