//! `hsm-audit report` on the demo data (events/), against the local DynamoDB: the HTML
//! opened in Debian's headless Chromium (tests/browser/describe-report.mjs describes the
//! rendered page; `make deps-browser` installs Chromium and playwright-core), and the
//! CSV and JSON rows. Every expectation comes from the CLI's own JSON queries of the same
//! table, not from numbers written here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

const CLUSTER: &str = "cluster-demo";

struct Demo {
    table: String,
    endpoint: String,
}

impl Demo {
    fn ingested() -> Self {
        let demo = Self {
            table: format!("hsm-audit-test-report-{:08x}", fastrand::u32(..)),
            endpoint: endpoint(),
        };
        assert!(demo.run(&["setup"]).status.success());
        json_of(&demo.run(&["ingest", "events/", "--output", "json"]));
        demo
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        cli(args, &self.table, &self.endpoint)
    }

    fn query(&self, command: &str) -> Vec<Value> {
        json_of(&self.run(&[command, "--cluster", CLUSTER, "--output", "json"]))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Where the test keeps what it made (the screenshot of the first screen, the PDF).
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// How the inventory names a key generation of `keys --output json`.
fn inventory_name(key: &Value) -> String {
    match (key["object_id"].as_str(), key["kind"].as_str()) {
        (Some(object), _) => format!("luna:{object}"),
        (None, Some("certificate")) => format!("cert:{}", key["handle"]),
        _ => key["handle"].to_string(),
    }
}

fn describe_in_browser(html: &std::path::Path) -> Value {
    let dir = artifacts();
    let output = Command::new("node")
        .arg(repo_path("tests/browser/describe-report.mjs"))
        .arg(html)
        .arg(dir.join("first-screen.png"))
        .arg(dir.join("report.pdf"))
        .output()
        .expect("run node (make deps-browser installs what the browser check needs)");
    assert!(
        output.status.success(),
        "the browser check failed (make deps-browser installs Chromium and playwright-core):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the page described as JSON")
}

#[test]
fn the_demo_report_renders_in_chromium_without_errors_or_requests_and_shows_the_trail() {
    let demo = Demo::ingested();
    let html = artifacts().join("report.html");
    let written = json_of(&demo.run(&[
        "report",
        "--cluster",
        CLUSTER,
        "--out",
        html.to_str().expect("a UTF-8 path"),
        "--output",
        "json",
    ]));
    assert_eq!(written["format"], "html");
    let page = describe_in_browser(&html);

    let troubles: Vec<&Value> = page["console"]
        .as_array()
        .expect("console messages")
        .iter()
        .filter(|message| message["type"] != "log" && message["type"] != "info")
        .collect();
    assert!(troubles.is_empty(), "console: {troubles:?}");
    let requests = page["requests"].as_array().expect("requests");
    assert!(
        requests.iter().all(|url| *url == page["url"]),
        "the page fetched {requests:?}"
    );
    assert_eq!(requests.len(), 1, "the file itself, once");
    for shown in ["verdict", "tamper", "worries"] {
        assert_eq!(
            page["on_first_screen"][shown], true,
            "{shown} on the first screen of 1280×800"
        );
    }
    assert_eq!(page["utc"], true, "times are labelled UTC");
    assert_eq!(
        page["overflowing_tables"],
        serde_json::json!([]),
        "every table fits 1280 px"
    );
    assert!(
        page["tamper"]
            .as_str()
            .is_some_and(|tamper| tamper.contains("Not verified")),
        "{}",
        page["tamper"]
    );
    assert!(page["pdf_bytes"].as_u64().unwrap_or(0) > 0, "printable");

    let keys = demo.query("keys");
    assert!(!keys.is_empty());
    let mut expected: Vec<(String, String)> = keys
        .iter()
        .map(|key| {
            (
                inventory_name(key),
                key["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut shown: Vec<(String, String)> = page["inventory"]
        .as_array()
        .expect("inventory rows")
        .iter()
        .map(|row| {
            assert_eq!(row["state"], row["state_shown"]);
            (
                row["key"].as_str().unwrap_or_default().to_owned(),
                row["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    expected.sort();
    shown.sort();
    assert_eq!(
        shown, expected,
        "the inventory holds every key, with its state"
    );

    let sessions = demo.query("sessions");
    let bars = page["bars"].as_array().expect("timeline bars");
    assert_eq!(bars.len(), sessions.len(), "one bar per session");
    let numbers: BTreeSet<u64> = bars.iter().filter_map(|b| b["session"].as_u64()).collect();
    assert_eq!(
        numbers.len(),
        sessions.len(),
        "each bar a different session"
    );
    assert!(bars.iter().all(|bar| bar["width"].as_f64() > Some(0.0)));
    let mirrored = sessions
        .iter()
        .filter(|s| s["mirror_hsms"].as_array().is_some_and(|m| !m.is_empty()))
        .count();
    assert!(mirrored > 0, "the demo has mirrored sessions");
    assert_eq!(
        bars.iter().filter(|bar| bar["mirrored"] == true).count(),
        mirrored
    );
    assert_eq!(page["session_rows"].as_u64(), Some(sessions.len() as u64));

    let alerts = demo.query("alerts");
    let gaps: BTreeSet<(String, u64, u64, u64)> = alerts
        .iter()
        .filter(|alert| alert["kind"] == "sequence_gap")
        .map(|alert| {
            (
                alert["hsm"].as_str().unwrap_or_default().to_owned(),
                alert["reboot_counter"].as_u64().unwrap_or_default(),
                alert["from"].as_u64().unwrap_or_default(),
                alert["to"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(!gaps.is_empty(), "the demo's trail has gaps");
    let listed: BTreeSet<(String, u64, u64, u64)> = page["completeness"]
        .as_array()
        .expect("completeness rows")
        .iter()
        .flat_map(|row| {
            let hsm = row["hsm"].as_str().unwrap_or_default().to_owned();
            let boot = row["reboot_counter"].as_u64().unwrap_or_default();
            row["gaps"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |gap| {
                    (
                        hsm.clone(),
                        boot,
                        gap[0].as_u64().unwrap_or_default(),
                        gap[1].as_u64().unwrap_or_default(),
                    )
                })
        })
        .collect();
    assert_eq!(listed, gaps, "the completeness table lists every gap");
    assert!(
        page["verdict"]
            .as_str()
            .is_some_and(|verdict| verdict.contains("complete? No")),
        "{}",
        page["verdict"]
    );
    assert_eq!(
        page["alerts"].as_array().map(Vec::len),
        Some(alerts.len()),
        "every alert of the whole trail listed"
    );
    assert_eq!(written["counts"]["keys"].as_u64(), Some(keys.len() as u64));
    worry_list(&demo, &page, &alerts, &keys, &written);
}

/// A record's sequence number and time.
type Position = (u64, String);

/// The worry list counts what the CLI's queries of the same table find, and names the
/// keys; the crypto-period flags show at 1280 px without scrolling.
fn worry_list(demo: &Demo, page: &Value, alerts: &[Value], keys: &[Value], written: &Value) {
    let worry = |name: &str| -> (u64, String) {
        let found = page["worries"]
            .as_array()
            .and_then(|worries| worries.iter().find(|w| w["worry"] == name))
            .unwrap_or_else(|| panic!("no worry {name}: {}", page["worries"]));
        (
            found["count"].as_u64().unwrap_or_default(),
            found["text"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let sensitive: Vec<&Value> = alerts
        .iter()
        .filter(|alert| alert["kind"] == "sensitive_operation")
        .collect();
    let (count, text) = worry("sensitive");
    assert!(!sensitive.is_empty(), "the demo has sensitive operations");
    assert_eq!(count, sensitive.len() as u64, "{text}");
    for alert in &sensitive {
        let opcode = alert["opcode"].as_str().unwrap_or_default();
        assert!(text.contains(opcode), "{opcode} not in {text}");
    }

    let past = written["counts"]["keys_past_crypto_period"]
        .as_u64()
        .unwrap_or_default();
    assert!(past > 0, "the demo has keys past the crypto-period");
    let (count, text) = worry("crypto-period");
    assert_eq!(count, past, "{text}");
    let flags = page["past_flags"].as_array().expect("crypto-period flags");
    assert_eq!(flags.len() as u64, past);
    for flag in flags {
        assert_eq!(flag["visible"], true, "flag hidden at 1280 px: {flag}");
        assert!(flag["text"].as_str().is_some_and(|t| t.contains("past")));
        let key = flag["key"].as_str().unwrap_or_default();
        assert!(text.contains(key), "{key} not named in {text}");
    }

    let unknown: BTreeSet<String> = keys
        .iter()
        .filter(|key| key["state"] == "active" && key["created_time"].is_null())
        .map(inventory_name)
        .collect();
    let (count, text) = worry("unknown-age");
    assert_eq!(count, unknown.len() as u64, "{text}");
    let shown: BTreeSet<String> = page["unknown_ages"]
        .as_array()
        .expect("keys of unknown age")
        .iter()
        .filter_map(|key| key.as_str().map(str::to_owned))
        .collect();
    assert_eq!(shown, unknown, "shown as unknown, not as a blank");

    let quarantine = json_of(&demo.run(&["quarantine", "--output", "json"]));
    let quarantine = quarantine.as_array().expect("a JSON array");
    assert!(!quarantine.is_empty(), "the demo quarantines an input");
    let (count, text) = worry("quarantine");
    assert_eq!(count, quarantine.len() as u64, "{text}");
    for item in quarantine {
        let reason = item["reason"].as_str().unwrap_or_default();
        assert!(text.contains(reason), "{reason} not in {text}");
    }
    // Time running backwards: a stream (HSM, boot) whose first record by sequence number
    // is timed after its last.
    let trail = json_of(&demo.run(&["trail", "--cluster", CLUSTER, "--output", "json"]));
    let mut ends: std::collections::BTreeMap<(String, u64), (Position, Position)> =
        std::collections::BTreeMap::new();
    for record in trail.as_array().expect("a JSON array") {
        let (Some(hsm), Some(boot), Some(seq), Some(time)) = (
            record["hsm"].as_str(),
            record["reboot_counter"].as_u64(),
            record["seq"].as_u64(),
            record["time"].as_str(),
        ) else {
            continue;
        };
        let here = (seq, time.to_owned());
        let end = ends
            .entry((hsm.to_owned(), boot))
            .or_insert((here.clone(), here.clone()));
        end.0 = end.0.clone().min(here.clone());
        end.1 = end.1.clone().max(here);
    }
    let backwards: Vec<String> = ends
        .iter()
        .filter(|(_, (first, last))| first.1 > last.1)
        .map(|((hsm, boot), _)| format!("{hsm} boot 0x{boot:x}"))
        .collect();
    let late = alerts
        .iter()
        .filter(|a| a["kind"] == "late_record" || a["kind"] == "clock_skew")
        .count();
    let (count, text) = worry("late");
    assert_eq!(count, (late + backwards.len()) as u64, "{text}");
    for stream in &backwards {
        assert!(text.contains(stream), "{stream} not in {text}");
    }
}

#[test]
fn the_inventory_and_alerts_as_csv_and_json_hold_every_row() {
    let demo = Demo::ingested();
    let dir = artifacts();
    let keys = demo.query("keys");
    let alerts = demo.query("alerts");
    let csv = dir.join("keys.csv");
    let summary = json_of(&demo.run(&[
        "report",
        "--cluster",
        CLUSTER,
        "--format",
        "csv",
        "--out",
        csv.to_str().expect("a UTF-8 path"),
        "--output",
        "json",
    ]));
    assert_eq!(summary["rows"].as_u64(), Some(keys.len() as u64));
    let text = std::fs::read_to_string(&csv).expect("the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header[..4], ["key", "generation", "kind", "state"]);
    assert_eq!(lines.count(), keys.len());

    let json = dir.join("alerts.json");
    let run = demo.run(&[
        "report",
        "--cluster",
        CLUSTER,
        "--format",
        "json",
        "--data",
        "alerts",
        "--out",
        json.to_str().expect("a UTF-8 path"),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON")).expect("a JSON array");
    assert_eq!(rows.len(), alerts.len());
    let sensitive = rows
        .iter()
        .find(|row| row["kind"] == "sensitive_operation" && row["seq"].is_u64())
        .expect("a sensitive operation on a sequence-numbered record");
    assert!(
        sensitive["log_event_id"].is_string(),
        "the original is found by its log event id: {sensitive}"
    );

    let refused = demo.run(&[
        "report",
        "--cluster",
        CLUSTER,
        "--data",
        "alerts",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "--data with the HTML report"
    );
}
