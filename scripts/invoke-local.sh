#!/usr/bin/env bash
# `make invoke-local`: run the Lambda function locally with `cargo lambda watch`
# (on 127.0.0.1 only) against the local DynamoDB, invoke it once per
# events/*.json, then stop the watcher, and check the results (a Kinesis batch of the same
# payloads reports no failed record, metrics are emitted, sessions are stored), and
# show with the release artifact what a panic does (scripts/panic-check.py).
# Run by .ci/run after `make test`.
# Run it through scripts/with-local-dynamodb.sh (AWS_ENDPOINT_URL must be set)
# with .venv/bin on PATH (cargo-lambda).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ -n "${AWS_ENDPOINT_URL:-}" ]] || { echo "invoke-local.sh: AWS_ENDPOINT_URL is not set; run: make invoke-local" >&2; exit 1; }
command -v cargo-lambda >/dev/null || { echo "invoke-local.sh: cargo-lambda not on PATH; run: make deps-build" >&2; exit 1; }

export TABLE_NAME="${TABLE_NAME:-hsm-audit-local}"
STATE="$ROOT/.local"
mkdir -p "$STATE"
WATCH_LOG="$STATE/cargo-lambda-watch.log"
READY_TIMEOUT="${WATCH_READY_TIMEOUT:-120}"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

echo "==== cargo build --bin bootstrap --bin hsm-audit"
cargo build --bin bootstrap --bin hsm-audit

echo "==== hsm-audit setup (table $TABLE_NAME)"
target/debug/hsm-audit setup

watch_pid=""
stop_watch() {
    [[ -n "$watch_pid" ]] || return 0
    # The watcher runs in its own session (setsid), so its process group is
    # exactly the watcher and the function processes it spawned.
    if kill -0 "$watch_pid" 2>/dev/null; then
        kill -INT -- "-$watch_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$watch_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM -- "-$watch_pid" 2>/dev/null || true
    fi
    watch_pid=""
}
trap stop_watch EXIT

echo "==== cargo lambda watch on 127.0.0.1:$port (log: .local/cargo-lambda-watch.log)"
env_vars="TABLE_NAME=$TABLE_NAME,AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL,AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
env_vars+=",AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY,AWS_REGION=$AWS_REGION,RUST_LOG=${RUST_LOG:-info}"
# As the template's LoggingConfig sets it in AWS: JSON log lines.
env_vars+=",AWS_LAMBDA_LOG_FORMAT=JSON"
# The samples are years of history delivered within a minute, one stream after another:
# a lateness of ten years folds them all in exactly, as live delivery would.
env_vars+=",ALLOWED_LATENESS_SECONDS=315360000"
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --bin bootstrap \
    --env-var "$env_vars" >"$WATCH_LOG" 2>&1 </dev/null &
watch_pid=$!

waited=0
until python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; do
    if ! kill -0 "$watch_pid" 2>/dev/null; then
        echo "invoke-local.sh: cargo lambda watch exited; log:" >&2; tail -n 30 "$WATCH_LOG" >&2
        exit 1
    fi
    if (( waited >= READY_TIMEOUT )); then
        echo "invoke-local.sh: cargo lambda watch did not listen within ${READY_TIMEOUT}s; log:" >&2
        tail -n 30 "$WATCH_LOG" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

failed=0
invoke() { # invoke FILE: prints the function's response, fails when the invocation does
    cargo lambda invoke bootstrap --invoke-address 127.0.0.1 --invoke-port "$port" --data-file "$1"
}
for event in events/*.json; do
    echo "==== invoke bootstrap --data-file $event"
    if ! invoke "$event"; then
        echo "(invoke with $event failed)" >&2
        failed=$((failed + 1))
    fi
    echo
done

# The same payloads as one Kinesis Data Streams batch (a record's data is exactly the
# subscription's awslogs.data): the response must name no failed record.
kinesis_event="$STATE/kinesis-event.json"
python3 - "$kinesis_event" events/*.json <<'PY'
import json, sys
records = []
for index, path in enumerate(sys.argv[2:]):
    with open(path) as f:
        data = json.load(f)["awslogs"]["data"]
    seq = "4959033827149025660855969253836157109592157598913%07d" % index
    records.append({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "hsm-audit",
                                "sequenceNumber": seq, "data": data,
                                "approximateArrivalTimestamp": 1516067329.824},
                    "eventSource": "aws:kinesis", "eventVersion": "1.0",
                    "eventID": "shardId-000000000000:" + seq, "eventName": "aws:kinesis:record",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/hsm-audit"})
with open(sys.argv[1], "w") as f:
    json.dump({"Records": records}, f)
PY
echo "==== invoke bootstrap with a Kinesis batch of events/*.json"
if response="$(invoke "$kinesis_event")" && echo "$response" \
    && python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r == {"batchItemFailures": []} else 1)' "$response"; then
    :
else
    echo "(the Kinesis batch failed or reported failed records)" >&2
    failed=$((failed + 1))
fi

# The function's stdout holds its EMF metrics lines.
if ! grep -q '"CloudWatchMetrics"' "$WATCH_LOG"; then
    echo "(no EMF metrics line in the function's output)" >&2
    failed=$((failed + 1))
fi

# JSON logs: the summary line of an invocation carries its span (log groups, streams).
# One grep, not a pipe into `grep -q`: under pipefail the first grep's SIGPIPE, when
# `grep -q` stops reading at its match, failed the check at random.
if ! grep -q '"invocation processed".*"span":{[^}]*"log_groups"' "$WATCH_LOG"; then
    echo "(no JSON summary line with the invocation's span in the function's output)" >&2
    failed=$((failed + 1))
fi

echo "==== hsm-audit sessions --cluster cluster-demo --output json"
sessions="$(target/debug/hsm-audit sessions --cluster cluster-demo --output json)"
count="$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$sessions")"
echo "$count sessions"
if (( count == 0 )); then
    echo "(no sessions were stored)" >&2
    failed=$((failed + 1))
fi

stop_watch

# The release artifact, built as `make build` builds it (cargo-lambda, whose default
# would be panic = "abort") but for this machine's architecture so it can run here: a
# panic fails its invocation only, and the same process serves the next one.
case "$(uname -m)" in
    aarch64|arm64) release_arch=--arm64 ;;
    *) release_arch=--x86-64 ;;
esac
echo "==== cargo lambda build --release $release_arch --bin bootstrap"
release_started=$SECONDS
if cargo lambda build --release "$release_arch" --bin bootstrap; then
    echo "(release build: $((SECONDS - release_started)) s)"
    echo "==== scripts/panic-check.py target/lambda/bootstrap/bootstrap"
    if ! python3 scripts/panic-check.py target/lambda/bootstrap/bootstrap; then
        echo "(the release artifact did not survive a panic as docs/operate.md says)" >&2
        failed=$((failed + 1))
    fi
else
    echo "(the release build failed)" >&2
    failed=$((failed + 1))
fi

if (( failed )); then
    echo "invoke-local: $failed check(s) failed; function log: .local/cargo-lambda-watch.log" >&2
    exit 1
fi
echo "invoke-local: all invocations succeeded, sessions stored, metrics emitted; the release artifact survives a panic"
