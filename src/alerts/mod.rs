//! An alert as the security team's tools take it: an EventBridge event ([`event`]) and a
//! Security Hub finding ([`finding`]). Pure functions of the alert and of where it is
//! stored; `crate::publish` only sends what they build.
//!
//! Design decision: **the alert's sort key is its identity outside the table.** It is
//! deterministic (time, kind, HSM, position, user and a digest of the content), so a
//! re-derivation finds the same key, the publisher's idempotency mark is keyed on it,
//! and a finding's `Id` made from it is stable across re-imports.

pub mod event;
pub mod finding;

use serde::Serialize;

use crate::domain::{Alert, AlertKind};
use crate::model::Opcode;
use crate::store::RecordPosition;
use crate::store::dynamodb::items;

/// How urgent an alert is, in the labels ASFF and most SIEMs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
        }
    }
}

/// Brute force, tampering (a conflicting duplicate), destruction of the whole HSM's
/// content and a weakened quorum ask for someone now; a gap or another sensitive
/// operation or an HSM clock ahead of time for a look today; what explains itself (a
/// reboot, a late record) can wait.
pub fn severity(alert: &Alert) -> Severity {
    match alert.kind {
        AlertKind::BruteForce | AlertKind::ConflictingDuplicate | AlertKind::QuorumLowered => {
            Severity::High
        }
        AlertKind::SensitiveOperation if is_destruction(alert) => Severity::High,
        AlertKind::SequenceGap
        | AlertKind::SensitiveOperation
        | AlertKind::CertificateStorageError
        | AlertKind::ClockSkew => Severity::Medium,
        AlertKind::Reboot | AlertKind::LateRecord | AlertKind::AbandonedSession => Severity::Low,
    }
}

/// Whether the alert is an operation that destroys keys or users (zeroize, user deletion).
pub fn is_destruction(alert: &Alert) -> bool {
    matches!(
        alert.opcode,
        Some(Opcode::Zeroize | Opcode::DeleteUser | Opcode::DestroyObject)
    )
}

/// The event's `detail-type`: what a rule matches on, and what a person reads first.
pub fn detail_type(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::BruteForce => "Brute force",
        AlertKind::SequenceGap => "Sequence gap",
        AlertKind::ConflictingDuplicate => "Conflicting duplicate",
        AlertKind::SensitiveOperation => "Sensitive operation",
        AlertKind::Reboot => "Reboot",
        AlertKind::AbandonedSession => "Abandoned session",
        AlertKind::CertificateStorageError => "Certificate storage error",
        AlertKind::LateRecord => "Late record",
        AlertKind::QuorumLowered => "Quorum lowered",
        AlertKind::ClockSkew => "Clock skew",
    }
}

/// An alert and where it is stored: what every representation of it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlert {
    pub cluster: String,
    pub table: String,
    /// The alert item's sort key (`ALERT#…`).
    pub id: String,
    pub alert: Alert,
    /// CloudWatch Logs event ids of the records involved ([`involved_records`]) that
    /// the trail holds.
    pub log_event_ids: Vec<String>,
    /// No longer derived: a gap that late records closed, a burst or gap superseded by
    /// its grown self. Its finding is archived.
    pub archived: bool,
}

impl StoredAlert {
    /// The PartiQL statement that shows the alert item in the DynamoDB console.
    pub fn console_query(&self) -> String {
        format!(
            "SELECT * FROM \"{}\" WHERE pk = '{}' AND \"sk\" = '{}'",
            self.table,
            quote_sql(&items::cluster_pk(&self.cluster)),
            quote_sql(&self.id)
        )
    }

    /// The command that lists the cluster's alerts, this one among them.
    pub fn cli_command(&self) -> String {
        format!(
            "hsm-audit alerts --cluster {} --output json",
            quote_shell(&self.cluster)
        )
    }
}

