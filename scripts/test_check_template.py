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
            "TableName:\n        Ref: TableName", "TableName: !Ref TableName", 1
        )
        self.assertIn("!Ref TableName", text)
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

    def test_table_without_pitr_or_sse_fails(self):
        t = self.mutated()
        del table(t)["Properties"]["PointInTimeRecoverySpecification"]
        del table(t)["Properties"]["SSESpecification"]
        problems = check_template.check(t, self.schema)
        self.assertTrue(any("point-in-time" in p for p in problems), problems)
        self.assertTrue(any("encryption" in p for p in problems), problems)


if __name__ == "__main__":
    unittest.main(verbosity=1)
