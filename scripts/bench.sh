#!/usr/bin/env bash
# `make bench`: the stage throughputs and DynamoDB cost (benches/pipeline.rs), the
# history curve (benches/history.rs), the report at scale (benches/report.rs), the alert
# latency (benches/alerts.rs), then peak memory on the largest payload, binary size and
# start-up time of the release binaries, then time windows (benches/windows.rs). Run
# through scripts/with-local-dynamodb.sh (AWS_ENDPOINT_URL set).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p .local
PY="$ROOT/.venv/bin/python"
LARGEST=.local/largest-payload.json
WORKLOAD=.local/bench-workload
rm -rf "$WORKLOAD"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
echo "== stages and DynamoDB cost (cargo bench --bench pipeline)"
BENCH_LARGEST_PAYLOAD="$LARGEST" BENCH_WORKLOAD_DIR="$WORKLOAD" cargo bench --bench pipeline

echo
echo "== one invocation against the cluster's history, 1k to 1M records (cargo bench --bench history)"
cargo bench --bench history

echo
echo "== busy clusters: 3 HSMs at ~150 records/s, 1 HSM at ~600, to 250k records; a payload two hours late; rederive (cargo bench --bench dense)"
# The server curves run on dynalite (npm; moto's Query time grows with the partition), behind
# the counting proxy, which answers dynalite's missing TransactWriteItems itself. The four to
# 250k took 22–50 min on 2 shared cores (docs/performance.md); BENCH_DENSE_SERVER_POINTS shortens them.
(cd scripts/dynalite && npm ci --no-audit --no-fund --silent)
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A fresh dynalite (in memory) behind a fresh counting proxy: DYNALITE_PORT, PROXY_PORT.
start_server() {
    DYNALITE_PORT=$(free_port)
    PROXY_PORT=$(free_port)
    # dynalite holds the tables in its heap: a cluster of 250k records took 3 GiB.
    NODE_OPTIONS=--max-old-space-size=8192 \
        scripts/dynalite/node_modules/.bin/dynalite --host 127.0.0.1 --port "$DYNALITE_PORT" >.local/dynalite.log 2>&1 &
    DYNALITE_PID=$!
    "$PY" scripts/counting_proxy.py "$PROXY_PORT" "http://127.0.0.1:$DYNALITE_PORT" --emulate-transactions &
    PROXY_PID=$!
    trap 'kill $DYNALITE_PID $PROXY_PID 2>/dev/null || true' EXIT
    sleep 2
}
stop_server() {
    kill "$DYNALITE_PID" "$PROXY_PID" 2>/dev/null || true
    trap - EXIT
}
start_server
AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" BENCH_DENSE_PROXY_PORT="$PROXY_PORT" \
    BENCH_DENSE_SERVER_POINTS="${BENCH_DENSE_SERVER_POINTS:-1000,10000,100000,250000}" \
    cargo bench --bench dense
stop_server

echo
echo "== open state: a 3-record delivery with 5,000 and 50,000 sessions never logged out, and 1,000 reboots, in memory and on the server (cargo bench --bench open_state)"
start_server
AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" BENCH_OPEN_STATE_PROXY_PORT="$PROXY_PORT" \
    cargo bench --bench open_state
stop_server

echo
echo "== hsm-audit report of 100,000 keys and 50,000 sessions, read page by page (cargo bench --bench report)"
cargo bench --bench report

echo
echo "== alert latency: a record's arrival to its EventBridge event (cargo bench --bench alerts)"
cargo bench --bench alerts

echo
echo "== release binaries"
cargo build --release --bin bootstrap --bin hsm-audit 2>&1 | tail -1
mib() { awk -v bytes="$(stat -c %s "$1")" 'BEGIN { printf "%.2f", bytes / 1048576 }'; }
for binary in bootstrap hsm-audit; do
    echo "$binary: $(mib target/release/$binary) MiB (stripped, $(uname -m))"
