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
fn an_unreachable_dynamodb_exits_1_at_once_in_one_line() {
    let started = std::time::Instant::now();
    let output = cli(&["quarantine"], "t", "http://127.0.0.1:1");
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    // The SDK's standard retries of the refusal took some 18 s of backoff sleeps; a
    // busy machine slows the one attempt left by far less than this.
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
}

/// A table of its own with `setup` done; `run` runs the CLI on it.
fn fresh_table(label: &str) -> (String, impl Fn(&[&str]) -> Output) {
    let endpoint = endpoint();
    let table = format!("hsm-audit-test-cli-{label}-{:08x}", fastrand::u32(..));
    let name = table.clone();
    let run = move |args: &[&str]| cli(args, &table, &endpoint);
    let setup = run(&["setup"]);
    assert!(setup.status.success(), "{setup:?}");
    (name, run)
}

const HOSTILE_USER: &str = "mallory\x1b[2J\x1b]0;owned\x07";
const HOSTILE_HSM: &str = "hsm-\x1b[31mred\u{202e}";

/// Raw audit text of one HSM whose user name carries terminal escapes: a failed login,
/// then a session that creates a key and exports it (a sensitive operation).
fn hostile_trail() -> String {
    let user = format!("User Name : {HOSTILE_USER}\nUser Type : CN_CRYPTO_USER (1)");
    let key = "Priv/Secret Key Handle : 327688\nPublic Key Handle : 0";
    [
        (
            "CN_LOGIN (0xd)",
            "163:HSM Error: RET_USER_LOGIN_FAILURE",
            "MGMT_USER_DETAILS_LOG (2)",
            user.as_str(),
        ),
        (
            "CN_LOGIN (0xd)",
            "0:HSM Return: SUCCESS",
            "MGMT_USER_DETAILS_LOG (2)",
            &user,
        ),
        (
            "CN_GENERATE_KEY (0x17)",
            "0:HSM Return: SUCCESS",
            "MGMT_KEY_DETAILS_LOG (1)",
            key,
        ),
        (
            "CN_WRAP_KEY (0x1e)",
            "0:HSM Return: SUCCESS",
            "MGMT_KEY_DETAILS_LOG (1)",
            key,
        ),
        (
            "CN_LOGOUT (0xe)",
            "0:HSM Return: SUCCESS",
            "MGMT_USER_DETAILS_LOG (2)",
            &user,
        ),
    ]
    .iter()
    .enumerate()
    .map(|(seq, (opcode, response, log_type, fields))| {
        format!(
            "Time: 03/01/24 10:00:0{seq}.000000, usecs:{}\nSequence No : 0x{seq:x}\n\
             Reboot counter : 0x1\nCommand Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : {opcode}\n\
             Session Handle : 0x1000\nResponse : {response}\nLog type : {log_type}\n{fields}\n",
            1_709_287_200_000_000u64 + seq as u64 * 1_000_000
        )
    })
    .collect()
}

/// What the terminal would obey: any control character but the line ends, or a
/// bidirectional override.
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{what} prints log content raw:\n{text:?}"
    );
}

