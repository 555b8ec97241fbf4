#!/usr/bin/env bash
# scripts/with-local-dynamodb.sh CMD [ARGS...]
#
# Starts the local DynamoDB (moto server on 127.0.0.1), runs CMD with
# AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
# HSM_AUDIT_TEST_ENDPOINT pointing at it, then stops the server again (also when
# CMD fails or the run is interrupted) and exits with CMD's exit status.
# A server that was already running before is reused and left running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LDB="$ROOT/scripts/local-dynamodb.sh"

[[ $# -ge 1 ]] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

started_here=1
if "$LDB" status >/dev/null 2>&1; then
    started_here=0
fi

cleanup() {
    if [[ $started_here -eq 1 ]]; then
        "$LDB" stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$LDB" start
eval "$("$LDB" env)"

status=0
"$@" || status=$?
exit "$status"