done
# `make build` and `make invoke-local` both write target/lambda/bootstrap (for arm64 and for
# this machine): the ELF header's machine field (bytes 18-19) says which this one is.
lambda_artifact=target/lambda/bootstrap/bootstrap
if [[ -f $lambda_artifact ]]; then
    case "$(od -An -tx1 -j18 -N2 "$lambda_artifact" | tr -d ' \n')" in
        b700) echo "bootstrap: $(mib "$lambda_artifact") MiB (the arm64 Lambda artifact of make build)" ;;
        *) echo "bootstrap: no arm64 artifact (target/lambda holds another architecture's build); make build makes it" ;;
    esac
fi

echo
echo "== peak memory and start-up (child processes, measured by the OS)"
# The allocator's option template.yaml sets for the Lambda: the peak measured is the one
# the function would have.
export MIMALLOC_ARENA_EAGER_COMMIT=0
export TABLE_NAME="hsm-audit-bench-memory"
target/release/hsm-audit setup >/dev/null
"$PY" - "$LARGEST" "$WORKLOAD" <<'PY'
import statistics, subprocess, sys, time, json, tempfile, os

largest, workload = sys.argv[1], sys.argv[2]
# The peak of the command alone, by GNU time: a child of this interpreter starts as a copy
# of it, and the kernel counts that copy's 13 MiB in the child's peak too (a `true` run from
# here "peaks" at 13 MiB), more than `hsm-audit parse` uses. `time` is a small parent.
GNU_TIME = "/usr/bin/time"
def peak_of(args):
    if not os.access(GNU_TIME, os.X_OK):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        subprocess.run([GNU_TIME, "-f", "%M", "-o", report.name, *args], check=True, stdout=subprocess.DEVNULL)
        return int(report.read().split()[-1]) / 1024

def rss(peak):
    return f"peak RSS {peak:.1f} MiB" if peak is not None else "peak RSS not measured (needs GNU time: apt-get install time)"

print(f"parse  the largest payload: {rss(peak_of(['target/release/hsm-audit', 'parse', largest]))}")
print(f"ingest the largest payload into DynamoDB (the Lambda's path): {rss(peak_of(['target/release/hsm-audit', 'ingest', largest]))}")

record = open("tests/fixtures/seed-000/06-login-and-logout-events-0x0-login.txt").read()
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
    handle.write(record)
runs = []
for _ in range(21):
    started = time.perf_counter()
    subprocess.run(["target/release/hsm-audit", "parse", "--log-group", "/aws/cloudhsm/c", "--log-stream", "h", handle.name],
                   check=True, stdout=subprocess.DEVNULL)
    runs.append(time.perf_counter() - started)
os.unlink(handle.name)
print(f"process start to first record parsed (hsm-audit parse, one record): median {statistics.median(runs) * 1000:.1f} ms over {len(runs)} runs")

# Last, as the largest: the CLI stores file after file, holding their records, then
# derives once (in bounded steps) over what they brought.
files = sorted(os.path.join(workload, name) for name in os.listdir(workload))
os.environ["TABLE_NAME"] = "hsm-audit-bench-history"
subprocess.run(["target/release/hsm-audit", "setup"], check=True, stdout=subprocess.DEVNULL)
started = time.perf_counter()
peak = peak_of(["target/release/hsm-audit", "ingest", *files])
print(f"ingest the whole workload ({len(files)} payloads) through the CLI, deriving once at the end: {rss(peak)}, {time.perf_counter() - started:.0f} s")
PY

echo
echo "== time windows: one hour's sessions, key events, failed logins, alerts and trail at 30k and 250k records, the indexes' write units, whole-cluster listings' peak RSS (cargo bench --bench windows)"
# `cargo bench` leaves its own build of the binary (unstripped) at target/release/hsm-audit:
# the listings run a copy of the release one.
cp target/release/hsm-audit .local/hsm-audit-release
start_server
AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" BENCH_WINDOWS_PROXY_PORT="$PROXY_PORT" \
    BENCH_WINDOWS_SERVER="http://127.0.0.1:$DYNALITE_PORT" BENCH_WINDOWS_CLI="$ROOT/.local/hsm-audit-release" \
    cargo bench --bench windows
stop_server
