use super::rows::{ALERT_COLUMNS, INVENTORY_COLUMNS, RowFormat, RowWriter, csv_cell};
use super::*;
use crate::config::Config;
use crate::model::{Opcode, TrailEntry};
use crate::pipeline::{Parsed, ingest};
use crate::store::memory::MemoryStore;
use crate::testkit::{login, rec};

const SECOND: i64 = 1_000_000;
/// 2024-01-01T00:00:00Z: records of the tests fall on that day.
const DAY0: i64 = 1_704_067_200 * SECOND;

fn options() -> Options {
    Options {
        cluster: "cluster-test".into(),
        from: None,
        to: None,
        max_key_age_micros: 30 * MICROS_PER_DAY,
        as_of: Timestamp(DAY0 + 45 * MICROS_PER_DAY),
        generated_at: Timestamp(DAY0 + 45 * MICROS_PER_DAY),
    }
}

fn at(seconds: i64) -> i64 {
    DAY0 + seconds * SECOND
}

/// A crypto user's logout, the end of [`login`]'s session on `handle`.
fn logout(hsm: &str, seq: u64, micros: i64, handle: u64, user: &str) -> TrailEntry {
    rec(hsm, 1, seq, micros, Opcode::Logout)
        .handle(handle)
        .user(user, "CN_CRYPTO_USER")
        .build()
}

/// Two HSMs: alice logs in on both (mirrored), creates key 7 and destroys it, creates
/// key 9 and exports it; bob fails to log in; hsm-b's stream misses 0x6..0x8 and hsm-a
/// reboots.
fn scenario() -> Vec<TrailEntry> {
    let mut entries = vec![
        login("hsm-a", 1, at(10), 5, "alice").build(),
        login("hsm-b", 1, at(11), 5, "alice").build(),
    ];
    // alice's commands on hsm-a, in her session's handle.
    for (seq, seconds, opcode, key) in [
        (2, 20, Opcode::GenerateKey, 7),
        (3, 30, Opcode::GenerateKey, 9),
        (4, 40, Opcode::WrapKey, 9),
        (5, 50, Opcode::DestroyObject, 7),
    ] {
        let command = rec("hsm-a", 1, seq, at(seconds), opcode).handle(5);
        entries.push(command.key(key).build());
    }
    entries.extend([
        logout("hsm-a", 6, at(60), 5, "alice"),
        logout("hsm-b", 2, at(61), 5, "alice"),
        rec("hsm-b", 1, 9, at(200), Opcode::Login)
            .handle(6)
            .user("bob", "CN_CRYPTO_USER")
            .fail(163, "HSM Error: RET_USER_LOGIN_FAILURE")
            .build(),
        rec("hsm-a", 2, 0, at(300), Opcode::Login)
            .handle(8)
            .user("carol", "CN_CRYPTO_USER")
            .boot(2)
            .build(),
    ]);
    // The records of hsm-b between 2 and 9 never arrive.
    entries.retain(|entry| entry.cloudhsm().is_some());
    entries
}

async fn stored(entries: Vec<TrailEntry>) -> MemoryStore {
    let store = MemoryStore::new();
    let config = match Config::from_lookup(Some("t".into()), |_| None) {
        Ok(config) => config,
        Err(error) => panic!("config: {error}"),
    };
    let mut parsed = Parsed::default();
    parsed.entries.insert("cluster-test".into(), entries);
    if let Err(error) = ingest(&store, &config, parsed).await {
        panic!("ingest: {error}");
    }
    store
}

async fn built(store: &MemoryStore, options: Options, limits: Limits) -> Report {
    match read::build(store, options, limits).await {
        Ok(report) => report,
        Err(error) => panic!("report: {error}"),
    }
}

