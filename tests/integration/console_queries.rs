//! The console queries (PartiQL) of the README and `docs/queries.md`, and the table of sort
//! keys in `docs/table.md`, checked against the local DynamoDB holding the sample events.
//!
//! The statements use `begins_with("sk", …)` and `"sk" BETWEEN … AND …`, which DynamoDB
//! turns into key conditions but moto's PartiQL cannot evaluate. So each statement is
//! parsed (one partition, at most one key condition on `sk`, equality filters, nothing
//! else), the same key condition and filters run as a `Query` against the local server,
//! and what that returns is compared with what the store's own queries answer for the
//! same range. Nothing of the statements is repeated here: they are read from the documents,
//! and the expected items come from the store, so a changed key layout fails this test
//! until the documents follow.

use std::collections::HashMap;

use crate::common::*;
use aws_sdk_dynamodb::types::AttributeValue;
use hsm_audit::domain::{ClusterSession, KeyGeneration};
use hsm_audit::lambda::ingest_event;
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::store::dynamodb::items;
use serde_json::Value;

/// The documents holding console queries, in the order their statements are checked.
const QUERY_DOCUMENTS: [&str; 2] = ["README.md", "docs/queries.md"];

fn document(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn documented_statements() -> Vec<String> {
    let mut statements = Vec::new();
    let mut in_sql = false;
    let text = QUERY_DOCUMENTS.map(document).join("\n");
    for line in text.lines() {
        match (in_sql, line.trim()) {
            (false, "```sql") => in_sql = true,
            (true, "```") => in_sql = false,
            (true, text) if !text.is_empty() => statements.push(text.to_owned()),
            _ => {}
        }
    }
    statements
}

/// A sort-key condition DynamoDB evaluates as a key condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyCondition {
    BeginsWith(String),
    Between(String, String),
}

impl KeyCondition {
    fn matches(&self, sk: &str) -> bool {
        match self {
            KeyCondition::BeginsWith(prefix) => sk.starts_with(prefix.as_str()),
            KeyCondition::Between(low, high) => low.as_str() <= sk && sk <= high.as_str(),
        }
    }

    /// The item family the condition reads: the text before the first `#`.
    fn family(&self) -> &str {
        let bound = match self {
            KeyCondition::BeginsWith(prefix) => prefix,
            KeyCondition::Between(low, _) => low,
        };
        bound.split('#').next().unwrap_or_default()
    }
}

#[derive(Debug)]
struct Statement {
    projection: String,
    /// The index read (`"hsm-audit"."<index>"`), if any: its sort attribute is then the
    /// key condition's.
    index: Option<String>,
    pk: String,
    sk: Option<KeyCondition>,
    filters: Vec<(String, String)>,
}

/// The sort attribute of the table (`sk`) or of an index, and whether it is a number.
fn sort_attribute(index: Option<&str>) -> (&'static str, bool) {
    match index {
        None => ("sk", false),
        Some(items::BY_TIME_INDEX) => (items::TIME_KEY, false),
        Some(items::TRAIL_BY_TIME_INDEX) => ("usecs", true),
        Some(other) => panic!("no index {other}"),
    }
}

/// A number as a number key condition names it.
fn number(text: &str) -> Result<String, String> {
    text.trim()
        .parse::<i64>()
        .map(|n| n.to_string())
        .map_err(|_| format!("expected a number, found {text:?}"))
}

/// `'text'` → `text`.
fn quoted(text: &str) -> Result<String, String> {
    text.trim()
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
        .filter(|inner| !inner.contains('\''))
        .map(str::to_owned)
        .ok_or_else(|| format!("expected a quoted string, found {text:?}"))
}

