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

# The trail's digests are signed with a KMS key (ECC_NIST_P256, SIGN_VERIFY) of the local
# server, as the template's DigestSigningKeyArn does in AWS.
heading "KMS signing key for the digest chain"
DIGEST_SIGNING_KEY_ID="$(.venv/bin/python -c "import boto3; print(boto3.client('kms').create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId'])")"
export DIGEST_SIGNING_KEY_ID
echo "DIGEST_SIGNING_KEY_ID=$DIGEST_SIGNING_KEY_ID"

# Alerts where the security team looks (docs/alerts.md): every new alert as an EventBridge event on
# a bus whose rule sends hsm-audit events to an SQS queue, and as a Security Hub finding.
heading "EventBridge bus and Security Hub for the alerts"
export ALERT_EVENT_BUS=hsm-audit-demo-alerts SECURITY_HUB_FINDINGS=true
QUEUE_URL="$(.venv/bin/python scripts/demo_alert_sinks.py setup "$ALERT_EVENT_BUS")"
echo "ALERT_EVENT_BUS=$ALERT_EVENT_BUS (rule -> $QUEUE_URL), SECURITY_HUB_FINDINGS=true"

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
# The auditor's report of the demo cluster (docs/reports.md): one self-contained HTML file.
REPORT="$ROOT/.local/report.html"
mkdir -p "$(dirname "$REPORT")"
show report --cluster "$CLUSTER" --out "$REPORT"

# Tamper evidence: every record of the demo cluster checked against the digest chain its
# writes sealed, and each digest's signature with the key's public half (`verify` exits
# non-zero when anything was changed, deleted or added).
show verify --cluster "$CLUSTER" --kms-key-id "$DIGEST_SIGNING_KEY_ID"

heading "EventBridge events the ingest published"
.venv/bin/python scripts/demo_alert_sinks.py events "$QUEUE_URL"
heading "Security Hub findings the ingest imported"
.venv/bin/python scripts/demo_alert_sinks.py findings "$TABLE_NAME"

# The trail and alerts as OCSF events (docs/ocsf.md), checked against OCSF 1.7.0.
OCSF="$ROOT/.local/ocsf"
rm -rf "$OCSF"
show export --cluster "$CLUSTER" --out "$OCSF"
heading "tests/ocsf/validate.py $OCSF (events per class)"
.venv/bin/python tests/ocsf/validate.py "$OCSF" || failed+=("OCSF validation")

if (( ${#failed[@]} )); then
    printf '\ndemo: %d view(s) failed: %s\n' "${#failed[@]}" "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
printf '\ndemo: done; the report of %s: %s\n' "$CLUSTER" "$REPORT"
