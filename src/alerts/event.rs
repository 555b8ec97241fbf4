//! One EventBridge event per alert: `source` `hsm-audit`, a `detail-type` per kind, and a
//! `detail` that answers "which cluster, which user, which HSM, which record" without
//! the CLI, and says how to see more.

use serde::Serialize;

use super::{Severity, StoredAlert, detail_type, severity};
use crate::domain::{Alert, AlertKind};
use crate::model::Timestamp;

/// The events' `source`, what a rule's `source` pattern names.
pub const SOURCE: &str = "hsm-audit";

/// A `PutEvents` entry, apart from the bus and the SDK's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub detail_type: &'static str,
    /// The `detail` object, as JSON text.
    pub detail: String,
    /// The alert's time: the event's `time`.
    pub time: Timestamp,
}

/// The `detail` object: the alert as `hsm-audit alerts --output json` lists it, and
/// where it came from.
#[derive(Debug, Serialize)]
struct Detail<'a> {
    /// The alert item's sort key: the same alert always has the same id.
    id: &'a str,
    cluster: &'a str,
    severity: Severity,
    #[serde(flatten)]
    alert: &'a Alert,
    /// First and last sequence number the alert is about (a gap's missing ones).
    sequence_range: Option<[u64; 2]>,
    log_event_ids: &'a [String],
    cli_command: String,
    console_query: String,
}

pub fn event(stored: &StoredAlert) -> AlertEvent {
    let alert = &stored.alert;
    let sequence_range = match (alert.kind, alert.from, alert.to, alert.seq) {
        (AlertKind::SequenceGap, Some(from), Some(to), _) => Some([from, to]),
        (_, _, _, Some(seq)) => Some([seq, seq]),
        _ => None,
    };
    let detail = Detail {
        id: &stored.id,
        cluster: &stored.cluster,
        severity: severity(alert),
        alert,
        sequence_range,
        log_event_ids: &stored.log_event_ids,
        cli_command: stored.cli_command(),
        console_query: stored.console_query(),
    };
    AlertEvent {
        detail_type: detail_type(alert.kind),
        // A struct of strings, numbers and options: serializing it cannot fail.
        detail: serde_json::to_string(&detail).unwrap_or_default(),
        time: alert.time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::{gap, stored};

    #[test]
    fn a_gap_event_names_the_cluster_hsm_range_records_and_where_to_look() {
        let event = event(&stored(gap()));
        assert_eq!(event.detail_type, "Sequence gap");
        assert_eq!(event.time, gap().time);
        let detail: serde_json::Value = serde_json::from_str(&event.detail).expect("JSON");
        assert_eq!(
            detail,
            serde_json::json!({
                "id": "ALERT#2018-01-24T00:39:23.172777Z#sequence_gap#x",
                "cluster": "cluster-demo",
                "severity": "MEDIUM",
                "kind": "sequence_gap",
                "time": "2018-01-24T00:39:23.172777Z",
                "hsm": "hsm-abcde123456",
                "reboot_counter": 7,
                "from": 32,
                "to": 34,
                "seq": null,
                "user": null,
                "opcode": null,
                "detail": "3 records missing",
                "sequence_range": [32, 34],
                "log_event_ids": ["3698"],
                "cli_command": "hsm-audit alerts --cluster cluster-demo --output json",
                "console_query": "SELECT * FROM \"hsm-audit\" WHERE pk = 'CLUSTER#cluster-demo' AND \"sk\" = 'ALERT#2018-01-24T00:39:23.172777Z#sequence_gap#x'",
            })
        );
    }

    #[test]
    fn a_single_record_alert_has_a_range_of_one() {
        let login = Alert {
            kind: AlertKind::BruteForce,
            from: None,
            to: None,
            seq: Some(9),
            user: Some("alice".to_owned()),
            ..gap()
        };
        let event = event(&stored(login));
        assert_eq!(event.detail_type, "Brute force");
        let detail: serde_json::Value = serde_json::from_str(&event.detail).expect("JSON");
        assert_eq!(detail["sequence_range"], serde_json::json!([9, 9]));
        assert_eq!(detail["severity"], "HIGH");
        assert_eq!(detail["user"], "alice");
    }
}