/// Parses the one shape the documents may use:
/// `SELECT <projection> FROM "hsm-audit" WHERE pk = '…' [AND <sk condition>] [AND a = '…']…`.
fn parse(statement: &str) -> Result<Statement, String> {
    let rest = statement
        .strip_prefix("SELECT ")
        .ok_or("does not start with SELECT")?;
    let (projection, from_where) = rest
        .split_once(" FROM \"hsm-audit\"")
        .ok_or("no FROM \"hsm-audit\"")?;
    let (index, where_clause) = match from_where.strip_prefix(" WHERE ") {
        Some(clause) => (None, clause),
        None => {
            let (index, clause) = from_where
                .strip_prefix(".\"")
                .and_then(|rest| rest.split_once("\" WHERE "))
                .ok_or("no WHERE")?;
            (Some(index.to_owned()), clause)
        }
    };
    if index
        .as_deref()
        .is_some_and(|index| index != items::BY_TIME_INDEX && index != items::TRAIL_BY_TIME_INDEX)
    {
        return Err(format!("{index:?} is not an index of the table"));
    }
    let (attribute, numeric) = sort_attribute(index.as_deref());
    let value = |text: &str| if numeric { number(text) } else { quoted(text) };
    let mut parts = where_clause.split(" AND ");
    let pk = parts
        .next()
        .and_then(|first| first.strip_prefix("pk = "))
        .ok_or("the first condition is not pk = '…'")
        .and_then(|value| quoted(value).map_err(|_| "pk is not a quoted string"))?;
    let mut sk = None;
    let mut filters = Vec::new();
    while let Some(part) = parts.next() {
        let condition = if let Some(args) = part
            .strip_prefix(format!("begins_with(\"{attribute}\", ").as_str())
            .and_then(|args| args.strip_suffix(')'))
            .filter(|_| !numeric)
        {
            Some(KeyCondition::BeginsWith(quoted(args)?))
        } else if let Some(low) = part.strip_prefix(format!("\"{attribute}\" BETWEEN ").as_str()) {
            // BETWEEN's own AND split the condition in two.
            let high = parts.next().ok_or("BETWEEN without AND")?;
            Some(KeyCondition::Between(value(low)?, value(high)?))
        } else {
            let (name, value) = part
                .split_once(" = ")
                .ok_or_else(|| format!("{part:?} is neither a key condition nor a filter"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(format!(
                    "{part:?}: filter on something else than an attribute"
                ));
            }
            if name == "pk" || name == "sk" {
                return Err(format!("{part:?}: a second condition on the key"));
            }
            filters.push((name.to_owned(), quoted(value)?));
            None
        };
        if let Some(condition) = condition {
            if sk.is_some() {
                return Err("two conditions on sk".into());
            }
            if !filters.is_empty() {
                return Err("the sk condition comes before the filters".into());
            }
            sk = Some(condition);
        }
    }
    Ok(Statement {
        projection: projection.to_owned(),
        index,
        pk,
        sk,
        filters,
    })
}

/// The statement as a `Query`: the same key condition and filters, every page.
async fn query(store: &DynamoStore, statement: &Statement) -> Vec<Item> {
    let mut key_condition = "#pk = :pk".to_owned();
    let (attribute, numeric) = sort_attribute(statement.index.as_deref());
    let value = |text: &String| {
        if numeric {
            AttributeValue::N(text.clone())
        } else {
            AttributeValue::S(text.clone())
        }
    };
    let mut request = store
        .client()
        .query()
        .table_name(store.table())
        .set_index_name(statement.index.clone())
        // An index is never read consistently.
        .consistent_read(statement.index.is_none())
        .expression_attribute_names("#pk", "pk")
        .expression_attribute_values(":pk", AttributeValue::S(statement.pk.clone()));
    match &statement.sk {
        Some(KeyCondition::BeginsWith(prefix)) => {
            key_condition.push_str(" AND begins_with(#sk, :prefix)");
            request = request
                .expression_attribute_names("#sk", attribute)
                .expression_attribute_values(":prefix", value(prefix));
        }
        Some(KeyCondition::Between(low, high)) => {
            key_condition.push_str(" AND #sk BETWEEN :low AND :high");
            request = request
                .expression_attribute_names("#sk", attribute)
                .expression_attribute_values(":low", value(low))
                .expression_attribute_values(":high", value(high));
        }
        None => {}
    }
    let mut filter = Vec::new();
    for (index, (name, value)) in statement.filters.iter().enumerate() {
        filter.push(format!("#f{index} = :f{index}"));
        request = request
            .expression_attribute_names(format!("#f{index}"), name)
            .expression_attribute_values(format!(":f{index}"), AttributeValue::S(value.clone()));
    }
    if !filter.is_empty() {
        request = request.filter_expression(filter.join(" AND "));
    }
    let request = request.key_condition_expression(key_condition);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = request
            .clone()
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{statement:?}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error)
                )
            });
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn text(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(text)) => text.clone(),
        Some(AttributeValue::N(number)) => number.clone(),
        _ => String::new(),
    }
}

