#!/usr/bin/env python3
"""Validates the OCSF events `hsm-audit export` wrote against OCSF 1.7.0.

    .venv/bin/python tests/ocsf/validate.py DIR

Each line of each DIR/<class>/*.ndjson is validated with the pydantic models of the
PyPI package pydantic-ocsf (pinned in scripts/requirements.txt), which it builds from
the OCSF schema export it ships (`ocsf/schemas/v1_7_0.json`): required attributes,
types, enumerations. The models accept attributes the schema does not define; this
script does not: an unknown attribute anywhere in an event (but in `unmapped`, the
schema's place for them) is a problem. It also checks
what the models leave open: `type_uid` = `class_uid` * 100 + `activity_id`,
`category_uid` the class's category, and that each event is in its class's folder.
Prints the events per class as JSON; exits 1 with one line per problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ocsf.v1_7_0 import events

CLASSES = {
    3001: ("account_change", events.AccountChange),
    3002: ("authentication", events.Authentication),
    3004: ("entity_management", events.EntityManagement),
    6003: ("api_activity", events.ApiActivity),
    2004: ("detection_finding", events.DetectionFinding),
}


def unknown_attributes(value: object, path: str) -> list[str]:
    """Attributes the schema does not define, anywhere under a validated model but in
    `unmapped`, which OCSF keeps for what a source has beyond the schema."""
    found = []
    if path.endswith(".unmapped"):
        return found
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            found.append(f"{path}.{name}")
        for name in type(value).model_fields:
            found.extend(unknown_attributes(getattr(value, name), f"{path}.{name}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(unknown_attributes(item, f"{path}[{index}]"))
    return found


def check_event(event: dict, folder: str) -> list[str]:
    class_uid = event.get("class_uid")
    if class_uid not in CLASSES:
        return [f"class_uid {class_uid!r} is not one this export writes"]
    name, model = CLASSES[class_uid]
    problems = []
    if folder != name:
        problems.append(f"class {name} in folder {folder}")
    if "activity_id" not in event:
        problems.append("no activity_id")
    elif event.get("type_uid") != class_uid * 100 + event["activity_id"]:
        problems.append(f"type_uid {event.get('type_uid')} is not class_uid * 100 + activity_id")
    if event.get("category_uid") != class_uid // 1000:
        problems.append(f"category_uid {event.get('category_uid')} is not {class_uid // 1000}")
    try:
        validated = model.model_validate(event)
    except ValidationError as error:
        return problems + [f"{name}: {line}" for line in str(error).splitlines()]
    problems += [f"unknown attribute {path}" for path in unknown_attributes(validated, name)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    counts: dict[str, int] = {}
    problems = []
    files = sorted(root.glob("*/*.ndjson"))
    if not files:
        problems.append(f"{root}: no */*.ndjson")
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            event = json.loads(line)
            found = check_event(event, path.parent.name)
            problems += [f"{path}:{number}: {problem}" for problem in found]
            counts[path.parent.name] = counts.get(path.parent.name, 0) + 1
    if problems:
        for problem in problems[:50]:
            print(f"validate: {problem}", file=sys.stderr)
        print(f"validate: {len(problems)} problems", file=sys.stderr)
        return 1
    print(json.dumps(counts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