#[test]
fn log_content_with_terminal_escapes_prints_escaped_in_every_text_output() {
    let (_, run) = fresh_table("hostile");
    let dir = std::env::temp_dir().join(format!("hsm-audit-hostile-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let trail = dir.join("trail.txt");
    std::fs::write(&trail, hostile_trail()).expect("write the trail");
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "not json \x1b]0;owned\x07").expect("write the junk");
    let (trail, junk) = (trail.to_string_lossy(), junk.to_string_lossy().into_owned());
    let ingest = [
        "ingest",
        "--log-group",
        "/aws/cloudhsm/cluster-hostile",
        "--log-stream",
        HOSTILE_HSM,
        &trail,
        &junk,
    ];
    let user = r"mallory\x1b[2J\x1b]0;owned\x07";
    let hsm = r"hsm-\x1b[31mred\u{202e}";
    let with_cluster = |command: &[&str]| -> Vec<String> {
        command
            .iter()
            .chain(&["--cluster", "cluster-hostile"])
            .map(|arg| arg.to_string())
            .collect()
    };
    let junk_line = format!("quarantined from {junk}: invalid JSON");
    let outputs: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            ingest.iter().map(|a| a.to_string()).collect(),
            vec![&junk_line],
        ),
        (with_cluster(&["trail"]), vec![user, hsm]),
        (with_cluster(&["sessions"]), vec![user, hsm]),
        (with_cluster(&["keys"]), vec![user, hsm]),
        (
            with_cluster(&["key", "--handle", "327688"]),
            vec![user, hsm],
        ),
        (with_cluster(&["failed-logins"]), vec![user, hsm]),
        (with_cluster(&["alerts"]), vec![user, hsm]),
        (
            vec!["quarantine".into()],
            vec![r"not json \x1b]0;owned\x07"],
        ),
    ];
    for (args, escaped) in &outputs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(&args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_inert(args[0], &stdout);
        for text in escaped {
            assert!(stdout.contains(text), "{} lacks {text}:\n{stdout}", args[0]);
        }
    }
    // JSON stays JSON: the name as logged, escaped the JSON way.
    let logins = with_cluster(&["failed-logins", "--output", "json"]);
    let logins = json_of(&run(&logins.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(logins[0]["user"], HOSTILE_USER);
    assert_eq!(logins[0]["hsm"], HOSTILE_HSM);
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
             least 3 characters long and at most 255 characters long (-v shows the whole report)",
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

#[test]
fn an_unknown_cluster_is_an_error_naming_the_clusters_there_are() {
    let (table, run) = fresh_table("unknown");
    let ingest = run(&["ingest", "events/02-login-logout.json", "--output", "json"]);
    let clusters = json_of(&ingest)["clusters"].clone();
    assert_eq!(clusters, serde_json::json!(["cluster-demo"]));
    let missing = ["--cluster", "no-such-cluster"];
    for command in [
        &["verify", "--kms-key-id", "K"][..],
        &["report", "--out", "/dev/null"],
        &["sessions"],
        &["keys"],
        &["key", "--handle", "0x40008"],
        &["trail"],
        &["failed-logins"],
        &["alerts"],
        &["quorum"],
        &["digests", "--out", "/dev/null"],
        &["rederive"],
    ] {
        let output = run(&[command, &missing[..]].concat());
        assert_eq!(output.status.code(), Some(1), "{command:?}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!("error: no cluster no-such-cluster in table {table}; clusters: cluster-demo\n"),
            "{command:?}"
        );
        assert!(output.stdout.is_empty(), "{command:?}");
    }
    let known = run(&["sessions", "--cluster", "cluster-demo"]);
    assert!(known.status.success(), "{known:?}");
}

#[test]
fn handles_in_hex_and_decimal_name_the_same_key_and_an_inverted_window_is_refused() {
    let (_, run) = fresh_table("handles");
    assert!(run(&["ingest", "events/"]).status.success());
    let key = |handle: &str| {
        json_of(&run(&[
            "key",
            "--cluster",
            "cluster-demo",
            "--handle",
            handle,
            "--output",
            "json",
        ]))
    };
    let decimal = key("262152");
    assert_eq!(decimal[0]["handle"], 262152);
    assert_eq!(key("0x40008"), decimal);
    assert_eq!(key("0X40008"), decimal);
    let bad = run(&["key", "--cluster", "cluster-demo", "--handle", "0x4000g"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a key handle"));

    let inverted = ["--from", "2018-02-01", "--to", "2018-01-01"];
    for command in [
        &["sessions", "--cluster", "cluster-demo"][..],
        &["failed-logins", "--cluster", "cluster-demo"],
        &["report", "--cluster", "cluster-demo", "--out", "/dev/null"],
        &["verify", "--cluster", "cluster-demo"],
    ] {
        let output = run(&[command, &inverted[..]].concat());
        assert_eq!(output.status.code(), Some(2), "{command:?}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "error: --from 2018-02-01T00:00:00.000000Z is after --to \
             2018-01-01T00:00:00.000000Z: the window is empty\n",
            "{command:?}"
        );
    }
    let inverted = run(&[
        "backfill",
        "--log-group",
        "/aws/cloudhsm/c",
        "--start",
        "2018-02-01",
        "--end",
        "2018-01-01",
    ]);
    assert_eq!(inverted.status.code(), Some(2), "{inverted:?}");
}

#[test]
fn garbage_given_to_ingest_says_why_and_from_which_file() {
    let (_, run) = fresh_table("garbage");
    let dir = std::env::temp_dir().join(format!("hsm-audit-garbage-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, [0x1f, 0x8b, 0, 1, 2, 3]).expect("write the garbage");
    let garbage = garbage.to_string_lossy();
    let text = run(&["ingest", &garbage]);
    assert!(text.status.success(), "{text:?}");
    let stdout = String::from_utf8_lossy(&text.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("quarantined from "))
        .unwrap_or_else(|| panic!("no quarantine line: {stdout}"));
    assert!(
        line.starts_with(&format!(
            "quarantined from {garbage}: truncated or corrupt gzip data"
        )),
        "{line}"
    );
    assert!(line.contains("quarantine --export "), "{line}");

    let json = json_of(&run(&["ingest", &garbage, "--output", "json"]));
    assert_eq!(json["quarantined"], 1);
    let item = &json["quarantine"][0];
    assert_eq!(item["file"], garbage.as_ref());
    assert!(
        item["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("truncated or corrupt gzip data")),
        "{item}"
    );
    let digest = item["raw_sha256"].as_str().expect("the digest");
    let exported = run(&["quarantine", "--export", digest]);
    assert_eq!(exported.stdout, [0x1f, 0x8b, 0, 1, 2, 3]);
}
