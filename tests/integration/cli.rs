//! The `hsm-audit` binary as scripts use it: exit codes and the JSON contract of SPEC
//! section 5, against the local DynamoDB.

use std::process::Output;

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::*;
use serde_json::Value;

fn has_fields(value: &Value, fields: &[&str]) {
    for field in fields {
        assert!(
            value.get(field).is_some(),
            "field {field} missing in {value}"
        );
    }
}

#[test]
fn parse_counts_the_samples_without_any_aws_call() {
    // An unreachable endpoint proves that parse makes no AWS call.
    let output = cli(
        &["parse", "events/", "--output", "json"],
        "unused",
        "http://127.0.0.1:1",
    );
    let summary = json_of(&output);
    assert_eq!(
        summary["events"], 61,
        "32 CloudHSM records, 11 Luna records and 18 in the later layout"
    );
    assert_eq!(summary["quarantined"], 1);
    assert_eq!(
        summary["failed_logins"], 7,
        "157, 163 and five Luna failures"
    );
    assert_eq!(summary["by_opcode"]["CN_LOGIN"], 10);
    assert_eq!(summary["by_opcode"]["LUNA_LOGIN"], 6);
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    for args in [
        vec!["parse", "no/such/file"],
        vec!["sessions"],
        vec!["sessions", "--cluster", "c", "--from", "yesterday"],
        vec!["frobnicate"],
    ] {
        let output = cli(&args, "t", "http://127.0.0.1:1");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
}

#[test]
fn an_unreachable_dynamodb_exits_1() {
    let output = cli(&["quarantine"], "t", "http://127.0.0.1:1");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error"));
}

#[test]
fn the_json_contract_of_every_query() {
    let endpoint = endpoint();
    let table = format!("hsm-audit-test-cli-{:08x}", fastrand::u32(..));
    let run = |args: &[&str]| cli(args, &table, &endpoint);
    assert!(run(&["setup"]).status.success());
    let report = json_of(&run(&["ingest", "events/", "--output", "json"]));
    assert_eq!(report["records"], 61);

    let sessions = json_of(&run(&[
        "sessions",
        "--cluster",
        "cluster-demo",
        "--output",
        "json",
    ]));
    let sessions = sessions.as_array().expect("a JSON array");
    assert!(!sessions.is_empty());
    for session in sessions {
        has_fields(
            session,
            &[
                "user",
                "user_type",
                "login_time",
                "end_time",
                "ended_by",
                "origin_hsm",
                "mirror_hsms",
                "events",
            ],
        );
        for event in session["events"].as_array().expect("events") {
            has_fields(
                event,
                &[
                    "time",
                    "hsm",
                    "seq",
                    "opcode",
                    "success",
                    "target_user",
                    "key_handles",
                ],
            );
        }
    }
    let admin = sessions
        .iter()
        .find(|s| s["user"] == "admin")
        .expect("admin's session");
    assert_eq!(admin["login_time"], "2018-01-16T01:48:49.824999Z");
    assert_eq!(admin["ended_by"], "CN_LOGOUT");

    let key = json_of(&run(&[
        "key",
        "--cluster",
        "cluster-demo",
        "--handle",
        "262152",
        "--output",
        "json",
    ]));
    let generation = &key.as_array().expect("a JSON array")[0];
    has_fields(
        generation,
        &[
            "handle",
            "generation",
            "state",
            "kind",
            "pair_handle",
            "created_time",
            "created_by",
            "created_opcode",
            "hsms",
            "exported",
            "events",
        ],
    );
    assert_eq!(generation["handle"], 262152);
    assert_eq!(generation["state"], "active");
    assert_eq!(generation["created_by"], "testuser");

    let failed = json_of(&run(&[
        "failed-logins",
        "--cluster",
        "cluster-demo",
        "--output",
        "json",
    ]));
    let failed = failed.as_array().expect("a JSON array");
    assert_eq!(failed.len(), 2);
    for login in failed {
        has_fields(
            login,
            &[
                "time",
                "hsm",
                "seq",
                "user",
                "user_type",
                "response_code",
                "response",
                "brute_force",
            ],
        );
    }
    assert_eq!(failed[0]["response_code"], 157);

    let ranged = json_of(&run(&[
        "failed-logins",
        "--cluster",
        "cluster-demo",
        "--from",
        "2018-01-24T17:42:00Z",
        "--to",
        "2018-01-25",
        "--output",
        "json",
    ]));
    assert_eq!(
        ranged.as_array().map(Vec::len),
        Some(1),
        "only the 163 falls in the range"
    );

    let alerts = json_of(&run(&[
        "alerts",
        "--cluster",
        "cluster-demo",
        "--output",
        "json",
    ]));
    let alerts = alerts.as_array().expect("a JSON array");
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "sequence_gap" && a["from"].is_u64())
    );
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "sensitive_operation" && a["opcode"] == "CN_WRAP_KEY")
    );
    for alert in alerts {
        has_fields(
            alert,
            &[
                "kind",
                "hsm",
                "reboot_counter",
                "from",
                "to",
                "seq",
                "user",
                "opcode",
                "time",
            ],
        );
    }

    let quarantine = json_of(&run(&["quarantine", "--output", "json"]));
    let item = &quarantine.as_array().expect("a JSON array")[0];
    has_fields(
        item,
        &["reason", "log_group", "log_stream", "log_event_id", "raw"],
    );

    let trail = json_of(&run(&[
        "trail",
        "--cluster",
        "cluster-demo",
        "--hsm",
        "hsm-abcde123456",
        "--output",
        "json",
    ]));
    let sequence: Vec<u64> = trail
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(sequence, [0x0, 0x1, 0x2, 0x4, 0x5, 0xb]);

    let later = |command: &str| {
        json_of(&run(&[
            command,
            "--cluster",
            "cluster-later",
            "--output",
            "json",
        ]))
    };
    let quorum = later("quorum");
    let token = &quorum["tokens"][0];
    has_fields(
        token,
        &[
            "hsm",
            "time",
            "requested_by",
            "approved_by",
            "ended_by",
            "steps",
            "activity_count",
        ],
    );
    assert_eq!(token["requested_by"], "admin");
    assert_eq!(token["approved_by"], serde_json::json!(["carol"]));
    assert_eq!(quorum["m_values"][0]["opcode"], "CN_SET_M_VALUE");
    assert!(quorum["m_values"][0]["value"].is_null());

    let trail = later("trail");
    let create = trail
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|r| r["opcode"] == "CN_CREATE_USER")
        .expect("the CU's creation");
    assert_eq!(create["user_name"], "admin");
    assert_eq!(create["target_user_name"], "bob");
    assert_eq!(create["target_user_type"], "CN_CRYPTO_USER");
    assert_eq!(create["target_user_type_code"], 1);
    let seed = trail_record_without_later_fields(&run);
    assert!(seed.get("target_user_name").is_none() && seed.get("extra_fields").is_none());

    let keys = later("keys");
    let shared = keys
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|k| k["handle"] == 262150)
        .expect("key 262150");
    assert_eq!(shared["shared_with"][0]["user_name"], "carol");
    assert_eq!(shared["shared_with"][2]["operation"], "UNSHARE");
}

