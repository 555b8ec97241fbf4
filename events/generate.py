#!/usr/bin/env python3
"""Write the sample Lambda inputs in events/ from the vendor example records.

    python3 events/generate.py           # (re)write events/*.json
    python3 events/generate.py --check   # exit 1 if a file is missing or stale

Each output is what a CloudWatch Logs subscription hands a Lambda function:
{"awslogs": {"data": base64(gzip(json))}}, the JSON being a DATA_MESSAGE (or a
CONTROL_MESSAGE) whose log events carry the audit records of
tests/fixtures/seed-000/, one record per log event. Standard library only.
Output is deterministic: gzip with mtime 0, log event ids derived from the
stream, the timestamp and the position, so regenerating gives identical files.
See events/README.md for what each file is.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import time
import sys
from pathlib import Path

EVENTS_DIR = Path(__file__).resolve().parent
ROOT = EVENTS_DIR.parent
FIXTURES = ROOT / "tests" / "fixtures" / "seed-000"

OWNER = "123456789012"
LOG_GROUP = "/aws/cloudhsm/cluster-demo"
SUBSCRIPTION_FILTERS = ["hsm-audit"]

# (file name, log stream, fixture numbers). Examples from different pages of the
# vendor documentation reuse sequence numbers, so examples that would collide
# are put on different streams (= different HSMs).
DATA_FILES: list[tuple[str, str, list[int]]] = [
    ("01-first-hsm-init.json", "hsm-aaaaaa00001", [0, 1, 2, 3, 4, 5]),
    ("02-login-logout.json", "hsm-bbbbbb00002", [6, 7]),
    ("03-failed-logins.json", "hsm-abcde123456", [8, 9]),
    ("04-create-delete-users.json", "hsm-cccccc00003", [10, 11, 12, 13]),
    ("05-key-pair.json", "hsm-dddddd00004", [14, 15, 16, 17, 18]),
    ("06a-generate-sync-abcde.json", "hsm-abcde123456", [19, 20, 21]),
    ("06b-generate-sync-zyxwv.json", "hsm-zyxwv987654", [22, 23]),
    ("07-export-key.json", "hsm-zyxwv987654", [24, 25, 26]),
    ("08a-import-key-zyxwv.json", "hsm-zyxwv987654", [27, 28, 29]),
    ("08b-import-key-abcde.json", "hsm-abcde123456", [30]),
    ("09-share-key.json", "hsm-eeeeee00005", [31]),
]

CONTROL_FILE = "10-control-message.json"
CONTROL_TEXT = "CWL CONTROL MESSAGE: Checking health of destination Lambda function."
CONTROL_TIMESTAMP_MS = 1516067400000

NOT_AUDIT_FILE = "11-not-an-audit-record.json"
NOT_AUDIT_STREAM = "hsm-eeeeee00005"
NOT_AUDIT_TEXT = "hsm agent restarted"
NOT_AUDIT_TIMESTAMP_MS = 1549654600000

# Thales Luna Cloud HSM (DPoD) records forwarded one per log event into a log group of
# their own: the fields of seed 004 ("Service Audit Logs"), `meta` a JSON string as the
# vendor shows it, and the common `time` field as DPoD writes it.
LUNA_FILE = "12-luna-service.json"
LUNA_LOG_GROUP = "luna-service-demo"
LUNA_STREAM = "dpod-audit"
LUNA_SERVICE = "f59a597b-19b9-41df-b479-1530ed60fca3"
LUNA_PARTITION = "1334049524932"
LUNA_APP = "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a"
LUNA_INTRUDER = "0badc0de-0000-4000-8000-000000000001"
LUNA_OBJECT = "0a0100000f000000"
LUNA_T0 = 1667141567  # 2022-10-30 14:52:47 UTC
LUNA_ACTIVITY = [
    # (seconds after T0, actor, role, action, status, ouids)
    (0, LUNA_APP, "CU", "LUNA_LOGIN", "LUNA_RET_OK", None),
    (2, LUNA_APP, "CU", "LUNA_GENERATE_KEY", "LUNA_RET_OK", LUNA_OBJECT),
    (3, LUNA_APP, "CU", "LUNA_SIGN", "LUNA_RET_OK", LUNA_OBJECT),
    (5, LUNA_APP, "CU", "LUNA_WRAP_KEY", "LUNA_RET_OK", LUNA_OBJECT),
    (9, LUNA_APP, "CU", "LUNA_DESTROY_OBJECT", "LUNA_RET_OK", LUNA_OBJECT),
] + [
    (60 + 20 * n, LUNA_INTRUDER, "CU", "LUNA_LOGIN", "LUNA_RET_PIN_INCORRECT", None) for n in range(5)
] + [
    (300, "9e1f1a5e-0000-4000-8000-0000000000aa", "PO", "LUNA_PARTITION_ZEROIZE", "LUNA_RET_OK", None),
]

# Records in the later CloudHSM field layout (tests/fixtures/later-layout/, see its
# README) in a cluster of their own: a CO creates a CU, changes its password and creates
# a CO; a quorum token is requested, approved and deleted; the CU generates a key, shares
# and unshares it, derives, tombstones and destroys keys; a time-information record and a
# record with unknown fields. The unshare record is flattened onto one line, as records
# also arrive. 18 (deleting the CU while it is logged in) is left out.
LATER_FILE = "13-later-layout.json"
LATER_LOG_GROUP = "/aws/cloudhsm/cluster-later"
LATER_STREAM = "hsm-later000001"
LATER_FIXTURES = ROOT / "tests" / "fixtures" / "later-layout"
LATER_NUMBERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19]
LATER_FLATTENED = {13}

USECS_RE = re.compile(r"usecs:\s*(\d+)")


def fixture(number: int, directory: Path = FIXTURES) -> Path:
    matches = sorted(directory.glob(f"{number:02d}-*.txt"))
    if len(matches) != 1:
        raise SystemExit(f"generate.py: expected one fixture {number:02d}-*.txt in {directory}, found {len(matches)}")
    return matches[0]


def read_record(path: Path) -> tuple[int, str]:
    """The record's text (without the file's final newline) and its time in ms."""
    text = path.read_text(encoding="utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    match = USECS_RE.search(text)
    if not match:
        raise SystemExit(f"generate.py: no 'usecs:' value in {path}")
    return int(match.group(1)) // 1000, text


def event_id(stream: str, timestamp_ms: int, index: int) -> str:
    """A 56-digit decimal id, like CloudWatch Logs' ones: the timestamp, the
    position in the batch, and 40 digits hashed from stream/timestamp/index."""
    digest = hashlib.sha256(f"{stream}/{timestamp_ms}/{index}".encode()).digest()
    tail = int.from_bytes(digest, "big") % 10**40
    value = f"{timestamp_ms:013d}{index:03d}{tail:040d}"
    assert len(value) == 56, value
    return value


def data_message(stream: str, messages: list[tuple[int, str]], log_group: str = LOG_GROUP) -> dict:
    return {
        "messageType": "DATA_MESSAGE",
        "owner": OWNER,
        "logGroup": log_group,
        "logStream": stream,
        "subscriptionFilters": SUBSCRIPTION_FILTERS,
        "logEvents": [
            {"id": event_id(stream, ts, i), "timestamp": ts, "message": text}
            for i, (ts, text) in enumerate(messages)
        ],
    }


def control_message() -> dict:
    # What CloudWatch Logs sends when it checks a new subscription's destination.
    return {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{"id": "", "timestamp": CONTROL_TIMESTAMP_MS, "message": CONTROL_TEXT}],
    }


def luna_messages() -> list[tuple[int, str]]:
    messages = []
    for offset, actor, role, action, status, ouids in LUNA_ACTIVITY:
        seconds = LUNA_T0 + offset
        meta = {"clientip": "203.0.113.10", "hsmid": "1592789", "ouids": ouids, "partid": LUNA_PARTITION, "role": role}
        record = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)),
            "source": f"thales/cloudhsm/{LUNA_PARTITION}",
            "resourceid": LUNA_SERVICE,
            "actorid": actor,
            "action": action,
            "status": status,
            "meta": json.dumps(meta, separators=(",", ":")),
        }
        messages.append((seconds * 1000, json.dumps(record, separators=(",", ":"))))
    return messages


def later_messages() -> list[tuple[int, str]]:
    messages = []
    for number in LATER_NUMBERS:
        timestamp, text = read_record(fixture(number, LATER_FIXTURES))
        if number in LATER_FLATTENED:
            text = " ".join(text.split("\n"))
        messages.append((timestamp, text))
    return messages


def payloads() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, stream, numbers in DATA_FILES:
        out[name] = data_message(stream, [read_record(fixture(n)) for n in numbers])
    out[CONTROL_FILE] = control_message()
    out[NOT_AUDIT_FILE] = data_message(NOT_AUDIT_STREAM, [(NOT_AUDIT_TIMESTAMP_MS, NOT_AUDIT_TEXT)])
    out[LUNA_FILE] = data_message(LUNA_STREAM, luna_messages(), LUNA_LOG_GROUP)
    out[LATER_FILE] = data_message(LATER_STREAM, later_messages(), LATER_LOG_GROUP)
    return out


def encode(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    data = base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")
    return json.dumps({"awslogs": {"data": data}}, indent=2) + "\n"


def decode(text: str) -> dict:
    data = json.loads(text)["awslogs"]["data"]
    return json.loads(gzip.decompress(base64.b64decode(data)))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, payload in payloads().items():
        path = EVENTS_DIR / name
        if check:
            # Compare decoded payloads, not bytes, so another zlib build does not
            # count as stale.
            try:
                same = decode(path.read_text(encoding="utf-8")) == payload
            except (OSError, ValueError, KeyError):
                same = False
            if not same:
                stale.append(name)
            continue
        path.write_text(encode(payload), encoding="utf-8")
        print(f"wrote events/{name} ({len(payload['logEvents'])} log events, stream {payload['logStream']!r})")
    if stale:
        print(f"generate.py: stale or missing: {', '.join(stale)}; run: python3 events/generate.py", file=sys.stderr)
        return 1
    if check:
        print(f"generate.py: events/ is up to date ({len(payloads())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
