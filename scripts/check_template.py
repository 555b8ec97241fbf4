#!/usr/bin/env python3
"""Policy checks on template.yaml that cfn-lint does not make.

    python scripts/check_template.py [TEMPLATE] [--schema schema/table.json]

Fails (exit 1, one line per problem) when
  (a) an IAM policy statement anywhere in the template has an Action/NotAction
      that is "*" or contains "*" (e.g. "dynamodb:*"), or a Resource/NotResource
      that contains "*" (also inside Fn::Sub and Fn::Join). The one exception:
      a statement that allows exactly X-Ray's xray:PutTraceSegments and/or
      xray:PutTelemetryRecords may name Resource "*", because X-Ray offers no
      resource-level permissions for them (AWS grants them only on "*"; see
      "Actions, resources, and condition keys for AWS X-Ray"). Nothing else may
      share that statement;
  (b) a DynamoDB table's KeySchema, AttributeDefinitions or BillingMode differ
      from schema/table.json;
  (c) a DynamoDB table lacks point-in-time recovery or server-side encryption
      (or is not retained on stack deletion/replacement);
  (d) an SQS queue is not encrypted at rest: neither KmsMasterKeyId nor
      SqsManagedSseEnabled: true. Properties chosen with Fn::If are checked
      under every combination of the conditions they use, so that each
      deployment variant is encrypted, not just one of them.
The template must be plain YAML (long-form intrinsics only: `Ref:`, `Fn::Sub:`,
never `!Ref`), which is also checked. Needs PyYAML (a cfn-lint dependency, so
run it with .venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem
    sys.exit("check_template: PyYAML is missing; run with .venv/bin/python (make deps)")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = ROOT / "template.yaml"
DEFAULT_SCHEMA = ROOT / "schema" / "table.json"

NO_VALUE = {"Ref": "AWS::NoValue"}


def load_template(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise ValueError(
            f"{path}: not plain YAML ({exc.problem}); use long-form intrinsics "
            "(`Ref:`, `Fn::GetAtt:`, `Fn::Sub:` ...) instead of `!Ref`-style tags"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise ValueError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return doc


def alternatives(value: Any) -> Iterator[Any]:
    """Yield the concrete alternatives of a value, looking through Fn::If."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        branches = value["Fn::If"]
        if isinstance(branches, list) and len(branches) == 3:
            for branch in branches[1:]:
                yield from alternatives(branch)
            return
    if value == NO_VALUE:
        return
    yield value


def as_list(value: Any) -> list[Any]:
    out: list[Any] = []
    for alt in alternatives(value):
        if isinstance(alt, list):
            for item in alt:
                out.extend(alternatives(item))
        else:
            out.append(alt)
    return out


def statements_in(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement anywhere under node, with a readable path."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if key == "Statement":
                for i, stmt in enumerate(as_list(value)):
                    if isinstance(stmt, dict):
                        yield f"{sub}[{i}]", stmt
            yield from statements_in(value, sub)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from statements_in(item, f"{path}[{i}]")


# X-Ray's trace-upload actions have no resource-level permissions: "*" is the only
# Resource AWS accepts for them, so a statement of exactly these may use it.
XRAY_STAR_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


def strings_in(value: Any) -> Iterator[str]:
    """The literal text of a value: a string, or the template text inside Fn::Sub and
    the pieces of Fn::Join (a "*" hidden there is still a wildcard)."""
    for alt in as_list(value):
        if isinstance(alt, str):
            yield alt
        elif isinstance(alt, dict) and len(alt) == 1:
            (fn, arg), = alt.items()
            if fn == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) and arg else arg
                if isinstance(text, str):
                    yield text
            elif fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                yield from strings_in(arg[1])


def xray_only(stmt: dict[str, Any]) -> bool:
    actions = [a for a in as_list(stmt.get("Action")) if isinstance(a, str)]
    return (
        stmt.get("Effect") == "Allow"
        and "NotAction" not in stmt
        and bool(actions)
        and len(actions) == len(as_list(stmt.get("Action")))
        and set(actions) <= XRAY_STAR_ACTIONS
    )


def check_policies(template: dict[str, Any]) -> list[str]:
    problems = []
    for where, stmt in statements_in(template.get("Resources", {}), "Resources"):
        sid = f" (Sid {stmt['Sid']})" if "Sid" in stmt else ""
        for key in ("Action", "NotAction"):
            for action in strings_in(stmt.get(key)):
                if "*" in action:
                    problems.append(f"{where}{sid}: wildcard {key} {action!r}")
        for key in ("Resource", "NotResource"):
            for resource in strings_in(stmt.get(key)):
                if "*" not in resource:
                    continue
                if key == "Resource" and resource.strip() == "*" and xray_only(stmt):
                    continue
                problems.append(f"{where}{sid}: wildcard {key} {resource!r}")
    return problems


