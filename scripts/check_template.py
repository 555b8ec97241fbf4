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
  (b) a DynamoDB table's KeySchema, AttributeDefinitions, GlobalSecondaryIndexes or
      BillingMode differ from schema/table.json;
  (c) a DynamoDB table lacks point-in-time recovery or server-side encryption
      (or is not retained on stack deletion/replacement);
  (d) an SQS queue is not encrypted at rest: neither KmsMasterKeyId nor
      SqsManagedSseEnabled: true. Properties chosen with Fn::If are checked
      under every combination of the conditions they use, so that each
      deployment variant is encrypted, not just one of them; or no queue policy
      denies every request to it without TLS (aws:SecureTransport false);
  (e) the ingest function's role grants other DynamoDB actions than the ones the
      function's code calls: the list is derived from the SDK calls in src/ (the
      files the CLI alone uses excepted, see CLI_ONLY), so it follows the code; or
      README.md lists other actions for the role than it grants;
  (f) an alarm of the failure paths or of the security signals is missing
      (REQUIRED_ALARMS), an alarm does not state TreatMissingData, or states another
      than MISSING_DATA requires (the heartbeat breaches on silence; the failure
      queue's alarms stay OK on an idle queue, which SQS stops reporting), the
      heartbeat does not fire below one record in a HeartbeatSeconds period, the
      alarm on gaps found needs more than one datapoint (a gap followed by a quiet
      cluster would never fire it), an HsmAudit alarm watches a metric that
      src/metrics.rs does not publish or is not scoped to the stack (dimension
      Service = AWS::StackName), an AWS alarm's dimension does not name one of the
      stack's own resources, or the Duration alarm's threshold is not below the
      function's timeout; there is no dashboard;
  (g) something could stop the stack from being deployed twice: a retained resource
      with a fixed name, a function with a fixed name, the Kinesis stream without
      explicit DeletionPolicy/UpdateReplacePolicy or a retention parameter, a
      subscription filter into Kinesis without Distribution: ByLogStream, the
      function's log group not on the KMS key when one is given, a taggable resource
      without the Application tag, or a missing output (OUTPUTS);
  (h) an optional alert sink (OPTIONAL_SINKS: EventBridge, Security Hub) is granted
      otherwise than exactly when it is enabled: its action must be in a statement of
      its own under an Fn::If whose condition also sets the function's environment
      variable that turns the sink on in the code, on a named resource; the grant
      must exist exactly when the function's code makes the call.
The template must be plain YAML (long-form intrinsics only: `Ref:`, `Fn::Sub:`,
never `!Ref`), which is also checked. Needs PyYAML (a cfn-lint dependency, so
run it with .venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import re
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
DEFAULT_SRC = ROOT / "src"

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


def check_queue_tls(template: dict[str, Any]) -> list[str]:
    resources = template["Resources"]
    tls_only = set()
    for res in resources.values():
        if not isinstance(res, dict) or res.get("Type") != "AWS::SQS::QueuePolicy":
            continue
        props = res.get("Properties") or {}
        statements = as_list((props.get("PolicyDocument") or {}).get("Statement"))
        if any(
            isinstance(stmt, dict)
            and stmt.get("Effect") == "Deny"
            and stmt.get("Principal") == "*"
            and str(((stmt.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")).lower() == "false"
            for stmt in statements
        ):
            tls_only |= {q["Ref"] for q in as_list(props.get("Queues")) if isinstance(q, dict) and "Ref" in q}
    return [
        f"Resources.{name}: no queue policy denies requests without TLS (Deny, Principal \"*\", Bool aws:SecureTransport false)"
        for name, res in resources.items()
        if isinstance(res, dict) and res.get("Type") == "AWS::SQS::Queue" and name not in tls_only
    ]


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
        got_indexes = sorted(props.get("GlobalSecondaryIndexes") or [], key=canonical)
        want_indexes = sorted(schema.get("GlobalSecondaryIndexes") or [], key=canonical)
        if got_indexes != want_indexes:
            problems.append(
                f"{where}.GlobalSecondaryIndexes {props.get('GlobalSecondaryIndexes')!r} differ "
                f"from schema/table.json {schema.get('GlobalSecondaryIndexes')!r}"
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


# --- (e) the role's DynamoDB actions follow the code -----------------------------

# Files under src/ that only the `hsm-audit` CLI reaches: their DynamoDB calls are not the
# function's. (`setup` creates the table; `backfill` reads and writes its checkpoint.)
CLI_ONLY = ("cli/", "bin/hsm-audit.rs", "store/dynamodb/table.rs")

# The operations of the DynamoDB API, as the Rust SDK's fluent client names them. A
# call of one of these on anything in the function's files is taken as a DynamoDB call.
DYNAMODB_OPERATIONS = frozenset("""
    batch_execute_statement batch_get_item batch_write_item create_backup
    create_global_table create_table delete_backup delete_item delete_resource_policy
    delete_table describe_backup describe_continuous_backups describe_contributor_insights
    describe_endpoints describe_export describe_global_table describe_global_table_settings
    describe_import describe_kinesis_streaming_destination describe_limits describe_table
    describe_table_replica_auto_scaling describe_time_to_live
    disable_kinesis_streaming_destination enable_kinesis_streaming_destination
    execute_statement execute_transaction export_table_to_point_in_time get_item
    get_resource_policy import_table list_backups list_contributor_insights list_exports
    list_global_tables list_imports list_tables list_tags_of_resource put_item
    put_resource_policy query restore_table_from_backup restore_table_to_point_in_time scan
    tag_resource transact_get_items transact_write_items untag_resource
    update_continuous_backups update_contributor_insights update_global_table
    update_global_table_settings update_item update_kinesis_streaming_destination
    update_table update_table_replica_auto_scaling update_time_to_live
""".split())

# IAM has no action for a transaction: each of its parts is authorized as the single-item
# action. The parts show in the code as the SDK's builders of them.
TRANSACTION_PARTS = {
    "transact_write_items": {
        "Put": "PutItem",
        "Update": "UpdateItem",
        "Delete": "DeleteItem",
        "ConditionCheck": "ConditionCheckItem",
    },
    "transact_get_items": {"Get": "GetItem"},
}

# PartiQL needs the PartiQL* actions, chosen by the statement's verb: not derivable here.
UNDERIVABLE = {"execute_statement", "batch_execute_statement", "execute_transaction"}

CALL = re.compile(r"\.\s*([a-z_]+)\s*\(\s*\)")
BUILDER = re.compile(r"\b(Put|Update|Delete|ConditionCheck|Get)::builder\s*\(")
LINE_COMMENT = re.compile(r"//[^\n]*")


def pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def function_sources(src: Path) -> Iterator[tuple[str, str]]:
    """(path relative to src/, text without line comments) of the files the function uses."""
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(CLI_ONLY):
            continue
        yield rel, LINE_COMMENT.sub("", path.read_text(encoding="utf-8"))


def dynamodb_actions_called(src: Path) -> tuple[dict[str, set[str]], list[str]]:
    """The IAM actions the function's code needs, each with the files that call it, and
    the calls that cannot be mapped to actions."""
    needed: dict[str, set[str]] = {}
    problems: list[str] = []
    for rel, text in function_sources(src):
        for operation in sorted({m for m in CALL.findall(text) if m in DYNAMODB_OPERATIONS}):
            if operation in UNDERIVABLE:
                problems.append(f"src/{rel}: calls {operation}() (PartiQL): its IAM actions cannot be derived; extend check_template.py")
            elif operation in TRANSACTION_PARTS:
                parts = TRANSACTION_PARTS[operation]
                found = {parts[b] for b in BUILDER.findall(text) if b in parts}
                if not found:
                    problems.append(f"src/{rel}: calls {operation}() but builds none of its parts ({', '.join(parts)}) in the same file")
                for action in found:
                    needed.setdefault(f"dynamodb:{action}", set()).add(f"src/{rel}")
            else:
                needed.setdefault(f"dynamodb:{pascal(operation)}", set()).add(f"src/{rel}")
    return needed, problems


def granted_dynamodb_actions(role: dict[str, Any]) -> set[str]:
    return {
        action
        for _, stmt in statements_in(role.get("Properties") or {}, "")
        if stmt.get("Effect") == "Allow"
        for action in strings_in(stmt.get("Action"))
        if action.startswith("dynamodb:")
    }


def check_role_actions(template: dict[str, Any], src: Path) -> list[str]:
    role = template["Resources"].get("IngestFunctionRole")
    if not isinstance(role, dict):
        return ["Resources.IngestFunctionRole: missing (the ingest function's role)"]
    granted = granted_dynamodb_actions(role)
    needed, problems = dynamodb_actions_called(src)
    if not needed and not problems:
        problems.append(f"{src}: no DynamoDB call found in the function's sources (wrong src directory?)")
    for action in sorted(granted - needed.keys()):
        problems.append(f"Resources.IngestFunctionRole grants {action}, which the function's code does not call")
    for action in sorted(needed.keys() - granted):
        where = ", ".join(sorted(needed[action]))
        problems.append(f"Resources.IngestFunctionRole lacks {action}, which {where} calls")
    return problems


DEFAULT_README = ROOT / "README.md"
README_ROLE = re.compile(r"exactly the DynamoDB actions the function's code calls on that table\s*\(([^;]*);")


def check_readme_role(template: dict[str, Any], readme: Path = DEFAULT_README) -> list[str]:
    """The README's list of the role's DynamoDB actions is the template's."""
    role = template["Resources"].get("IngestFunctionRole")
    if not isinstance(role, dict):
        return []
    found = README_ROLE.search(readme.read_text(encoding="utf-8"))
    if not found:
        return [f"{readme.name}: no list of the role's DynamoDB actions (\"exactly the DynamoDB actions the function's code calls on that table (`…`, …;\")"]
    listed = {f"dynamodb:{action}" for action in re.findall(r"`(\w+)`", found.group(1))}
    granted = granted_dynamodb_actions(role)
    return [
        f"{readme.name} lists {action}, which Resources.IngestFunctionRole does not grant" for action in sorted(listed - granted)
    ] + [
        f"{readme.name} does not list {action}, which Resources.IngestFunctionRole grants" for action in sorted(granted - listed)
    ]


# --- (f) alarms on every failure path -------------------------------------------

# (namespace, metric) of each alarm the stack must have; Kinesis-only ones may carry the
# UseKinesis condition.
REQUIRED_ALARMS = {
    ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Throttles"),
    ("AWS/Lambda", "Duration"),
    ("AWS/Lambda", "IteratorAge"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    ("AWS/DynamoDB", "ReadThrottleEvents"),
    ("AWS/DynamoDB", "WriteThrottleEvents"),
    ("HsmAudit", "BruteForceAlerts"),
    ("HsmAudit", "OpenSequenceGaps"),
    ("HsmAudit", "ConflictingDuplicates"),
    ("HsmAudit", "Quarantined"),
    ("HsmAudit", "SensitiveOperations"),
    ("HsmAudit", "QuorumLowered"),
    ("HsmAudit", "SequenceGapsOpened"),
    ("HsmAudit", "LateRecordsFolded"),
    ("HsmAudit", "ClockSkewedRecords"),
    ("HsmAudit", "RecordsOffLogTime"),
    ("HsmAudit", "RecordsProcessed"),
    ("HsmAudit", "LateRecordsBeyondHorizon"),
}

# What missing data must mean for the alarms on these metrics.
MISSING_DATA = {
    # The heartbeat: silence is what it watches for.
    ("HsmAudit", "RecordsProcessed"): "breaching",
    # SQS stops reporting a queue idle for six hours: idle is healthy.
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): "notBreaching",
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): "notBreaching",
    # Published only with input: a quiet period after a gap is no news about it.
    ("HsmAudit", "SequenceGapsOpened"): "notBreaching",
}

DEFAULT_METRICS = ROOT / "src" / "metrics.rs"
METRIC_CONSTANT = re.compile(r'pub const [A-Z_]+: &str = "([A-Za-z]+)";')


def published_metrics(metrics_rs: Path = DEFAULT_METRICS) -> set[str]:
    """The EMF metric names src/metrics.rs declares (and the dimension names, which
    are declared the same way and never alarm names)."""
    return set(METRIC_CONSTANT.findall(metrics_rs.read_text(encoding="utf-8")))

# The dimension each AWS namespace's alarms must scope to, and the stack resource it names.
SCOPING_DIMENSIONS = {
    "AWS/Lambda": ("FunctionName", "IngestFunction"),
    "AWS/SQS": ("QueueName", "FailureQueue"),
    "AWS/DynamoDB": ("TableName", "AuditTable"),
}


def alarm_metrics(props: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The metric(s) an alarm watches: its own, or those of its metric math."""
    if "MetricName" in props:
        yield props
    for query in props.get("Metrics") or []:
        metric = ((query or {}).get("MetricStat") or {}).get("Metric")
        if isinstance(metric, dict):
            yield metric


def names_resource(value: Any, resource: str) -> bool:
    return value in ({"Ref": resource}, {"Fn::GetAtt": [resource, "QueueName"]}, {"Fn::GetAtt": f"{resource}.QueueName"})


def check_alarms(template: dict[str, Any], published: set[str] | None = None) -> list[str]:
    problems = []
    resources = template["Resources"]
    published = published_metrics() if published is None else published
    seen = set()
    for name, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = res.get("Properties") or {}
        where = f"Resources.{name}"
        if props.get("TreatMissingData") not in ("breaching", "notBreaching", "ignore", "missing"):
            problems.append(f"{where}: TreatMissingData is not stated (say what missing data means)")
        for metric in alarm_metrics(props):
            namespace, metric_name = metric.get("Namespace"), metric.get("MetricName")
            seen.add((namespace, metric_name))
            dims = {d.get("Name"): d.get("Value") for d in metric.get("Dimensions") or [] if isinstance(d, dict)}
            wanted = MISSING_DATA.get((namespace, metric_name))
            if wanted and props.get("TreatMissingData") != wanted:
                problems.append(f"{where}: TreatMissingData must be {wanted} for {namespace} {metric_name}, not {props.get('TreatMissingData')!r}")
            if (namespace, metric_name) == ("HsmAudit", "RecordsProcessed"):
                if props.get("ComparisonOperator") != "LessThanThreshold" or float(props.get("Threshold", 0)) != 1:
                    problems.append(f"{where}: the heartbeat must fire below one record (LessThanThreshold 1)")
                if props.get("Period") != {"Ref": "HeartbeatSeconds"}:
                    problems.append(f"{where}: the heartbeat's Period must be the HeartbeatSeconds parameter")
            if (namespace, metric_name) == ("HsmAudit", "SequenceGapsOpened"):
                if props.get("EvaluationPeriods") != 1 or props.get("DatapointsToAlarm", 1) != 1:
                    problems.append(f"{where}: a gap found must fire on its one datapoint (EvaluationPeriods 1): a quiet cluster publishes no second")
            if namespace == "HsmAudit":
                if metric_name not in published:
                    problems.append(f"{where}: HsmAudit {metric_name} is not published by src/metrics.rs")
                if dims != {"Service": {"Ref": "AWS::StackName"}}:
                    problems.append(f"{where}: {metric_name} must be watched under Service = the stack's name only, not {dims!r}")
            elif namespace in SCOPING_DIMENSIONS:
                dim, resource = SCOPING_DIMENSIONS[namespace]
                if not names_resource(dims.get(dim), resource):
                    problems.append(f"{where}: {namespace} {metric_name} must have dimension {dim} naming {resource}, not {dims!r}")
            if (namespace, metric_name) == ("AWS/Lambda", "Duration"):
                function = (resources.get("IngestFunction") or {}).get("Properties") or {}
                timeout_ms = 1000 * float(function.get("Timeout", 3))
                threshold = float(props.get("Threshold", 0))
                if not 0.5 * timeout_ms <= threshold < timeout_ms:
                    problems.append(f"{where}: Duration threshold {threshold:g} ms is not near the timeout ({timeout_ms:g} ms)")
    for namespace, metric_name in sorted(REQUIRED_ALARMS - seen):
        problems.append(f"Resources: no alarm on {namespace} {metric_name}")
    if not any(isinstance(r, dict) and r.get("Type") == "AWS::CloudWatch::Dashboard" for r in resources.values()):
        problems.append("Resources: no AWS::CloudWatch::Dashboard")
    return problems


# --- (g) deployable twice ---------------------------------------------------------

# Resource types whose name is a property: set to a literal (or a parameter that is
# always set), a retained resource outlives its stack and the next deployment collides.
NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
}

# Resource types of the template that take tags, and the shape of their Tags property.
TAGGABLE = {
    "AWS::DynamoDB::Table": "list",
    "AWS::SQS::Queue": "list",
    "AWS::Logs::LogGroup": "list",
    "AWS::IAM::Role": "list",
    "AWS::Kinesis::Stream": "list",
    "AWS::CloudWatch::Alarm": "list",
    "AWS::Lambda::EventSourceMapping": "list",
    "AWS::Serverless::Function": "map",
}
TAG = ("Application", {"Ref": "ApplicationTag"})

OUTPUTS = ("TableName", "FunctionArn", "FailureQueueUrl", "FailureQueueArn", "FunctionLogGroupName")


def fixed_name(value: Any) -> bool:
    """A name that is the same on every deployment: no branch of it leaves the name to
    CloudFormation (AWS::NoValue)."""
    return NO_VALUE not in _branches(value)


def _branches(value: Any) -> list[Any]:
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        branches = value["Fn::If"]
        if isinstance(branches, list) and len(branches) == 3:
            return _branches(branches[1]) + _branches(branches[2])
    return [value]


def has_tag(res: dict[str, Any], shape: str) -> bool:
    tags = (res.get("Properties") or {}).get("Tags")
    key, value = TAG
    if shape == "map":
        return isinstance(tags, dict) and tags.get(key) == value
    return isinstance(tags, list) and {"Key": key, "Value": value} in tags


def check_redeployable(template: dict[str, Any]) -> list[str]:
    problems = []
    resources = template["Resources"]
    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        kind, props, where = res.get("Type"), res.get("Properties") or {}, f"Resources.{name}"
        name_prop = NAME_PROPERTIES.get(kind)
        retained = res.get("DeletionPolicy") == "Retain" or res.get("UpdateReplacePolicy") == "Retain"
        if name_prop and name_prop in props and fixed_name(props[name_prop]):
            if retained or kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                problems.append(f"{where}: fixed {name_prop}; leave it to CloudFormation (a second deployment collides)")
        if kind in TAGGABLE and not has_tag(res, TAGGABLE[kind]):
            problems.append(f"{where}: no tag {TAG[0]} = Ref ApplicationTag")
        if kind == "AWS::Kinesis::Stream":
            for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
                if policy not in res:
                    problems.append(f"{where}: {policy} is not stated")
            if not (isinstance(props.get("RetentionPeriodHours"), dict) and "Ref" in props["RetentionPeriodHours"]):
                problems.append(f"{where}: RetentionPeriodHours is not a parameter")
        if kind == "AWS::Logs::SubscriptionFilter":
            destination = props.get("DestinationArn")
            into_stream = any(
                isinstance(destination, dict) and destination.get("Fn::GetAtt", [None])[0] == stream
                for stream, r in resources.items()
                if isinstance(r, dict) and r.get("Type") == "AWS::Kinesis::Stream"
            )
            if into_stream and props.get("Distribution") != "ByLogStream":
                problems.append(f"{where}: Distribution must be ByLogStream (per-HSM order)")
    log_group = resources.get("IngestFunctionLogGroup") or {}
    kms = (log_group.get("Properties") or {}).get("KmsKeyId")
    if kms != {"Fn::If": ["UseCustomerManagedKey", {"Ref": "KmsKeyArn"}, NO_VALUE]}:
        problems.append("Resources.IngestFunctionLogGroup: KmsKeyId must be KmsKeyArn when one is given")
    function = (resources.get("IngestFunction") or {}).get("Properties") or {}
    if "ReservedConcurrentExecutions" not in function:
        problems.append("Resources.IngestFunction: no (optional) ReservedConcurrentExecutions")
    outputs = template.get("Outputs") or {}
    for output in OUTPUTS:
        if output not in outputs:
            problems.append(f"Outputs: {output} is missing")
    return problems


# --- (h) the trail is append-only for the function ---------------------------------

# What could change or remove a stored trail record or digest: the role must deny these
# on `TRAIL#` partitions (a conditional put is the only write the code makes there).
APPEND_ONLY_DENIED = {
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLUpdate",
    "dynamodb:UpdateItem",
}


def check_trail_append_only(template: dict[str, Any]) -> list[str]:
    role = template["Resources"].get("IngestFunctionRole")
    if not isinstance(role, dict):
        return []
    for _, stmt in statements_in(role.get("Properties") or {}, ""):
        if stmt.get("Effect") != "Deny":
            continue
        actions = set(strings_in(stmt.get("Action")))
        condition = (stmt.get("Condition") or {}).get("ForAnyValue:StringLike") or {}
        leading = as_list(condition.get("dynamodb:LeadingKeys"))
        if (
            APPEND_ONLY_DENIED <= actions
            and "TRAIL#*" in leading
            and stmt.get("Resource") == {"Fn::GetAtt": ["AuditTable", "Arn"]}
        ):
            return []
    return [
        "Resources.IngestFunctionRole: no Deny of "
        + ", ".join(sorted(APPEND_ONLY_DENIED))
        + ' on the table with ForAnyValue:StringLike dynamodb:LeadingKeys ["TRAIL#*"]: the trail must be append-only for the function'
    ]


# --- (h) optional alert sinks: granted only where enabled -----------------------

# IAM action -> (the environment variable that enables it in the code, the SDK call).
OPTIONAL_SINKS = {
    "events:PutEvents": ("ALERT_EVENT_BUS", "put_events"),
    "securityhub:BatchImportFindings": ("SECURITY_HUB_FINDINGS", "batch_import_findings"),
}


def role_statements_with_conditions(role: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Each statement of the role's policies, with the condition of the Fn::If it hangs
    on (None when it is unconditional)."""
    for policy in as_list((role.get("Properties") or {}).get("Policies")):
        if not isinstance(policy, dict):
            continue
        document = policy.get("PolicyDocument") or {}
        for entry in document.get("Statement") or []:
            if isinstance(entry, dict) and "Fn::If" in entry and len(entry) == 1:
                branches = entry["Fn::If"]
                if isinstance(branches, list) and len(branches) == 3 and branches[2] == NO_VALUE:
                    if isinstance(branches[1], dict):
                        yield branches[0], branches[1]
                    continue
            if isinstance(entry, dict):
                yield None, entry


def check_optional_sinks(template: dict[str, Any], src: Path) -> list[str]:
    resources = template["Resources"]
    role = resources.get("IngestFunctionRole")
    function = resources.get("IngestFunction")
    if not isinstance(role, dict) or not isinstance(function, dict):
        return []
    variables = (((function.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
    calls = set()
    for _, text in function_sources(src):
        calls.update(CALL.findall(text))
    problems = []
    statements = list(role_statements_with_conditions(role))
    for action, (variable, call) in OPTIONAL_SINKS.items():
        granted = [(cond, stmt) for cond, stmt in statements if stmt.get("Effect") == "Allow" and action in strings_in(stmt.get("Action"))]
        called = call in calls
        if called and not granted:
            problems.append(f"Resources.IngestFunctionRole lacks {action}, which the function calls ({call}) when {variable} is set")
        if granted and not called:
            problems.append(f"Resources.IngestFunctionRole grants {action}, which the function's code does not call")
        value = variables.get(variable)
        enabled_by = None
        if isinstance(value, dict) and isinstance(value.get("Fn::If"), list) and len(value["Fn::If"]) == 3 and value["Fn::If"][2] == NO_VALUE:
            enabled_by = value["Fn::If"][0]
        if called and enabled_by is None:
            problems.append(f"Resources.IngestFunction: {variable} must be set under an Fn::If (absent when the sink is off)")
        for cond, stmt in granted:
            if cond is None:
                problems.append(f"Resources.IngestFunctionRole grants {action} unconditionally: only a stack that sets {variable} may")
            elif cond != enabled_by:
                problems.append(f"Resources.IngestFunctionRole grants {action} under {cond}, but {variable} is set under {enabled_by}")
            if set(strings_in(stmt.get("Action"))) != {action}:
                problems.append(f"Resources.IngestFunctionRole: {action} shares its statement with other actions")
            if stmt.get("Resource") in (None, "*"):
                problems.append(f"Resources.IngestFunctionRole: {action} must name its resource")
    return problems


def check(template: dict[str, Any], schema: dict[str, Any], src: Path = DEFAULT_SRC) -> list[str]:
    return (
        check_policies(template)
        + check_tables(template, schema)
        + check_queues(template)
        + check_queue_tls(template)
        + check_role_actions(template, src)
        + check_readme_role(template)
        + check_alarms(template)
        + check_redeployable(template)
        + check_trail_append_only(template)
        + check_optional_sinks(template, src)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="the crate's src/ (DynamoDB calls)")
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"check_template: FAIL: {exc}", file=sys.stderr)
        return 1
    problems = check(template, schema, args.src)
    if problems:
        for problem in problems:
            print(f"check_template: FAIL: {args.template}: {problem}", file=sys.stderr)
        return 1
    print(f"check_template: OK: {args.template} (no wildcard IAM beyond X-Ray's, table matches {args.schema.name}, PITR and SSE on, queues encrypted and TLS-only, role = DynamoDB calls in src/, alarms and their missing data, deployable twice, trail append-only, alert sinks granted only when enabled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