/// Whether the statement filters on `item_type = wanted`.
fn wants(statement: &Statement, wanted: &str) -> bool {
    statement
        .filters
        .iter()
        .any(|(name, value)| name == "item_type" && value == wanted)
}

/// Whether a domain object (as JSON) passes the statement's filters other than
/// `item_type`, which the family of the key condition already fixes.
fn passes(statement: &Statement, object: &Value) -> bool {
    statement
        .filters
        .iter()
        .filter(|(name, _)| name != "item_type")
        .all(|(name, value)| object.get(name).and_then(Value::as_str) == Some(value.as_str()))
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("domain objects serialize")
}

fn item_type_is(statement: &Statement, wanted: &str) {
    for (name, value) in &statement.filters {
        if name == "item_type" {
            assert_eq!(value, wanted, "{statement:?}: item_type of another family");
        }
    }
}

fn sort_keys<'a>(items: impl IntoIterator<Item = &'a Item>) -> Vec<String> {
    items.into_iter().map(|item| text(item, "sk")).collect()
}

/// A family whose heads (sessions, keys) each stand before their events' items: a
/// statement asks for the heads or for the events by `item_type`.
struct HeadsAndEvents<T> {
    head_type: &'static str,
    event_type: &'static str,
    head_sk: fn(&T) -> String,
    event_sks: fn(&T) -> Vec<String>,
}

const SESSIONS: HeadsAndEvents<ClusterSession> = HeadsAndEvents {
    head_type: "session",
    event_type: "session_event",
    head_sk: items::session_sk,
    event_sks: |session| {
        let sk = |event| items::session_event_sk(session, event);
        session.events.iter().map(sk).collect()
    },
};

const KEYS: HeadsAndEvents<KeyGeneration> = HeadsAndEvents {
    head_type: "key",
    event_type: "key_event",
    head_sk: items::key_sk,
    event_sks: |key| {
        key.events
            .iter()
            .map(|event| items::key_event_sk(key, event))
            .collect()
    },
};

impl<T: serde::Serialize> HeadsAndEvents<T> {
    /// The sort keys of the heads (or their events) that pass the statement's filters and
    /// its range, and those of the items of that type the `Query` returned.
    fn expected_and_found(
        &self,
        statement: &Statement,
        heads: &[T],
        in_range: &impl Fn(&str) -> bool,
        found: &[Item],
    ) -> (Vec<String>, Vec<String>) {
        let events = wants(statement, self.event_type);
        if !events {
            item_type_is(statement, self.head_type);
        }
        let expected = heads
            .iter()
            .filter(|head| passes(statement, &json(head)))
            .flat_map(|head| {
                if events {
                    (self.event_sks)(head)
                } else {
                    vec![(self.head_sk)(head)]
                }
            })
            .filter(|key| in_range(key))
            .collect();
        let wanted = if events {
            self.event_type
        } else {
            self.head_type
        };
        let found = found
            .iter()
            .filter(|item| text(item, "item_type") == wanted);
        (expected, sort_keys(found))
    }
}