fn html_of(report: &Report) -> String {
    let mut out = Vec::new();
    if let Err(error) = html::write(report, &mut out) {
        panic!("html: {error}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn given_ages_in_days_weeks_years_hours_when_parsed_then_micros_and_nonsense_refused() {
    assert_eq!(parse_age("365d"), Ok(365 * MICROS_PER_DAY));
    assert_eq!(parse_age("52w"), Ok(364 * MICROS_PER_DAY));
    assert_eq!(parse_age("1y"), Ok(365 * MICROS_PER_DAY));
    assert_eq!(parse_age("48h"), Ok(2 * MICROS_PER_DAY));
    for bad in ["", "d", "0d", "12x", "-3d", "99999999999999999y"] {
        assert!(parse_age(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn given_the_scenario_when_reported_then_the_inventory_tells_each_keys_story() {
    let store = stored(scenario()).await;
    let report = built(&store, options(), Limits::default()).await;
    let row = |key: &str| {
        report
            .keys
            .rows
            .iter()
            .find(|row| row.key == key)
            .unwrap_or_else(|| panic!("key {key} in {:?}", report.keys.rows))
    };
    let destroyed = row("7");
    assert_eq!(destroyed.state, KeyState::Destroyed);
    assert_eq!(destroyed.created_by.as_deref(), Some("alice"));
    assert_eq!(destroyed.destroyed_time, Some(Timestamp(at(50))));
    assert_eq!(destroyed.destroyed_by.as_deref(), Some("alice"));
    assert_eq!(destroyed.age_days, None, "a destroyed key has no age");
    let exported = row("9");
    assert_eq!(exported.state, KeyState::Active);
    assert!(exported.exported);
    assert_eq!(exported.last_use_opcode.as_deref(), Some("CN_WRAP_KEY"));
    assert_eq!(exported.last_use_time, Some(Timestamp(at(40))));
    assert_eq!(exported.age_days, Some(44));
    assert!(exported.past_crypto_period, "44 days against 30");
    assert_eq!(report.keys_past_period, 1);
    assert_eq!(report.keys_exported, 1);

    let within = built(
        &store,
        Options {
            max_key_age_micros: 45 * MICROS_PER_DAY,
            ..options()
        },
        Limits::default(),
    )
    .await;
    assert_eq!(within.keys_past_period, 0, "44 days within 45");
}

#[tokio::test]
async fn given_a_gap_and_a_reboot_when_reported_then_the_completeness_rows_name_them() {
    let store = stored(scenario()).await;
    let report = built(&store, options(), Limits::default()).await;
    assert!(!report.complete());
    let stream = |hsm: &str, boot: u32| {
        report
            .streams
            .iter()
            .find(|s| s.hsm == hsm && s.reboot_counter == boot)
            .unwrap_or_else(|| panic!("{hsm}/{boot} in {:?}", report.streams))
    };
    let broken = stream("hsm-b", 1);
    assert_eq!(broken.gaps, vec![(3, 8)]);
    assert_eq!(broken.missing, 6);
    assert!(!broken.complete());
    assert!(stream("hsm-a", 1).complete());
    let rebooted = stream("hsm-a", 2);
    assert!(rebooted.after_reboot);
    assert!(rebooted.complete());
    assert_eq!(report.records(), 10);

    let html = html_of(&report);
    assert!(html.contains("Is the trail complete? No."));
    assert!(
        html.contains("data-from=\"3\" data-to=\"8\">0x3–0x8 (6)"),
        "the gap is listed"
    );
}

#[tokio::test]
async fn given_sessions_when_reported_then_one_bar_each_and_mirrors_marked() {
    let store = stored(scenario()).await;
    let report = built(&store, options(), Limits::default()).await;
    assert_eq!(report.sessions.total, 2, "alice (mirrored) and carol");
    assert_eq!(report.lanes, vec!["alice".to_owned(), "carol".to_owned()]);
    let html = html_of(&report);
    assert_eq!(html.matches("<rect class=\"bar").count(), 2);
    assert_eq!(html.matches("<rect class=\"bar mirrored").count(), 1);
    assert_eq!(html.matches("<rect class=\"bar open").count(), 1, "carol");
    let alice = &report.sessions.rows[0];
    assert_eq!(alice.session.user, "alice");
    assert_eq!(alice.commands, alice.session.events.len());
    assert!(
        alice
            .session
            .events
            .iter()
            .any(|e| e.opcode == Opcode::DestroyObject)
    );
}

#[tokio::test]
async fn given_a_period_when_reported_then_only_its_sessions_logins_and_alerts_but_the_whole_trail_checked()
 {
    let store = stored(scenario()).await;
    let period = Options {
        from: Some(Timestamp(at(100))),
        to: Some(Timestamp(at(250))),
        ..options()
    };
    let report = built(&store, period, Limits::default()).await;
    assert_eq!(report.sessions.total, 0);
    assert_eq!(report.failed_logins.total, 1, "bob at 200");
    assert!(
        report
            .alerts
            .rows
            .iter()
            .all(|row| row.alert.time >= Timestamp(at(100)) && row.alert.time <= Timestamp(at(250)))
    );
    assert_eq!(
        report.streams.iter().map(|s| s.gaps.len()).sum::<usize>(),
        1,
        "the gap is evidence whatever the period"
    );
    assert_eq!(report.keys.total, 2, "the inventory is not cut");
}

#[tokio::test]
async fn given_alerts_when_reported_then_newest_first_with_their_log_event_ids() {
    let store = stored(scenario()).await;
    let report = built(&store, options(), Limits::default()).await;
    let times: Vec<Timestamp> = report.alerts.rows.iter().map(|r| r.alert.time).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    let export = report
        .alerts
        .rows
        .iter()
        .find(|row| row.alert.opcode == Some(Opcode::WrapKey))
        .unwrap_or_else(|| panic!("export alert in {:?}", report.alerts.rows));
    // testkit's log event ids are `<hsm>-<boot>-<seq>`.
    assert_eq!(export.log_event_id.as_deref(), Some("hsm-a-1-4"));
}

#[tokio::test]
async fn given_more_rows_than_the_limits_when_reported_then_all_counted_and_the_cut_said() {
    let mut entries = vec![login("hsm-a", 0, at(0), 5, "alice").build()];
    for n in 1..=40u64 {
        entries.push(
            rec("hsm-a", 1, n, at(n as i64), Opcode::GenerateKey)
                .handle(5)
                .key(1000 + n)
                .build(),
        );
    }
    let store = stored(entries).await;
    let limits = Limits {
        key_rows: 10,
        ..Limits::default()
    };
    let report = built(&store, options(), limits).await;
    assert_eq!((report.keys.rows.len(), report.keys.total), (10, 40));
    assert_eq!(report.keys_by_state.get("active"), Some(&40));
    let html = html_of(&report);
    assert_eq!(html.matches("<tr data-key=").count(), 10);
    assert!(html.contains("the first 10 of 40"));

    let mut csv = RowWriter::new(Vec::new(), RowFormat::Csv, "cluster-test");
    let written = read::export_keys(&store, options(), &mut csv).await;
    assert_eq!(written.ok(), Some(40), "the CSV holds every key");
    let text =
        String::from_utf8(csv.finish(&INVENTORY_COLUMNS).unwrap_or_default()).unwrap_or_default();
    assert_eq!(text.lines().count(), 41);
    assert_eq!(
        text.lines().next(),
        Some(INVENTORY_COLUMNS.join(",").as_str())
    );
}

#[tokio::test]
async fn given_many_sessions_when_past_the_bar_limit_then_lanes_show_coverage() {
    let mut entries = Vec::new();
    for n in 0..30u64 {
        let time = at(n as i64 * 100);
        entries.push(login("hsm-a", 2 * n, time, n, "app").build());
        entries.push(logout("hsm-a", 2 * n + 1, time + 10 * SECOND, n, "app"));
    }
    let store = stored(entries).await;
    let limits = Limits {
        timeline_bars: 10,
        ..Limits::default()
    };
    let report = built(&store, options(), limits).await;
    assert_eq!(report.bars.len(), 30);
    let html = html_of(&report);
    assert_eq!(html.matches("<rect class=\"bar").count(), 0);
    let runs = html.matches("<rect class=\"coverage\"").count();
    assert!((1..=30).contains(&runs), "{runs} runs");
}

#[test]
fn given_hostile_names_when_rendered_then_escaped_and_nothing_is_fetched() {
    let mut builder = Builder::new(options(), Limits::default());
    let mut key = KeyGeneration::blank(1, None, 1, "secret");
    key.created_by = Some("<script>alert(1)</script>".into());
    key.created_time = Some(Timestamp(DAY0));
    builder.key_head(&key);
    let report = builder.finish();
    let html = html_of(&report);
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    for fetching in ["http://", "https://", " src=", "@import", "url("] {
        assert!(!html.contains(fetching), "{fetching}");
    }
    assert!(
        html.contains("Is the trail complete? Unknown"),
        "no stream, no evidence"
    );
}

#[test]
fn given_cells_from_the_log_when_written_as_csv_then_quoted_and_never_a_formula() {
    assert_eq!(csv_cell("alice"), "alice");
    assert_eq!(csv_cell("a,b"), "\"a,b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
}

#[tokio::test]
async fn given_alerts_when_exported_as_json_then_an_array_of_the_csv_columns() {
    let store = stored(scenario()).await;
    let mut json = RowWriter::new(Vec::new(), RowFormat::Json, "cluster-test");
    let written = read::export_alerts(&store, &options(), &mut json).await;
    let bytes = json.finish(&ALERT_COLUMNS).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let rows = value.as_array().cloned().unwrap_or_default();
    assert_eq!(Some(rows.len()), written.ok());
    assert!(rows.iter().any(|row| row["kind"] == "sequence_gap"
        && row["from"] == 3
        && row["to"] == 8
        && row["hsm"] == "hsm-b"));
    assert!(rows.iter().all(|row| row["cluster"] == "cluster-test"));

    let empty = RowWriter::new(Vec::new(), RowFormat::Json, "c")
        .finish(&ALERT_COLUMNS)
        .unwrap_or_default();
    assert_eq!(empty, b"[]\n");
}

#[test]
fn given_quorum_tokens_when_rendered_then_a_quorum_section_names_requester_and_approvers() {
    let without = html_of(&Builder::new(options(), Limits::default()).finish());
    assert!(!without.contains("id=\"quorum\""), "no quorum, no section");

    let view = || crate::domain::QuorumView {
        tokens: vec![crate::domain::QuorumToken {
            hsm: "hsm-a".into(),
            reboot_counter: 1,
            seq: 20,
            time: Timestamp(at(5)),
            requested_by: Some("admin".into()),
            approved_by: vec!["carol".into(), "dave".into()],
            end_time: Some(Timestamp(at(9))),
            ended_by: Some("CN_DELETE_TOKEN".into()),
            steps: Vec::new(),
            activity: Vec::new(),
            activity_count: 0,
        }],
        m_values: Vec::new(),
    };
    let mut builder = Builder::new(options(), Limits::default());
    builder.quorum(view());
    let html = html_of(&builder.finish());
    assert!(html.contains("id=\"quorum\""));
    assert!(html.contains("<td>admin</td><td>carol, dave</td>"));

    let mut later = Builder::new(
        Options {
            from: Some(Timestamp(at(100))),
            ..options()
        },
        Limits::default(),
    );
    later.quorum(view());
    assert!(
        !html_of(&later.finish()).contains("id=\"quorum\""),
        "a token before the period is not the period's"
    );
}

#[tokio::test]
async fn given_findings_when_reported_then_the_first_screen_counts_and_names_them() {
    let mut entries = scenario();
    // Key 11 was made before the trail begins: its age is unknown, not fine.
    entries.push(
        rec("hsm-a", 2, 1, at(310), Opcode::WrapKey)
            .handle(8)
            .key(11)
            .build(),
    );
    let store = stored(entries).await;
    let mut report = built(&store, options(), Limits::default()).await;
    report.quarantine = BTreeMap::from([("invalid JSON".to_owned(), 2)]);
    assert_eq!(
        report.sensitive_by_opcode,
        BTreeMap::from([("CN_WRAP_KEY".to_owned(), 2)])
    );
    assert_eq!(report.keys_past_names, ["9"]);
    assert_eq!(report.keys_unknown_age, 1);
    assert_eq!(report.keys_unknown_age_names, ["11"]);
    let html = html_of(&report);
    for worry in [
        "data-worry=\"sensitive\" data-count=\"2\" class=\"bad\">2 sensitive operations in the \
         period: <code>CN_WRAP_KEY</code> ×2</li>",
        "data-worry=\"crypto-period\" data-count=\"1\" class=\"bad\">1 active key past the \
         crypto-period of 30 days: <code>9</code></li>",
        "data-worry=\"unknown-age\" data-count=\"1\" class=\"bad\">1 active key of unknown age",
        "data-worry=\"quarantine\" data-count=\"2\" class=\"bad\">2 inputs quarantined (see \
         <code>hsm-audit quarantine</code>): invalid JSON (×2)</li>",
        "data-worry=\"late\" data-count=\"0\" class=\"ok\">0 records arrived later",
        "Is the trail as its digests say? Not verified by this report",
        "all times UTC",
        "1 active key past the crypto-period of 30 days: <code>9</code>",
        "<th>User (actor)</th>",
        "User is who acted; the detail names the user acted on",
        "<td class=\"num age\"><span class=\"flag\">unknown</span></td>",
    ] {
        assert!(html.contains(worry), "{worry} not in the report");
    }
    let verdicts = html.find("id=\"worries\"").unwrap_or(usize::MAX);
    assert!(
        verdicts < html.find("id=\"completeness\"").unwrap_or(0),
        "the worry list comes before the evidence"
    );
}

#[test]
fn given_periods_from_a_second_to_years_when_drawn_then_the_axis_ticks_all_differ() {
    for span in [
        SECOND,
        30 * SECOND,
        20 * 60 * SECOND,
        6 * 3600 * SECOND,
        3 * MICROS_PER_DAY,
        900 * MICROS_PER_DAY,
    ] {
        let mut out = Vec::new();
        if let Err(error) = html::axis(
            (Timestamp(DAY0), Timestamp(DAY0 + span)),
            0.0,
            0.0,
            &mut out,
        ) {
            panic!("axis: {error}");
        }
        let svg = String::from_utf8(out).unwrap_or_default();
        let labels: Vec<&str> = svg
            .split("</text>")
            .filter_map(|part| part.rsplit('>').next())
            .filter(|label| !label.is_empty())
            .collect();
        assert_eq!(labels.len(), 6, "{svg}");
        let distinct: std::collections::BTreeSet<&&str> = labels.iter().collect();
        assert_eq!(distinct.len(), 6, "a span of {span} µs: {labels:?}");
    }
}

#[tokio::test]
async fn given_an_open_session_when_drawn_then_it_ends_at_its_hsms_last_record() {
    let store = stored(scenario()).await;
    let report = built(
        &store,
        Options {
            to: Some(Timestamp(DAY0 + 40 * MICROS_PER_DAY)),
            ..options()
        },
        Limits::default(),
    )
    .await;
    let carol = report
        .bars
        .iter()
        .find(|bar| bar.end.is_none())
        .unwrap_or_else(|| panic!("carol's open session in {:?}", report.bars));
    assert_eq!(
        carol.drawn_end,
        Timestamp(at(300)),
        "hsm-a's last record, not the period's end"
    );
    let html = html_of(&report);
    assert!(
        html.contains("open; its HSM's last record 2024-01-01 00:05:00Z"),
        "{html}"
    );
}

#[tokio::test]
async fn given_overlapping_sessions_of_one_user_when_drawn_then_each_has_a_lane() {
    let entries = vec![
        login("hsm-a", 1, at(10), 5, "alice").build(),
        login("hsm-b", 1, at(100), 6, "alice").build(),
        logout("hsm-a", 2, at(200), 5, "alice"),
        logout("hsm-b", 2, at(300), 6, "alice"),
        login("hsm-a", 3, at(400), 7, "alice").build(),
    ];
    let store = stored(entries).await;
    let report = built(&store, options(), Limits::default()).await;
    assert_eq!(report.sessions.total, 3);
    assert_eq!(report.lanes, ["alice", "alice (2)"]);
    let lanes: Vec<usize> = report.bars.iter().map(|bar| bar.lane).collect();
    assert_eq!(
        lanes,
        [0, 1, 0],
        "the third, after both ended, back on the first"
    );
}

#[test]
fn given_late_and_clock_skewed_records_when_reported_then_the_worry_list_counts_both() {
    let mut builder = Builder::new(options(), Limits::default());
    for (kind, seq) in [
        (AlertKind::LateRecord, 1),
        (AlertKind::ClockSkew, 2),
        (AlertKind::ClockSkew, 3),
    ] {
        builder.alert(
            Alert {
                kind,
                time: Timestamp(at(seq)),
                hsm: Some("hsm-a".into()),
                reboot_counter: Some(1),
                from: None,
                to: None,
                seq: Some(seq as u64),
                user: None,
                opcode: None,
                detail: None,
            },
            None,
        );
    }
    let html = html_of(&builder.finish());
    assert!(
        html.contains(
            "data-worry=\"late\" data-count=\"3\" class=\"bad\">1 record arrived later than the \
             allowed lateness"
        ),
        "{html}"
    );
    assert!(html.contains("; 2 records timed ahead of the clock"));
}