def conditions_in(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        branches = value.get("Fn::If")
        if len(value) == 1 and isinstance(branches, list) and branches and isinstance(branches[0], str):
            found.add(branches[0])
        for inner in value.values():
            found |= conditions_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= conditions_in(inner)
    return found


def resolve(value: Any, chosen: dict[str, bool]) -> Any:
    """The value as deployed when each condition has the truth value in `chosen`:
    Fn::If picked, AWS::NoValue dropped (None at the top)."""
    if isinstance(value, dict):
        branches = value.get("Fn::If")
        if len(value) == 1 and isinstance(branches, list) and len(branches) == 3:
            return resolve(branches[1] if chosen.get(branches[0], True) else branches[2], chosen)
        if value == NO_VALUE:
            return None
        return {k: r for k, v in value.items() if (r := resolve(v, chosen)) is not None}
    if isinstance(value, list):
        return [r for v in value if (r := resolve(v, chosen)) is not None]
    return value


def variants(value: Any) -> Iterator[tuple[str, Any]]:
    """Every way `value` can be deployed, with a label naming the conditions."""
    names = sorted(conditions_in(value))
    for bits in range(2 ** len(names)):
        chosen = {name: bool(bits >> i & 1) for i, name in enumerate(names)}
        label = ", ".join(f"{name}={chosen[name]}" for name in names)
        yield (f" (when {label})" if label else ""), resolve(value, chosen)


def check_queues(template: dict[str, Any]) -> list[str]:
    problems = []
    for name, res in template["Resources"].items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::SQS::Queue":
            continue
        for label, props in variants(res.get("Properties") or {}):
            props = props or {}
            if props.get("KmsMasterKeyId") or truthy(props.get("SqsManagedSseEnabled")):
                continue
            problems.append(
                f"Resources.{name}{label}: the queue is not encrypted at rest "
                "(KmsMasterKeyId, or SqsManagedSseEnabled: true)"
            )
    return problems


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def canonical(items: Any) -> Any:
    return json.dumps(items, sort_keys=True)


def check_tables(template: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    problems = []
    tables = {
        name: res
        for name, res in template["Resources"].items()
        if isinstance(res, dict) and res.get("Type") == "AWS::DynamoDB::Table"
    }
    if not tables:
        return ["Resources: no AWS::DynamoDB::Table found"]
    for name, res in tables.items():
        props = res.get("Properties") or {}
        where = f"Resources.{name}"
        if props.get("KeySchema") != schema["KeySchema"]:
            problems.append(
                f"{where}.KeySchema {props.get('KeySchema')!r} differs from schema/table.json "
                f"{schema['KeySchema']!r}"
            )
        got_attrs = sorted(props.get("AttributeDefinitions") or [], key=canonical)
        want_attrs = sorted(schema["AttributeDefinitions"], key=canonical)
        if got_attrs != want_attrs:
            problems.append(
                f"{where}.AttributeDefinitions {props.get('AttributeDefinitions')!r} differ from "
                f"schema/table.json {schema['AttributeDefinitions']!r}"
            )
        if props.get("BillingMode") != schema["BillingMode"]:
            problems.append(
                f"{where}.BillingMode {props.get('BillingMode')!r} differs from schema/table.json "
                f"{schema['BillingMode']!r}"
            )
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if not truthy(pitr.get("PointInTimeRecoveryEnabled")):
            problems.append(
                f"{where}: point-in-time recovery is not enabled "
                "(PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled: true)"
            )
        sse = props.get("SSESpecification") or {}
        if not truthy(sse.get("SSEEnabled")):
            problems.append(f"{where}: server-side encryption is not enabled (SSESpecification.SSEEnabled: true)")
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if res.get(policy) != "Retain":
                problems.append(f"{where}: {policy} must be Retain (the table is the compliance trail)")
    return problems


def check(template: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return check_policies(template) + check_tables(template, schema) + check_queues(template)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"check_template: FAIL: {exc}", file=sys.stderr)
        return 1
    problems = check(template, schema)
    if problems:
        for problem in problems:
            print(f"check_template: FAIL: {args.template}: {problem}", file=sys.stderr)
        return 1
    print(f"check_template: OK: {args.template} (no wildcard IAM beyond X-Ray's, table matches {args.schema.name}, PITR and SSE on, queues encrypted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
