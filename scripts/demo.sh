#!/usr/bin/env bash
# `make demo`: build the CLI, ingest events/ into a local DynamoDB table and
# print what the CLI shows. Run it through scripts/with-local-dynamodb.sh so
# AWS_ENDPOINT_URL points at the local moto server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ -n "${AWS_ENDPOINT_URL:-}" ]] || { echo "demo.sh: AWS_ENDPOINT_URL is not set; run: make demo" >&2; exit 1; }

export TABLE_NAME="${DEMO_TABLE:-hsm-audit-demo}"
# The dev profile: the release profile's LTO (for a small Lambda binary) would make a
# first demo wait minutes for the same output.
CLI=target/debug/hsm-audit
CLUSTER=cluster-demo

heading() { printf '\n==== %s\n' "$*"; }

heading "cargo build --bin hsm-audit"
cargo build --bin hsm-audit

heading "hsm-audit setup (table $TABLE_NAME at $AWS_ENDPOINT_URL)"
"$CLI" setup

heading "hsm-audit ingest events/"
"$CLI" ingest events/

failed=()
show() {
    heading "hsm-audit $*"
    if ! "$CLI" "$@"; then
        echo "(hsm-audit $* failed)" >&2
        failed+=("$*")
    fi
}
show sessions --cluster "$CLUSTER"
show keys --cluster "$CLUSTER"
show failed-logins --cluster "$CLUSTER"
show alerts --cluster "$CLUSTER"
show quarantine
LUNA=luna-service-demo
show sessions --cluster "$LUNA"
show keys --cluster "$LUNA"
show failed-logins --cluster "$LUNA"
show alerts --cluster "$LUNA"
# Records in the later layout (events/13-later-layout.json): the trail's USER column shows
# actor -> target, sessions name the users acted upon, the key shows its shares, and the
# quorum view the token's request, approval and deletion.
LATER=cluster-later
show trail --cluster "$LATER"
show sessions --cluster "$LATER"
show keys --cluster "$LATER"
show quorum --cluster "$LATER"
show alerts --cluster "$LATER"
# Tamper evidence: every record of the demo cluster checked against the digest chain its
# writes sealed (`verify` exits non-zero when anything was changed, deleted or added).
show verify --cluster "$CLUSTER"

if (( ${#failed[@]} )); then
    printf '\ndemo: %d view(s) failed: %s\n' "${#failed[@]}" "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
printf '\ndemo: done\n'