/// What the store's own queries say the statement must return, as sorted identities,
/// and the same identities of the items the `Query` returned.
async fn expected_and_found(
    store: &DynamoStore,
    statement: &Statement,
    found: &[Item],
) -> (Vec<String>, Vec<String>) {
    let cluster = statement
        .pk
        .split_once('#')
        .map(|(_, cluster)| cluster.to_owned())
        .unwrap_or_default();
    let sk = statement.sk.clone();
    let in_range = |key: &str| sk.as_ref().is_none_or(|condition| condition.matches(key));
    if statement.index.is_some() {
        let mut result = index_expected(store, statement, &cluster, found).await;
        result.0.sort();
        result.1.sort();
        return result;
    }
    let item_type = |wanted: &str| item_type_is(statement, wanted);
    let mut result: (Vec<String>, Vec<String>) = match sk.as_ref().map(KeyCondition::family) {
        // A session's or key's events are items after its own: the statement asks for one
        // or the other by `item_type`.
        Some("SESSION") => {
            let sessions = store
                .sessions(&cluster, None, None, None)
                .await
                .expect("sessions");
            SESSIONS.expected_and_found(statement, &sessions, &in_range, found)
        }
        Some("KEY") => {
            let keys = store.keys(&cluster, None).await.expect("keys");
            KEYS.expected_and_found(statement, &keys, &in_range, found)
        }
        Some("HSM") => {
            item_type("audit_record");
            let trail = store.trail(&cluster, None).await.expect("trail");
            let expected = trail
                .iter()
                .map(|entry| items::identity_sk(&entry.identity()))
                .filter(|key| in_range(key.as_str()))
                .collect();
            (expected, sort_keys(found))
        }
        // The store does not expose these items' sort keys; the key's readable stem (the
        // part a range in a console query names) and the user identify them.
        Some("FAILED_LOGIN") => {
            item_type("failed_login");
            let logins = store
                .failed_logins(&cluster, None, None)
                .await
                .expect("failed logins");
            let expected = logins
                .iter()
                .filter(|l| passes(statement, &json(l)))
                .filter(|l| in_range(&format!("FAILED_LOGIN#{}#{}#", l.time.iso(), l.hsm)))
                .map(|l| format!("{}#{}#{}", l.time.iso(), l.hsm, l.user))
                .collect();
            let found = found
                .iter()
                .map(|i| format!("{}#{}#{}", text(i, "time"), text(i, "hsm"), text(i, "user")))
                .collect();
            (expected, found)
        }
        Some("ALERT") => {
            item_type("alert");
            let alerts = store.alerts(&cluster).await.expect("alerts");
            let expected = alerts
                .iter()
                .filter(|a| passes(statement, &json(a)))
                .filter(|a| in_range(&format!("ALERT#{}#{}#", a.time.iso(), a.kind.as_str())))
                .map(|a| format!("{}#{}#{}", a.time.iso(), a.kind.as_str(), json(a)["seq"]))
                .collect();
            let found = found
                .iter()
                .map(|i| {
                    let seq = match i.get("seq") {
                        Some(AttributeValue::N(seq)) => seq.clone(),
                        _ => "null".to_owned(),
                    };
                    format!("{}#{}#{seq}", text(i, "time"), text(i, "kind"))
                })
                .collect();
            (expected, found)
        }
        Some("QUORUM") => {
            let quorum = store.quorum(&cluster).await.expect("quorum");
            let tokens = quorum
                .tokens
                .iter()
                .map(|t| format!("QUORUM#TOKEN#{}#{}", t.time.iso(), t.seq));
            let settings = quorum
                .m_values
                .iter()
                .map(|m| format!("QUORUM#M_VALUE#{}#{}", m.step.time.iso(), m.step.seq));
            let expected = tokens
                .chain(settings)
                .filter(|key| in_range(key.as_str()))
                .collect();
            let found = found
                .iter()
                .map(|i| {
                    let kind = if text(i, "item_type") == "quorum_token" {
                        "TOKEN"
                    } else {
                        "M_VALUE"
                    };
                    format!("QUORUM#{kind}#{}#{}", text(i, "time"), text(i, "seq"))
                })
                .collect();
            (expected, found)
        }
        None if statement.pk == items::QUARANTINE_PK => {
            let quarantined = store.quarantined().await.expect("quarantine");
            let expected = quarantined
                .iter()
                .filter(|q| passes(statement, &json(q)))
                .map(|q| q.reason.clone())
                .collect();
            let found = found.iter().map(|i| text(i, "reason")).collect();
            (expected, found)
        }
        other => panic!("{statement:?}: no store query reads the family {other:?}"),
    };
    result.0.sort();
    result.1.sort();
    result
}

