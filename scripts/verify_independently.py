#!/usr/bin/env python3
"""Checks a cluster's trail against its digest chain from docs/tamper-evidence.md alone:
Python's standard library, boto3 to read the table, `cryptography` for the signatures.
None of hsm-audit's code is used, so agreeing with `hsm-audit verify` shows that the
page states the canonical form, the chaining rule and the signature fully.

    verify_independently.py --table T --cluster C [--public-key key.pem|key.der]

Prints one JSON object (digests, records, findings) and exits 0 only when there are no
findings. AWS_ENDPOINT_URL and the usual AWS_* variables select the endpoint.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys

import boto3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

GENESIS = "0" * 64


def canonical(item: dict) -> bytes:
    """The item in DynamoDB JSON, sorted, compact, sets sorted, as docs/tamper-evidence.md says."""

    def value(v: dict) -> dict:
        (tag, inner), = v.items()
        if tag in ("B",):
            return {tag: base64.b64encode(inner).decode()}
        if tag in ("SS", "NS"):
            return {tag: sorted(inner)}
        if tag == "BS":
            return {tag: sorted(base64.b64encode(b).decode() for b in inner)}
        if tag == "L":
            return {tag: [value(x) for x in inner]}
        if tag == "M":
            return {tag: {k: value(x) for k, x in inner.items()}}
        return {tag: inner}

    doc = {name: value(v) for name, v in item.items()}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def trail_items(table: str, cluster: str) -> list[dict]:
    client = boto3.client("dynamodb")
    items, start = [], None
    while True:
        args = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"TRAIL#{cluster}"}},
            "ConsistentRead": True,
        }
        if start:
            args["ExclusiveStartKey"] = start
        page = client.query(**args)
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--public-key", help="PEM or DER public key of the signing key")
    args = parser.parse_args(argv)
    key = None
    if args.public_key:
        raw = open(args.public_key, "rb").read()
        key = (
            serialization.load_pem_public_key(raw)
            if raw.startswith(b"-----BEGIN")
            else serialization.load_der_public_key(raw)
        )
    findings: list[str] = []
    items = trail_items(args.table, args.cluster)
    digests = [i for i in items if i["sk"]["S"].startswith("DIGEST#")]
    records = [i for i in items if i["sk"]["S"].startswith(("HSM#", "LOG_EVENT#"))]
    listed: dict[str, tuple[int, str]] = {}
    previous_seq, previous_hash = 0, GENESIS
    for item in digests:
        body_text = item["body"]["S"]
        digest_hash = hashlib.sha256(body_text.encode()).hexdigest()
        body = json.loads(body_text)
        seq = body["seq"]
        if seq != previous_seq + 1:
            findings.append(f"missing digests {previous_seq + 1}..{seq - 1}")
        elif body["previous"] != previous_hash:
            findings.append(f"broken link at digest {seq}")
        if key is not None:
            signature = item.get("signature", {}).get("S")
            try:
                if signature is None:
                    raise InvalidSignature()
                key.verify(base64.b64decode(signature), digest_hash.encode(), ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                findings.append(f"bad or missing signature on digest {seq}")
        for record in body["records"]:
            listed[record["sk"]] = (seq, record["sha256"])
        previous_seq, previous_hash = seq, digest_hash
    for item in records:
        sk = item["sk"]["S"]
        entry = listed.pop(sk, None)
        if entry is None:
            findings.append(f"added: {sk}")
        elif hashlib.sha256(canonical(item)).hexdigest() != entry[1]:
            findings.append(f"modified: {sk}")
    findings.extend(f"deleted: {sk}" for sk in sorted(listed))
    print(json.dumps({"digests": len(digests), "records": len(records), "findings": findings}))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
