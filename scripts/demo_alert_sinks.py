#!/usr/bin/env python3
"""The alert sinks of `make demo` on the local server (scripts/demo.sh).

    demo_alert_sinks.py setup BUS      create the EventBridge bus BUS, an SQS queue and a
                                       rule sending every hsm-audit event to it; prints
                                       the queue's URL
    demo_alert_sinks.py events URL     prints the events the queue received
    demo_alert_sinks.py findings TABLE prints the Security Hub findings of TABLE's alerts

Uses boto3 (installed with moto) and the standard AWS environment that
scripts/with-local-dynamodb.sh exports (AWS_ENDPOINT_URL on 127.0.0.1).
"""

from __future__ import annotations

import json
import sys

import boto3


def setup(bus: str) -> None:
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    try:
        events.create_event_bus(Name=bus)
    except events.exceptions.ResourceAlreadyExistsException:
        pass
    url = sqs.create_queue(QueueName=bus)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="hsm-audit-alerts", EventBusName=bus, EventPattern=json.dumps({"source": ["hsm-audit"]}))
    events.put_targets(Rule="hsm-audit-alerts", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    print(url)


def received(url: str) -> None:
    sqs = boto3.client("sqs")
    events = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        if not messages:
            break
        events.extend(json.loads(message["Body"]) for message in messages)
    events.sort(key=lambda event: (event["detail"]["cluster"], event["detail"]["time"]))
    for event in events:
        detail = event["detail"]
        print(f'{event["detail-type"]:<22} {detail["severity"]:<6} {detail["cluster"]} {detail["time"]} {detail.get("hsm")} user={detail.get("user")} log_event_ids={detail["log_event_ids"]}')
    if events:
        print("\nthe first in full:")
        print(json.dumps(events[0], indent=2))
    print(f"\n{len(events)} events")


def findings(table: str) -> None:
    hub = boto3.client("securityhub")
    found = []
    token = None
    while True:
        page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        found += [f for f in page["Findings"] if f"\"{table}\"" in f.get("ProductFields", {}).get("hsm-audit/console_query", "")]
        token = page.get("NextToken")
        if not token:
            break
    found.sort(key=lambda finding: finding["FirstObservedAt"])
    for finding in found:
        print(f'{finding["Severity"]["Label"]:<6} {finding["Title"]:<70} {finding["Types"][0]} {finding.get("Compliance", {}).get("RelatedRequirements", [])}')
    if found:
        print("\nthe first in full:")
        print(json.dumps(found[0], indent=2))
    print(f"\n{len(found)} findings")


def main(argv: list[str]) -> int:
    commands = {"setup": setup, "events": received, "findings": findings}
    if len(argv) != 2 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[0]](argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