/// What an index statement must return, by the items' sort keys: the whole lists, each
/// item's index key computed and held to the condition.
async fn index_expected(
    store: &DynamoStore,
    statement: &Statement,
    cluster: &str,
    found: &[Item],
) -> (Vec<String>, Vec<String>) {
    let condition = statement.sk.clone().expect("a key condition");
    let found_items = found;
    let found: Vec<String> = found.iter().map(|item| text(item, "sk")).collect();
    if statement.index.as_deref() == Some(items::TRAIL_BY_TIME_INDEX) {
        let KeyCondition::Between(low, high) = &condition else {
            panic!("{statement:?}: usecs is a number range")
        };
        let (low, high): (i64, i64) = (low.parse().expect("low"), high.parse().expect("high"));
        let trail = store.trail(cluster, None).await.expect("trail");
        let expected = trail
            .iter()
            .filter(|entry| (low..=high).contains(&entry.record.time().micros()))
            .map(|entry| items::identity_sk(&entry.identity()))
            .collect();
        return (expected, found);
    }
    let expected = match condition.family() {
        "SESSION" => store
            .sessions(cluster, None, None, None)
            .await
            .expect("sessions")
            .iter()
            .filter(|s| condition.matches(&format!("SESSION#{}", s.login_time.iso())))
            .map(items::session_sk)
            .collect(),
        "KEY_EVENT" => store
            .keys(cluster, None)
            .await
            .expect("keys")
            .iter()
            .flat_map(|key| {
                key.events
                    .iter()
                    .filter(|e| condition.matches(&format!("KEY_EVENT#{}", e.time.iso())))
                    .map(|event| items::key_event_sk(key, event))
                    .collect::<Vec<_>>()
            })
            .collect(),
        "ALERT" => {
            let alerts = store.alerts(cluster).await.expect("alerts");
            let wanted: Vec<String> = alerts
                .iter()
                .filter(|alert| condition.matches(&items::alert_time_key(alert)))
                .map(items::alert_time_key)
                .collect();
            // An alert's sort key does not show its kind first; its time key does.
            let found_keys = found_items
                .iter()
                .map(|item| text(item, items::TIME_KEY))
                .collect();
            return (wanted, found_keys);
        }
        other => panic!("{statement:?}: no window reads the family {other:?}"),
    };
    (expected, found)
}

#[tokio::test]
async fn every_documented_statement_is_a_key_condition_query_that_returns_what_the_store_does() {
    let store = fresh_store("console").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .expect("sample event");
    }
    let statements = documented_statements();
    assert!(
        statements.len() >= 12,
        "the console queries of {QUERY_DOCUMENTS:?}: {statements:#?}"
    );
    let mut results = Vec::new();
    for line in &statements {
        let statement = parse(line).unwrap_or_else(|problem| panic!("{line}\n  {problem}"));
        // A statement on a cluster's partition without a key condition on sk reads (and
        // bills) every session, key, failed login and alert of the cluster.
        if statement.pk != items::QUARANTINE_PK {
            assert!(statement.sk.is_some(), "{line}\n  no key condition on sk");
        }
        let found = query(&store, &statement).await;
        assert!(
            !found.is_empty(),
            "{line}\n  returns nothing from the samples"
        );
        if statement.projection != "*" {
            for attribute in statement.projection.split(", ") {
                assert!(
                    found.iter().all(|item| item.contains_key(attribute)),
                    "{line}\n  not every item has {attribute}"
                );
            }
        }
        let (expected, returned) = expected_and_found(&store, &statement, &found).await;
        assert_eq!(returned, expected, "{line}");
        results.push(found);
    }

    // What the documents' prose promises of a few of them, on the samples.
    let sessions = &results[0];
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| text(s, "user") == "testuser"));
    let opcodes: Vec<String> = results[1].iter().map(|e| text(e, "opcode")).collect();
    assert!(
        opcodes.len() >= 4 && opcodes[0] == "CN_LOGIN",
        "login, generate, extract, insert: {opcodes:?}"
    );
    assert_eq!(text(&results[2][0], "handle"), "262152");
    let users: Vec<String> = results[3].iter().map(|f| text(f, "user")).collect();
    assert_eq!(users, ["ExampleUser", "testuser"]);
    let sequence: Vec<String> = results[6].iter().map(|r| text(r, "sequence_no")).collect();
    assert_eq!(sequence, ["0", "1", "2", "4", "5", "11"], "sort-key order");
    let luna_failed_logins = statements
        .iter()
        .position(|line| line.contains("'FAILED_LOGIN#2022-10-30T14'"))
        .map(|index| &results[index])
        .expect("the Luna failed logins' query");
    assert_eq!(luna_failed_logins.len(), 5);
    assert!(
        luna_failed_logins
            .iter()
            .all(|f| f.get("brute_force") == Some(&AttributeValue::Bool(true)))
    );
}