/// A seed-layout record as `trail --output json` prints it.
fn trail_record_without_later_fields(
    run: &impl Fn(&[&str]) -> std::process::Output,
) -> serde_json::Value {
    let trail = json_of(&run(&[
        "trail",
        "--cluster",
        "cluster-demo",
        "--output",
        "json",
    ]));
    trail[0].clone()
}

/// `cli` off the async runtime's threads: the fault proxy serves on them meanwhile.
async fn cli_async(args: &[&str], table: &str, endpoint: &str) -> Output {
    let (args, table, endpoint) = (
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        table.to_owned(),
        endpoint.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, &table, &endpoint)
    })
    .await
    .expect("run hsm-audit")
}

// DynamoDB's answer to a two-character table name (the local server accepts the name, so
// the fault proxy answers as DynamoDB does).
const TABLE_NAME_REJECTED: Fault = Fault::Rejected {
    kind: "com.amazon.coral.validate#ValidationException",
    message: "TableName must be at least 3 characters long and at most 255 characters long",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_is_one_line_and_the_whole_report_only_with_verbose() {
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on("CreateTable", TABLE_NAME_REJECTED)],
    )
    .await;
    let output = cli_async(&["--table", "t1", "setup"], "unused", &proxy.url()).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "error: DynamoDB CreateTable failed: ValidationException: TableName must be at \
             least 3 characters long and at most 255 characters long",
            "(-v or RUST_LOG shows the whole report)",
        ],
        "{stderr}"
    );

    for verbose in [
        &["-v", "--table", "t1", "setup"][..],
        &["--table", "t1", "setup", "--verbose"][..],
    ] {
        let output = cli_async(verbose, "unused", &proxy.url()).await;
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = stderr
            .lines()
            .find_map(|line| line.strip_prefix("detail: "))
            .unwrap_or_else(|| panic!("no detail line: {stderr}"));
        // The SDK's report: the service error and the raw response it came from.
        assert!(detail.contains("ValidationException"), "{detail}");
        assert!(detail.len() > lines[0].len(), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_warns_and_goes_on_when_the_server_lacks_continuous_backups() {
    let proxy = FaultProxy::start(
        &endpoint(),
        vec![Rule::on(
            "UpdateContinuousBackups",
            Fault::Rejected {
                kind: "com.amazon.coral.service#UnknownOperationException",
                message: "An unknown operation was requested.",
            },
        )],
    )
    .await;
    let table = format!("hsm-audit-test-cli-pitr-{:08x}", fastrand::u32(..));
    let output = cli_async(&["setup", "--output", "json"], &table, &proxy.url()).await;
    assert_eq!(json_of(&output)["state"], "created");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "warning: point-in-time recovery is not enabled: DynamoDB UpdateContinuousBackups \
         failed: UnknownOperationException: An unknown operation was requested."
    );
    assert_eq!(proxy.requests("UpdateContinuousBackups"), 1);
    // The table is there and usable.
    let output = cli_async(&["quarantine", "--output", "json"], &table, &endpoint()).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
