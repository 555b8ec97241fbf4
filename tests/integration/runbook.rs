//! `docs/runbook.md` has an entry for every alarm of `template.yaml` and every alert kind
//! of the code, and none for one that no longer exists. The lists come from their
//! sources: the template's resources of type `AWS::CloudWatch::Alarm`, and the variants of
//! `AlertKind` as its source file declares them (each checked to be a kind the code
//! reads, by name) — nothing is copied here.

use std::collections::BTreeSet;

use crate::common::repo_path;
use hsm_audit::domain::AlertKind;

/// The parts every entry must have, in the runbook's words.
const PARTS: [&str; 4] = [
    "**Means.**",
    "**First look.**",
    "**False positive.**",
    "**Do.**",
];

#[test]
fn every_alarm_and_alert_kind_has_a_runbook_entry() {
    let runbook = read("docs/runbook.md");
    let alarms = template_alarms(&read("template.yaml"));
    let kinds = alert_kinds();
    assert!(alarms.len() >= 10, "the template's alarms: {alarms:?}");
    assert!(kinds.len() >= 5, "the alert kinds: {kinds:?}");

    for (section, expected) in [("## Alarms", &alarms), ("## Alert kinds", &kinds)] {
        let entries = entries(&runbook, section);
        let named: BTreeSet<String> = entries
            .iter()
            .flat_map(|(names, _)| names.clone())
            .collect();
        let missing: Vec<_> = expected.difference(&named).collect();
        let stale: Vec<_> = named.difference(expected).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "docs/runbook.md, {section}: no entry for {missing:?}; entries for what does not \
             exist {stale:?}"
        );
        for (names, body) in &entries {
            let absent: Vec<_> = PARTS.iter().filter(|part| !body.contains(*part)).collect();
            assert!(absent.is_empty(), "the entry {names:?} lacks {absent:?}");
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The resources of type `AWS::CloudWatch::Alarm`: a resource is a two-space-indented
/// name under `Resources:`, its type a `Type:` line of its own block.
fn template_alarms(template: &str) -> BTreeSet<String> {
    let mut alarms = BTreeSet::new();
    let mut in_resources = false;
    let mut resource: Option<&str> = None;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_resources = line.trim_end() == "Resources:";
            resource = None;
        } else if in_resources {
            if let Some(name) = line
                .strip_prefix("  ")
                .filter(|rest| !rest.starts_with([' ', '#']))
                .and_then(|rest| rest.trim_end().strip_suffix(':'))
            {
                resource = Some(name);
            } else if line.trim() == "Type: AWS::CloudWatch::Alarm" {
                alarms.extend(resource.map(str::to_owned));
            }
        }
    }
    alarms
}

/// `AlertKind`'s variants, read from the file that declares the enum, as the names
/// alerts carry (`BruteForce` is `brute_force`). Each must deserialize as a kind and
/// name itself the same, so a variant misread here cannot pass.
fn alert_kinds() -> BTreeSet<String> {
    let source = read("src/domain/mod.rs");
    let body = source
        .split_once("pub enum AlertKind {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("src/domain/mod.rs declares `pub enum AlertKind`");
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//") && !line.starts_with('#'))
        .map(|line| {
            let variant = line.trim_end_matches(',');
            let name = snake_case(variant);
            let kind: AlertKind = serde_json::from_value(serde_json::json!(name))
                .unwrap_or_else(|error| panic!("{variant} as {name:?}: {error}"));
            assert_eq!(kind.as_str(), name, "the kind {variant}");
            name
        })
        .collect()
}

fn snake_case(camel: &str) -> String {
    let mut snake = String::new();
    for (at, c) in camel.char_indices() {
        if c.is_ascii_uppercase() && at > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// The entries of one `##` section: each `###` heading's backquoted names (one entry may
/// serve several) and its text up to the next heading.
fn entries(runbook: &str, section: &str) -> Vec<(Vec<String>, String)> {
    let (_, rest) = runbook
        .split_once(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("docs/runbook.md has no section {section:?}"));
    let section = rest.split("\n## ").next().unwrap_or_default();
    section
        .split("\n### ")
        .skip(1)
        .map(|entry| {
            let (heading, body) = entry.split_once('\n').unwrap_or((entry, ""));
            let names = heading
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (names, body.to_owned())
        })
        .collect()
}