#[test]
fn the_statement_check_refuses_what_dynamodb_would_not_run_as_a_key_condition() {
    for (statement, problem) in [
        (
            "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#c' AND contains(\"sk\", 'KEY#1#')",
            "neither a key condition nor a filter",
        ),
        (
            "SELECT * FROM \"hsm-audit\" WHERE item_type = 'alert'",
            "not pk",
        ),
        (
            "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#c' AND begins_with(\"sk\", 'A') AND begins_with(\"sk\", 'B')",
            "two conditions on sk",
        ),
        (
            "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#c' AND sk > 'A'",
            "neither a key condition nor a filter",
        ),
    ] {
        let error = parse(statement).expect_err(statement);
        assert!(error.contains(problem), "{statement}: {error}");
    }
    let parsed = parse(
        "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#c' AND \"sk\" BETWEEN 'A#1' AND 'A#2' AND kind = 'x'",
    )
    .expect("BETWEEN and a filter");
    assert_eq!(
        parsed.sk,
        Some(KeyCondition::Between("A#1".into(), "A#2".into()))
    );
    assert_eq!(parsed.filters, [("kind".to_owned(), "x".to_owned())]);
}

/// The table of items in `docs/table.md`: (pk pattern, sort-key patterns, item_type) per
/// row.
fn documented_keys() -> Vec<(String, Vec<String>, String)> {
    let code = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    document("docs/table.md")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let pk = code(cells.first()?).into_iter().next()?;
            let sort_keys = code(cells.get(1)?);
            let item_type = code(cells.get(2)?).into_iter().next()?;
            (pk.contains('#') || pk == items::QUARANTINE_PK).then_some((pk, sort_keys, item_type))
        })
        .collect()
}

/// `<name>` stands for one `#`-separated part, `…` for any number (at least one).
fn key_matches(pattern: &str, key: &str) -> bool {
    fn parts(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.first(), key.first()) {
            (None, None) => true,
            (Some(&"…"), _) => (1..=key.len()).any(|n| parts(&pattern[1..], &key[n..])),
            (Some(p), Some(k)) if p.starts_with('<') && p.ends_with('>') => {
                !k.is_empty() && parts(&pattern[1..], &key[1..])
            }
            (Some(p), Some(k)) => p == k && parts(&pattern[1..], &key[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('#').collect();
    let key: Vec<&str> = key.split('#').collect();
    parts(&pattern, &key)
}

#[tokio::test]
async fn every_stored_item_has_the_sort_key_docs_table_documents() {
    let store = fresh_store("console-keys").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .expect("sample event");
    }
    let documented = documented_keys();
    assert!(documented.len() >= 8, "{documented:#?}");
    let mut checked: HashMap<String, usize> = HashMap::new();
    for item in scan_all(&store).await {
        let (pk, sk, item_type) = (
            text(&item, "pk"),
            text(&item, "sk"),
            text(&item, "item_type"),
        );
        let rows: Vec<_> = documented
            .iter()
            .filter(|(pk_pattern, _, documented_type)| {
                *documented_type == item_type && key_matches(pk_pattern, &pk)
            })
            .collect();
        // Continuation items and the like are described in prose, not in a row.
        if rows.is_empty() {
            continue;
        }
        assert!(
            rows.iter()
                .any(|(_, patterns, _)| patterns.iter().any(|p| key_matches(p, &sk))),
            "{item_type} item {pk} / {sk} matches none of the sort keys of docs/table.md {rows:?}"
        );
        *checked.entry(item_type).or_default() += 1;
    }
    for item_type in [
        "audit_record",
        "session",
        "key",
        "failed_login",
        "alert",
        "stream",
        "quarantined",
    ] {
        assert!(
            checked.get(item_type).is_some_and(|n| *n > 0),
            "no {item_type} item checked: {checked:?}"
        );
    }
}

#[test]
fn key_patterns_match_by_part() {
    assert!(key_matches("ALERT#<time>#<kind>", "ALERT#2018#reboot"));
    assert!(!key_matches("ALERT#<time>#<kind>", "ALERT#2018#reboot#abc"));
    assert!(!key_matches("ALERT#<time>#<kind>", "ALERT#2018"));
    assert!(key_matches(
        "CONFLICT#HSM#…#<sha256>",
        "CONFLICT#HSM#h#RC#1#SEQ#2#ff"
    ));
    assert!(!key_matches("CONFLICT#HSM#…#<sha256>", "CONFLICT#HSM#ff"));
}
