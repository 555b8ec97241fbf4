#!/usr/bin/env python3
"""What the release artifact does with a panic: one invocation fails, the process lives on.

    python3 scripts/panic-check.py BOOTSTRAP

Runs BOOTSTRAP (the release build, e.g. target/lambda/bootstrap/bootstrap from
`cargo lambda build --release`) against a minimal Lambda Runtime API served here on
127.0.0.1, the way Lambda runs it, and hands it two invocations in a row:

  1. events/02-login-logout.json rewritten to a log group named by the test hook
     HSM_AUDIT_PANIC_ON_LOG_GROUP (src/config.rs), for which the handler panics;
  2. the same payload under its own log group.

Passes when invocation 1 is reported to /error, invocation 2 to /response with its
records stored, and the same process asks for a third: docs/operate.md's statement that a
panic fails its invocation only (`panic = "unwind"` in [profile.release]). With
`panic = "abort"` the process dies on invocation 1 and this fails.

Needs the local DynamoDB's environment (run through scripts/with-local-dynamodb.sh)
and the table TABLE_NAME created (`hsm-audit setup`).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENT = ROOT / "events" / "02-login-logout.json"
PANIC_GROUP = "/aws/cloudhsm/panic-check"
PREFIX = "/2018-06-01/runtime"


def with_log_group(event: dict, group: str) -> dict:
    payload = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    payload["logGroup"] = group
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}


class RuntimeApi:
    """The Runtime API's four routes; it records what the function posted."""

    def __init__(self, events: list[bytes]):
        self.pending = list(enumerate(events))
        self.results: dict[str, tuple[str, dict]] = {}
        self.next_requests = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the function's own output is what matters
                pass

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                with api.lock:
                    api.next_requests += 1
                    item = api.pending.pop(0) if api.pending else None
                if item is None:
                    # A process that asks for a third invocation has survived the first
                    # two; hold it here until the check is over.
                    api.done.set()
                    time.sleep(3600)
                    return
                index, body = item
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{index + 1}")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:hsm-audit-panic-check",
                )
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    try:
                        parsed = json.loads(body or b"null")
                    except json.JSONDecodeError:
                        parsed = {"raw": body.decode(errors="replace")}
                    with api.lock:
                        api.results[parts[1]] = (parts[2], parsed)
                elif parts[:2] == ["init", "error"]:
                    with api.lock:
                        api.results["init"] = ("error", json.loads(body or b"null"))
                    api.done.set()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap = Path(sys.argv[1])
    if not bootstrap.is_file():
        print(f"panic-check: {bootstrap} does not exist; build it first", file=sys.stderr)
        return 1
    event = json.loads(EVENT.read_text())
    events = [json.dumps(with_log_group(event, PANIC_GROUP)).encode(), json.dumps(event).encode()]
    api = RuntimeApi(events)
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME="hsm-audit-panic-check",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/hsm-audit-panic-check",
        AWS_LAMBDA_LOG_STREAM_NAME="panic-check",
        HSM_AUDIT_PANIC_ON_LOG_GROUP=PANIC_GROUP,
    )
    log_path = ROOT / ".local" / "panic-check.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(bootstrap)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not api.done.is_set() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        exit_code = process.poll()
        if exit_code is None:
            process.kill()
            process.wait()
    server.shutdown()

    problems = []
    if exit_code is not None:
        problems.append(f"the function process exited (code {exit_code}) after {api.next_requests} request(s) for an invocation")
    first = api.results.get("req-1")
    if first is None or first[0] != "error":
        problems.append(f"invocation 1 (panicking log group) was not reported as an error: {first}")
    elif "HSM_AUDIT_PANIC_ON_LOG_GROUP" not in str(first[1].get("errorMessage")):
        # Another failure (DynamoDB, say) would prove nothing about panics.
        problems.append(f"invocation 1's error is not the test panic: {first[1]}")
    second = api.results.get("req-2")
    if second is None or second[0] != "response":
        problems.append(f"invocation 2 (same process) did not succeed: {second}")
    elif not (isinstance(second[1], dict) and second[1].get("records", 0) > 0):
        problems.append(f"invocation 2 stored no records: {second[1]}")
    if problems:
        for problem in problems:
            print(f"panic-check: FAIL: {problem}", file=sys.stderr)
        print(f"panic-check: function output: {log_path.relative_to(ROOT)}", file=sys.stderr)
        return 1
    print(f"panic-check: OK: invocation 1 failed ({first[1].get('errorMessage')!r}), "
          f"invocation 2 stored {second[1]['records']} records in the same process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
