#!/usr/bin/env bash
# Local DynamoDB (moto server) for tests and the demo.
#
#   scripts/local-dynamodb.sh deps [REQFILE...]  create .venv/ and install scripts/requirements.txt
#                                                (plus any extra requirement files given)
#   scripts/local-dynamodb.sh start              start moto on a free 127.0.0.1 port (or reuse it)
#   scripts/local-dynamodb.sh status             exit 0 if our server is running and answering
#   scripts/local-dynamodb.sh env                print `export ...` lines for eval
#   scripts/local-dynamodb.sh stop               stop the server this script started
#
# State lives in .local/ (moto.pid, moto.port, moto.log). The server only ever
# binds 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.local"
PID_FILE="$STATE/moto.pid"
PORT_FILE="$STATE/moto.port"
LOG_FILE="$STATE/moto.log"
HOST=127.0.0.1
START_TIMEOUT="${MOTO_START_TIMEOUT:-30}"

log() { echo "local-dynamodb: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- venv ------------------------------------------------------------------

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
    fi
}

# install_requirements FILE: pip install -r FILE unless the stamp says it is
# already installed. The stamp is a copy of the requirements file, so any edit
# to the file triggers a reinstall.
install_requirements() {
    local req="$1" name stamp
    [[ -f "$req" ]] || die "no such requirements file: $req"
    name="$(basename "$req" .txt)"
    stamp="$VENV/.$name.stamp"
    if [[ -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
        return 0
    fi
    log "installing $(basename "$req") into .venv (this happens once per change of the file)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$req" \
        || die "pip install -r $req failed"
    cp "$req" "$stamp"
}

cmd_deps() {
    ensure_venv
    install_requirements "$ROOT/scripts/requirements.txt"
    local extra
    for extra in "$@"; do
        install_requirements "$extra"
    done
}

# --- server ------------------------------------------------------------------

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# answers PORT: true when something speaks HTTP on 127.0.0.1:PORT.
answers() {
    python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
url = "http://127.0.0.1:%s/moto-api/" % sys.argv[1]
try:
    urllib.request.urlopen(url, timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP status means the server is up
PY
}

# our_pid: print the recorded pid if that process is alive and is a moto server.
our_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server || return 1
    fi
    echo "$pid"
}

running() {
    local pid port
    pid="$(our_pid)" || return 1
    [[ -f "$PORT_FILE" ]] || return 1
    port="$(cat "$PORT_FILE")"
    [[ "$port" =~ ^[0-9]+$ ]] || return 1
    answers "$port"
}

cmd_status() {
    if running; then
        echo "running: pid $(cat "$PID_FILE"), http://$HOST:$(cat "$PORT_FILE")"
    else
        echo "not running"
        return 1
    fi
}

cmd_start() {
    cmd_deps
    mkdir -p "$STATE"
    if running; then
        log "reusing moto server pid $(cat "$PID_FILE") on http://$HOST:$(cat "$PORT_FILE")"
        return 0
    fi
    # A stale pid of ours that no longer answers: stop it before starting anew.
    if our_pid >/dev/null; then
        cmd_stop
    fi
    rm -f "$PID_FILE" "$PORT_FILE"

    local attempt port pid waited
    for attempt in 1 2 3; do
        port="$(free_port)"
        # moto_server with its DynamoDB model serialized (see the script: atomic item
        # writes and transactions, as DynamoDB's).
        nohup "$VENV/bin/python" "$ROOT/scripts/moto_server_serialized.py" -H "$HOST" -p "$port" \
            >"$LOG_FILE" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$PORT_FILE"
        waited=0
        while (( waited < START_TIMEOUT * 5 )); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            if answers "$port"; then
                log "moto server pid $pid listening on http://$HOST:$port (log: .local/moto.log)"
                return 0
            fi
            sleep 0.2
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            rm -f "$PID_FILE" "$PORT_FILE"
            log "last lines of .local/moto.log:"; tail -n 20 "$LOG_FILE" >&2 || true
            die "moto server did not answer on http://$HOST:$port within ${START_TIMEOUT}s"
        fi
        # The process died (most likely the port was taken between picking and
        # binding it): try another port.
        log "moto server exited early (attempt $attempt); log:"; tail -n 20 "$LOG_FILE" >&2 || true
        rm -f "$PID_FILE" "$PORT_FILE"
    done
    die "could not start the moto server"
}

cmd_stop() {
    local pid i
    if pid="$(our_pid)"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not exit on SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped moto server pid $pid"
    else
        log "no moto server of ours is running"
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
}

cmd_env() {
    running || die "the local DynamoDB is not running (run: scripts/local-dynamodb.sh start)"
    local url="http://$HOST:$(cat "$PORT_FILE")"
    echo "export AWS_ENDPOINT_URL=$url AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 HSM_AUDIT_TEST_ENDPOINT=$url"
}

case "${1:-}" in
    deps) shift; cmd_deps "$@" ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 deps [REQFILE...]|start|stop|status|env" >&2; exit 2 ;;
esac
