#!/usr/bin/env python3
"""Self-test of scripts/check_template.py: it passes the real template and
fails mutated copies of it. Run with .venv/bin/python (needs PyYAML)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_template  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "scripts" / "check_template.py"


def role_statements(template):
    role = template["Resources"]["IngestFunctionRole"]
    return role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def queue(template):
    return template["Resources"]["FailureQueue"]


def xray_statement(template):
    return next(s for s in role_statements(template) if isinstance(s, dict) and s.get("Sid") == "XRayTracing")


def table(template):
    return next(r for r in template["Resources"].values() if r.get("Type") == "AWS::DynamoDB::Table")


class CheckTemplateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = check_template.load_template(check_template.DEFAULT_TEMPLATE)
        cls.schema = json.loads(check_template.DEFAULT_SCHEMA.read_text())

    def mutated(self):
        return copy.deepcopy(self.template)

    def run_cli(self, template: dict | str) -> subprocess.CompletedProcess:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(template if isinstance(template, str) else yaml.safe_dump(template))
            path = f.name
        try:
            return subprocess.run(
                [sys.executable, str(CHECKER), path], capture_output=True, text=True, check=False
            )
        finally:
            Path(path).unlink()

    def test_real_template_passes(self):
        self.assertEqual(check_template.check(self.template, self.schema), [])
        result = subprocess.run([sys.executable, str(CHECKER)], capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_wildcard_action_fails(self):
        t = self.mutated()
        role_statements(t)[0]["Action"].append("dynamodb:*")
        result = self.run_cli(t)
        self.assertEqual(result.returncode, 1)
        self.assertIn("wildcard Action 'dynamodb:*'", result.stderr)

    def test_star_action_string_fails(self):
        t = self.mutated()
        role_statements(t)[1]["Action"] = "*"
        self.assertTrue(any("wildcard Action '*'" in p for p in check_template.check(t, self.schema)))

    def test_wildcard_resource_fails(self):
        t = self.mutated()
        role_statements(t)[0]["Resource"] = "*"
        self.assertTrue(any("wildcard Resource '*'" in p for p in check_template.check(t, self.schema)))

    def test_wildcard_inside_fn_if_fails(self):
        t = self.mutated()
        stmts = role_statements(t)
        kms = next(s for s in stmts if isinstance(s, dict) and "Fn::If" in s)
        kms["Fn::If"][1]["Action"] = ["kms:*"]
        self.assertTrue(any("kms:*" in p for p in check_template.check(t, self.schema)))

    def test_wildcard_in_other_resource_fails(self):
        t = self.mutated()
        t["Resources"]["QueuePolicy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "FailureQueue"}],
                "PolicyDocument": {"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}},
            },
        }
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 2, problems)

    def test_key_schema_mismatch_fails(self):
        t = self.mutated()
        table(t)["Properties"]["KeySchema"][1]["AttributeName"] = "sort"
        self.assertTrue(any("KeySchema" in p for p in check_template.check(t, self.schema)))

    def test_attribute_type_mismatch_fails(self):
        t = self.mutated()
        table(t)["Properties"]["AttributeDefinitions"][1]["AttributeType"] = "N"
        self.assertTrue(any("AttributeDefinitions" in p for p in check_template.check(t, self.schema)))

    def test_index_mismatch_fails(self):
        t = self.mutated()
        table(t)["Properties"]["GlobalSecondaryIndexes"][0]["Projection"]["ProjectionType"] = "ALL"
        self.assertTrue(any("GlobalSecondaryIndexes" in p for p in check_template.check(t, self.schema)))

    def test_billing_mode_mismatch_fails(self):
        t = self.mutated()
        table(t)["Properties"]["BillingMode"] = "PROVISIONED"
        self.assertTrue(any("BillingMode" in p for p in check_template.check(t, self.schema)))

    def test_pitr_disabled_fails(self):
        t = self.mutated()
        table(t)["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] = False
        self.assertTrue(any("point-in-time" in p for p in check_template.check(t, self.schema)))

    def test_sse_missing_fails(self):
        t = self.mutated()
        del table(t)["Properties"]["SSESpecification"]
        self.assertTrue(any("encryption" in p for p in check_template.check(t, self.schema)))

    def test_short_form_tag_fails(self):
        text = check_template.DEFAULT_TEMPLATE.read_text().replace(
            "DeletionProtectionEnabled:\n        Ref: DeletionProtection", "DeletionProtectionEnabled: !Ref DeletionProtection", 1
        )
        self.assertIn("!Ref DeletionProtection", text)
        result = self.run_cli(text)
        self.assertEqual(result.returncode, 1)
        self.assertIn("long-form intrinsics", result.stderr)

    def test_xray_statement_may_name_star_but_only_for_its_two_actions(self):
        self.assertEqual(check_template.check_policies(self.template), [])
        t = self.mutated()
        xray_statement(t)["Action"].append("xray:GetTraceSummaries")
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("XRayTracing" in p and "wildcard Resource '*'" in p for p in problems), problems)
        t = self.mutated()
        xray_statement(t)["Action"].append("dynamodb:Query")
        self.assertTrue(any("wildcard Resource '*'" in p for p in check_template.check(t, self.schema)))
        t = self.mutated()
        stmt = xray_statement(t)
        stmt["NotAction"] = stmt.pop("Action")
        self.assertTrue(any("wildcard Resource '*'" in p for p in check_template.check(t, self.schema)))

    def test_star_inside_a_resource_arn_fails(self):
        t = self.mutated()
        role_statements(t)[1]["Resource"] = "arn:aws:sqs:us-east-1:123456789012:*"
        self.assertTrue(any("wildcard Resource" in p for p in check_template.check(t, self.schema)))
        t = self.mutated()
        role_statements(t)[2]["Resource"] = {"Fn::Sub": "arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}
        self.assertTrue(any("log-group:*" in p for p in check_template.check(t, self.schema)))
        t = self.mutated()
        role_statements(t)[2]["Resource"] = {"Fn::Join": ["", ["arn:aws:logs:", {"Ref": "AWS::Region"}, ":*"]]}
        self.assertTrue(any("wildcard Resource" in p for p in check_template.check(t, self.schema)))

    def test_unencrypted_queue_fails(self):
        t = self.mutated()
        props = queue(t)["Properties"]
        del props["KmsMasterKeyId"]
        props["SqsManagedSseEnabled"] = False
        result = self.run_cli(t)
        self.assertEqual(result.returncode, 1)
        self.assertIn("FailureQueue: the queue is not encrypted at rest", result.stderr)

    def test_queue_encrypted_in_one_deployment_variant_only_fails(self):
        t = self.mutated()
        del queue(t)["Properties"]["SqsManagedSseEnabled"]
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("UseCustomerManagedKey=False", problems[0])

    def test_other_queues_are_checked_too(self):
        t = self.mutated()
        t["Resources"]["ExtraQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
        self.assertTrue(any("ExtraQueue" in p for p in check_template.check(t, self.schema)))

    def test_a_queue_without_a_tls_only_policy_fails(self):
        t = self.mutated()
        del t["Resources"]["FailureQueuePolicy"]
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("Resources.FailureQueue: no queue policy denies requests without TLS", problems[0])
        t = self.mutated()
        statement = t["Resources"]["FailureQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        statement["Condition"]["Bool"]["aws:SecureTransport"] = "true"
        self.assertEqual(len(check_template.check(t, self.schema)), 1)
        t = self.mutated()
        t["Resources"]["ExtraQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
        self.assertEqual([p for p in check_template.check_queue_tls(t) if "ExtraQueue" in p], [
            'Resources.ExtraQueue: no queue policy denies requests without TLS (Deny, Principal "*", Bool aws:SecureTransport false)'
        ])

    def test_table_without_pitr_or_sse_fails(self):
        t = self.mutated()
        del table(t)["Properties"]["PointInTimeRecoverySpecification"]
        del table(t)["Properties"]["SSESpecification"]
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("point-in-time" in p for p in problems), problems)
        self.assertTrue(any("encryption" in p for p in problems), problems)

    # --- (e) the role's DynamoDB actions follow the code

    def dynamodb_statement(self, t):
        return next(s for s in role_statements(t) if isinstance(s, dict) and s.get("Sid") == "AuditTable")

    def test_role_granting_an_action_the_code_does_not_call_fails(self):
        t = self.mutated()
        self.dynamodb_statement(t)["Action"].append("dynamodb:UpdateItem")
        result = self.run_cli(t)
        self.assertEqual(result.returncode, 1)
        self.assertIn("grants dynamodb:UpdateItem, which the function's code does not call", result.stderr)

    def test_role_lacking_an_action_the_code_calls_fails(self):
        t = self.mutated()
        self.dynamodb_statement(t)["Action"].remove("dynamodb:Query")
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("lacks dynamodb:Query, which src/store/dynamodb/queries.rs calls" in p for p in problems), problems)

    def append_only_statement(self, t: dict) -> dict:
        return next(s for s in role_statements(t) if isinstance(s, dict) and s.get("Sid") == "TrailIsAppendOnly")

    def test_the_readme_lists_the_roles_actions(self):
        self.assertEqual(check_template.check_readme_role(self.template), [])
        readme = check_template.DEFAULT_README.read_text()
        with tempfile.TemporaryDirectory() as tmp:
            stale = Path(tmp) / "README.md"
            stale.write_text(readme.replace("`GetItem`, `PutItem`, `Query`;", "`DeleteItem`, `PutItem`, `Query`;", 1))
            self.assertEqual(check_template.check_readme_role(self.template, stale), [
                "README.md lists dynamodb:DeleteItem, which Resources.IngestFunctionRole does not grant",
                "README.md does not list dynamodb:GetItem, which Resources.IngestFunctionRole grants",
            ])
            stale.write_text("# no list\n")
            self.assertEqual(len(check_template.check_readme_role(self.template, stale)), 1)

    def test_a_role_that_may_rewrite_the_trail_fails(self):
        for mutate in (
            lambda s: s["Action"].remove("dynamodb:DeleteItem"),
            lambda s: s["Action"].remove("dynamodb:BatchWriteItem"),
            lambda s: s["Condition"]["ForAnyValue:StringLike"].update({"dynamodb:LeadingKeys": ["CLUSTER#*"]}),
            lambda s: s.update({"Effect": "Allow"}),
        ):
            t = self.mutated()
            mutate(self.append_only_statement(t))
            problems = check_template.check(t, self.schema)
            self.assertTrue(any("the trail must be append-only" in p for p in problems), problems)

    def write_src(self, root: Path, files: dict[str, str]) -> Path:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    def test_actions_are_derived_from_the_function_sources_only(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = self.write_src(Path(tmp), {
                "store/a.rs": "client\n    .put_item()\n    .send();\n// .update_item() in a comment\n",
                "store/b.rs": "let items = c.transact_write_items().transact_items(\n"
                              "    TransactWriteItem::builder().put(Put::builder().build()?)\n"
                              "    .condition_check(ConditionCheck::builder().build()?));\n",
                "cli/backfill.rs": "client.get_item().send();",
                "store/dynamodb/table.rs": "client.create_table().send();",
                "model/x.rs": "iter.map(f).collect(); v.len();",
            })
            needed, problems = check_template.dynamodb_actions_called(src)
        self.assertEqual(problems, [])
        self.assertEqual(
            set(needed), {"dynamodb:PutItem", "dynamodb:ConditionCheckItem"}, needed
        )

    def test_a_transaction_whose_parts_cannot_be_seen_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = self.write_src(Path(tmp), {"store/a.rs": "c.transact_write_items().set_transact_items(items)"})
            _, problems = check_template.dynamodb_actions_called(src)
        self.assertTrue(any("builds none of its parts" in p for p in problems), problems)

    def test_new_call_in_the_code_fails_until_the_role_grants_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src"
            subprocess.run(["cp", "-r", str(ROOT / "src"), str(src)], check=True)
            store = src / "store" / "dynamodb" / "store.rs"
            store.write_text(store.read_text() + "\nfn touch(c: &Client) { let _ = c.update_item(); }\n")
            problems = check_template.check(self.template, self.schema, src)
        self.assertEqual(
            problems,
            ["Resources.IngestFunctionRole lacks dynamodb:UpdateItem, which src/store/dynamodb/store.rs calls"],
        )

    # --- (h) optional alert sinks

    def sink_statement(self, t: dict, sid: str) -> dict:
        for entry in role_statements(t):
            if isinstance(entry, dict) and "Fn::If" in entry and entry["Fn::If"][1].get("Sid") == sid:
                return entry
        raise AssertionError(f"no conditional statement {sid}")

    def test_an_alert_sink_granted_unconditionally_fails(self):
        t = self.mutated()
        statements = role_statements(t)
        entry = self.sink_statement(t, "AlertEvents")
        statements[statements.index(entry)] = entry["Fn::If"][1]
        problems = check_template.check(t, self.schema)
        self.assertIn("Resources.IngestFunctionRole grants events:PutEvents unconditionally: only a stack that sets ALERT_EVENT_BUS may", problems)

    def test_security_hub_findings_granted_unconditionally_fails(self):
        t = self.mutated()
        statements = role_statements(t)
        entry = self.sink_statement(t, "AlertFindings")
        statements[statements.index(entry)] = entry["Fn::If"][1]
        problems = check_template.check(t, self.schema)
        self.assertIn("Resources.IngestFunctionRole grants securityhub:BatchImportFindings unconditionally: only a stack that sets SECURITY_HUB_FINDINGS may", problems)

    def test_an_alert_sink_granted_under_another_condition_than_its_variable_fails(self):
        t = self.mutated()
        self.sink_statement(t, "AlertEvents")["Fn::If"][0] = "SignDigests"
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("grants events:PutEvents under SignDigests, but ALERT_EVENT_BUS is set under PublishAlertEvents" in p for p in problems), problems)

    def test_an_alert_sink_variable_set_always_fails(self):
        t = self.mutated()
        variables = t["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
        variables["ALERT_EVENT_BUS"] = {"Ref": "AlertEventBus"}
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("ALERT_EVENT_BUS must be set under an Fn::If" in p for p in problems), problems)

    def test_an_alert_sink_sharing_its_statement_or_missing_fails(self):
        t = self.mutated()
        self.sink_statement(t, "AlertEvents")["Fn::If"][1]["Action"].append("events:PutRule")
        problems = check_template.check(t, self.schema)
        self.assertIn("Resources.IngestFunctionRole: events:PutEvents shares its statement with other actions", problems)
        t = self.mutated()
        statements = role_statements(t)
        statements.remove(self.sink_statement(t, "AlertEvents"))
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("lacks events:PutEvents" in p for p in problems), problems)

    # --- (f) alarms

    def test_every_failure_path_alarm_is_required(self):
        for name, metric in [
            ("FunctionErrorsAlarm", "AWS/Lambda Errors"),
            ("FunctionThrottlesAlarm", "AWS/Lambda Throttles"),
            ("FunctionDurationAlarm", "AWS/Lambda Duration"),
            ("IteratorAgeAlarm", "AWS/Lambda IteratorAge"),
            ("FailureQueueMessagesAlarm", "AWS/SQS ApproximateNumberOfMessagesVisible"),
            ("FailureQueueAgeAlarm", "AWS/SQS ApproximateAgeOfOldestMessage"),
            ("TableThrottleAlarm", "AWS/DynamoDB ReadThrottleEvents"),
            ("SensitiveOperationAlarm", "HsmAudit SensitiveOperations"),
            ("QuorumLoweredAlarm", "HsmAudit QuorumLowered"),
            ("SequenceGapOpenedAlarm", "HsmAudit SequenceGapsOpened"),
            ("LateOrSkewedRecordsAlarm", "HsmAudit LateRecordsFolded"),
            ("LateOrSkewedRecordsAlarm", "HsmAudit ClockSkewedRecords"),
            ("LateOrSkewedRecordsAlarm", "HsmAudit RecordsOffLogTime"),
            ("LateBeyondHorizonAlarm", "HsmAudit LateRecordsBeyondHorizon"),
            ("HeartbeatAlarm", "HsmAudit RecordsProcessed"),
        ]:
            t = self.mutated()
            del t["Resources"][name]
            problems = check_template.check(t, self.schema)
            self.assertIn(f"Resources: no alarm on {metric}", problems, name)

    def test_alarm_without_treat_missing_data_fails(self):
        t = self.mutated()
        del t["Resources"]["QuarantineAlarm"]["Properties"]["TreatMissingData"]
        problems = check_template.check(t, self.schema)
        self.assertEqual(problems, ["Resources.QuarantineAlarm: TreatMissingData is not stated (say what missing data means)"])

    def test_queue_alarms_stay_ok_on_an_idle_queue_and_the_heartbeat_breaches_on_silence(self):
        for name, wrong, metric in [
            ("FailureQueueMessagesAlarm", "breaching", "AWS/SQS ApproximateNumberOfMessagesVisible"),
            ("FailureQueueAgeAlarm", "breaching", "AWS/SQS ApproximateAgeOfOldestMessage"),
            ("HeartbeatAlarm", "notBreaching", "HsmAudit RecordsProcessed"),
            ("SequenceGapOpenedAlarm", "breaching", "HsmAudit SequenceGapsOpened"),
        ]:
            t = self.mutated()
            t["Resources"][name]["Properties"]["TreatMissingData"] = wrong
            problems = check_template.check(t, self.schema)
            self.assertEqual(len(problems), 1, problems)
            self.assertIn(f"Resources.{name}: TreatMissingData must be", problems[0])
            self.assertIn(metric, problems[0])

    def test_the_heartbeat_fires_below_one_record_in_a_configurable_period(self):
        t = self.mutated()
        t["Resources"]["HeartbeatAlarm"]["Properties"]["ComparisonOperator"] = "GreaterThanOrEqualToThreshold"
        self.assertTrue(any("below one record" in p for p in check_template.check(t, self.schema)))
        t = self.mutated()
        t["Resources"]["HeartbeatAlarm"]["Properties"]["Period"] = 3600
        self.assertTrue(any("HeartbeatSeconds" in p for p in check_template.check(t, self.schema)))

    def test_a_gap_found_fires_on_its_one_datapoint(self):
        t = self.mutated()
        props = t["Resources"]["SequenceGapOpenedAlarm"]["Properties"]
        props["EvaluationPeriods"] = 2
        props["DatapointsToAlarm"] = 2
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("a quiet cluster publishes no second", problems[0])

    def test_an_alarm_on_a_metric_the_code_does_not_publish_fails(self):
        t = self.mutated()
        t["Resources"]["SensitiveOperationAlarm"]["Properties"]["MetricName"] = "SensitiveOps"
        problems = check_template.check(t, self.schema)
        self.assertIn("Resources.SensitiveOperationAlarm: HsmAudit SensitiveOps is not published by src/metrics.rs", problems)
        published = check_template.published_metrics()
        self.assertLessEqual({"SensitiveOperations", "SequenceGapsOpened", "RecordsOffLogTime", "RecordsProcessed"}, published)
        self.assertEqual(check_template.check_alarms(self.template, published - {"RecordsOffLogTime"}),
                         ["Resources.LateOrSkewedRecordsAlarm: HsmAudit RecordsOffLogTime is not published by src/metrics.rs"])

    def test_alarms_not_scoped_to_the_stack_fail(self):
        t = self.mutated()
        t["Resources"]["BruteForceAlarm"]["Properties"]["Dimensions"][0]["Value"] = "hsm-audit"
        t["Resources"]["FunctionErrorsAlarm"]["Properties"]["Dimensions"] = []
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("BruteForceAlarm" in p and "stack's name" in p for p in problems), problems)
        self.assertTrue(any("FunctionErrorsAlarm" in p and "FunctionName naming IngestFunction" in p for p in problems))

    def test_duration_alarm_threshold_must_be_near_the_timeout(self):
        t = self.mutated()
        timeout_ms = 1000 * t["Resources"]["IngestFunction"]["Properties"]["Timeout"]
        t["Resources"]["FunctionDurationAlarm"]["Properties"]["Threshold"] = timeout_ms
        self.assertTrue(any("not near the timeout" in p for p in check_template.check(t, self.schema)))

    def test_dashboard_is_required(self):
        t = self.mutated()
        del t["Resources"]["Dashboard"]
        self.assertIn("Resources: no AWS::CloudWatch::Dashboard", check_template.check(t, self.schema))

    # --- (g) deployable twice

    def test_fixed_names_on_retained_resources_and_the_function_fail(self):
        t = self.mutated()
        table(t)["Properties"]["TableName"] = "hsm-audit"
        t["Resources"]["IngestFunctionLogGroup"]["Properties"]["LogGroupName"] = {"Fn::Sub": "/aws/lambda/${AWS::StackName}-ingest"}
        t["Resources"]["IngestFunction"]["Properties"]["FunctionName"] = {"Fn::Sub": "${AWS::StackName}-ingest"}
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(all("fixed" in p for p in problems), problems)

    def test_optional_table_name_passes(self):
        self.assertEqual(
            table(self.template)["Properties"]["TableName"],
            {"Fn::If": ["HasTableName", {"Ref": "TableName"}, {"Ref": "AWS::NoValue"}]},
        )

    def test_stream_policies_retention_and_distribution_are_required(self):
        t = self.mutated()
        stream = t["Resources"]["AuditStream"]
        del stream["DeletionPolicy"]
        stream["Properties"]["RetentionPeriodHours"] = 24
        del t["Resources"]["AuditLogStreamSubscription"]["Properties"]["Distribution"]
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(any("DeletionPolicy is not stated" in p for p in problems))
        self.assertTrue(any("RetentionPeriodHours" in p for p in problems))
        self.assertTrue(any("ByLogStream" in p for p in problems))

    def test_log_group_kms_tags_concurrency_and_outputs_are_required(self):
        t = self.mutated()
        del t["Resources"]["IngestFunctionLogGroup"]["Properties"]["KmsKeyId"]
        del t["Resources"]["IngestFunction"]["Properties"]["Tags"]
        del t["Resources"]["IngestFunction"]["Properties"]["ReservedConcurrentExecutions"]
        t["Resources"]["FailureQueue"]["Properties"]["Tags"] = []
        del t["Outputs"]["FailureQueueArn"]
        problems = check_template.check(t, self.schema)
        self.assertEqual(len(problems), 5, problems)
        for text in ("KmsKeyId", "IngestFunction: no tag", "FailureQueue: no tag", "ReservedConcurrentExecutions", "FailureQueueArn"):
            self.assertTrue(any(text in p for p in problems), (text, problems))


if __name__ == "__main__":
    unittest.main(verbosity=1)