/// The trail records an alert is about: its record, or the two that bound a gap.
pub fn involved_records(alert: &Alert) -> Vec<RecordPosition> {
    let (Some(hsm), Some(boot)) = (&alert.hsm, alert.reboot_counter) else {
        return Vec::new();
    };
    match (alert.kind, alert.seq, alert.from, alert.to) {
        (AlertKind::SequenceGap, _, Some(from), Some(to)) => from
            .checked_sub(1)
            .into_iter()
            .chain(to.checked_add(1))
            .map(|seq| (hsm.clone(), boot, seq))
            .collect(),
        (_, Some(seq), _, _) => vec![(hsm.clone(), boot, seq)],
        _ => Vec::new(),
    }
}

fn quote_sql(text: &str) -> String {
    text.replace('\'', "''")
}

/// Cluster ids are `cluster-<id>`; anything else from the input is quoted for a POSIX
/// shell, so the command can be pasted as it reads.
fn quote_shell(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Timestamp;

    pub(crate) fn gap() -> Alert {
        Alert {
            kind: AlertKind::SequenceGap,
            time: Timestamp(1_516_754_363_172_777),
            hsm: Some("hsm-abcde123456".to_owned()),
            reboot_counter: Some(7),
            from: Some(0x20),
            to: Some(0x22),
            seq: None,
            user: None,
            opcode: None,
            detail: Some("3 records missing".to_owned()),
        }
    }

    pub(crate) fn stored(alert: Alert) -> StoredAlert {
        StoredAlert {
            cluster: "cluster-demo".to_owned(),
            table: "hsm-audit".to_owned(),
            id: "ALERT#2018-01-24T00:39:23.172777Z#sequence_gap#x".to_owned(),
            alert,
            log_event_ids: vec!["3698".to_owned()],
            archived: false,
        }
    }

    #[test]
    fn a_gap_involves_the_records_on_either_side_and_other_alerts_their_own() {
        let hsm = "hsm-abcde123456".to_owned();
        assert_eq!(
            involved_records(&gap()),
            vec![(hsm.clone(), 7, 0x1f), (hsm.clone(), 7, 0x23)]
        );
        let from_zero = Alert {
            from: Some(0),
            ..gap()
        };
        assert_eq!(involved_records(&from_zero), vec![(hsm.clone(), 7, 0x23)]);
        let login = Alert {
            kind: AlertKind::BruteForce,
            from: None,
            to: None,
            seq: Some(9),
            ..gap()
        };
        assert_eq!(involved_records(&login), vec![(hsm, 7, 9)]);
        // A Luna alert has no boot: no record position to look up.
        let luna = Alert {
            reboot_counter: None,
            ..login
        };
        assert!(involved_records(&luna).is_empty());
    }

    #[test]
    fn console_query_and_command_quote_what_came_from_the_input() {
        let mut alert = stored(gap());
        assert_eq!(
            alert.console_query(),
            "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#cluster-demo' AND \"sk\" = 'ALERT#2018-01-24T00:39:23.172777Z#sequence_gap#x'"
        );
        assert_eq!(
            alert.cli_command(),
            "hsm-audit alerts --cluster cluster-demo --output json"
        );
        alert.cluster = "it's".to_owned();
        alert.id = "ALERT#o'clock".to_owned();
        assert!(alert.console_query().ends_with("\"sk\" = 'ALERT#o''clock'"));
        assert_eq!(
            alert.cli_command(),
            r"hsm-audit alerts --cluster 'it'\''s' --output json"
        );
    }

    #[test]
    fn severity_follows_the_kind_and_destruction() {
        let op = |opcode| Alert {
            kind: AlertKind::SensitiveOperation,
            opcode: Some(opcode),
            ..gap()
        };
        assert_eq!(severity(&op(Opcode::Zeroize)), Severity::High);
        assert_eq!(severity(&op(Opcode::WrapKey)), Severity::Medium);
        assert_eq!(severity(&gap()), Severity::Medium);
        let reboot = Alert {
            kind: AlertKind::Reboot,
            ..gap()
        };
        assert_eq!(severity(&reboot), Severity::Low);
    }
}
