//! Runs every PartiQL statement of the README, exactly as written there, against the
//! local DynamoDB holding the sample events, and checks what each returns.

use crate::common::*;
use aws_sdk_dynamodb::types::AttributeValue;
use hsm_audit::lambda::handle;

const CLUSTER: &str = "cluster-demo";

fn readme_statements() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let mut statements = Vec::new();
    let mut in_sql = false;
    for line in readme.lines() {
        match (in_sql, line.trim()) {
            (false, "```sql") => in_sql = true,
            (true, "```") => in_sql = false,
            (true, text) if !text.is_empty() => statements.push(text.to_owned()),
            _ => {}
        }
    }
    statements
}

async fn execute(store: &hsm_audit::store::dynamodb::DynamoStore, statement: &str) -> Vec<Item> {
    let statement = statement.replace("\"hsm-audit\"", &format!("\"{}\"", store.table()));
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .client()
            .execute_statement()
            .statement(&statement)
            .set_next_token(token)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{statement}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(error)
                )
            });
        items.extend(page.items.unwrap_or_default());
        token = page.next_token;
        if token.is_none() {
            return items;
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn number(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn every_readme_statement_returns_what_it_promises() {
    let store = fresh_store("console").await;
    let config = config_for(&store);
    for (_, event) in sample_events() {
        handle(event, &store, &config).await.expect("sample event");
    }
    let statements = readme_statements();
    assert_eq!(
        statements.len(),
        13,
        "the README's console queries: {statements:#?}"
    );

    let sessions = execute(&store, &statements[0]).await;
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions
            .iter()
            .all(|s| text(s, "item_type") == "session" && text(s, "user") == "testuser")
    );

    let expected = store
        .sessions(CLUSTER, Some("testuser"), None, None)
        .await
        .expect("sessions");
    let first = expected
        .iter()
        .find(|s| s.origin_hsm == "hsm-abcde123456")
        .expect("the sync session");
    let events = execute(&store, &statements[1]).await;
    assert_eq!(events.len(), 1);
    let listed = events[0]
        .get("events")
        .and_then(|v| v.as_l().ok())
        .expect("events list");
    assert_eq!(listed.len(), first.events.len());
    assert!(
        listed.len() >= 4,
        "login, generate, extract, insert: {listed:?}"
    );

    let key = execute(&store, &statements[2]).await;
    assert_eq!(key.len(), 1);
    assert_eq!(text(&key[0], "state"), "active");
    assert_eq!(number(&key[0], "handle"), 262152);
    let hsms = key[0]
        .get("hsms")
        .and_then(|v| v.as_l().ok())
        .expect("hsms");
    assert_eq!(hsms.len(), 2, "created on one HSM, inserted on the other");

    let failed = execute(&store, &statements[3]).await;
    let users: Vec<&str> = failed.iter().map(|f| text(f, "user")).collect();
    assert_eq!(users, ["ExampleUser", "testuser"]);

    let alerts = store.alerts(CLUSTER).await.expect("alerts");
    assert_eq!(execute(&store, &statements[4]).await.len(), alerts.len());
    let gaps = execute(&store, &statements[5]).await;
    assert_eq!(
        gaps.len(),
        alerts
            .iter()
            .filter(|a| a.kind.as_str() == "sequence_gap")
            .count()
    );
    assert!(!gaps.is_empty() && gaps.iter().all(|g| text(g, "kind") == "sequence_gap"));

    let trail = execute(&store, &statements[6]).await;
    let sequence: Vec<u64> = trail.iter().map(|r| number(r, "sequence_no")).collect();
    assert_eq!(sequence, [0x0, 0x1, 0x2, 0x4, 0x5, 0xb]);
    assert!(
        trail
            .iter()
            .all(|r| r.get("hsm") == Some(&AttributeValue::S("hsm-abcde123456".into())))
    );

    let quarantined = execute(&store, &statements[7]).await;
    assert_eq!(quarantined.len(), 1);
    assert!(text(&quarantined[0], "reason").contains("not an audit record"));

    let luna_sessions = execute(&store, &statements[8]).await;
    assert_eq!(luna_sessions.len(), 1);
    assert_eq!(
        text(&luna_sessions[0], "user"),
        "d5fa3ace-a79f-40ba-8e21-3ebf0bf0250a"
    );
    let luna_object = execute(&store, &statements[9]).await;
    assert_eq!(luna_object.len(), 1);
    assert_eq!(text(&luna_object[0], "state"), "destroyed");
    assert_eq!(text(&luna_object[0], "object_id"), "0a0100000f000000");
    let luna_failed = execute(&store, &statements[10]).await;
    assert_eq!(luna_failed.len(), 5);
    assert!(
        luna_failed
            .iter()
            .all(|f| f.get("brute_force") == Some(&AttributeValue::Bool(true)))
    );
    let luna_sensitive = execute(&store, &statements[11]).await;
    let opcodes: Vec<&str> = luna_sensitive.iter().map(|a| text(a, "opcode")).collect();
    assert!(
        opcodes.contains(&"LUNA_PARTITION_ZEROIZE") && opcodes.contains(&"LUNA_WRAP_KEY"),
        "{opcodes:?}"
    );

    let tokens = execute(&store, &statements[12]).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(text(&tokens[0], "requested_by"), "admin");
    assert_eq!(text(&tokens[0], "ended_by"), "CN_DELETE_TOKEN");
    let approvers = tokens[0]
        .get("approved_by")
        .and_then(|v| v.as_l().ok())
        .expect("approved_by");
    assert_eq!(approvers, &vec![AttributeValue::S("carol".into())]);
    assert_eq!(
        store
            .quorum("cluster-later")
            .await
            .expect("quorum")
            .tokens
            .len(),
        1
    );
}
