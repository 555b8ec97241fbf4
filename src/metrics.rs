//! CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout: CloudWatch Logs
//! extracts them from the function's log, so publishing costs no API call, no extra
//! permission and no latency inside the invocation.
//!
//! Each cluster's line carries two dimension sets, `[Service, Cluster]` and `[Service]`:
//! the first tells clusters apart on dashboards, the second aggregates all clusters, so the
//! template's alarms need not know the cluster names. `Service` is the deployment's name
//! (`METRICS_SERVICE`, the template sets the stack name): two stacks in one account, even
//! over clusters of the same name, never add to each other's metrics or alarms.

use serde_json::{Map, Value, json};

use crate::domain::AlertKind;
use crate::pipeline::{ClusterReport, Report};

pub const NAMESPACE: &str = "HsmAudit";
pub const CLUSTER_DIMENSION: &str = "Cluster";
pub const SERVICE_DIMENSION: &str = "Service";

/// Metric names, as the template's alarms refer to them.
pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
pub const FAILED_LOGINS: &str = "FailedLogins";
pub const BRUTE_FORCE_ALERTS: &str = "BruteForceAlerts";
pub const OPEN_SEQUENCE_GAPS: &str = "OpenSequenceGaps";
pub const CONFLICTING_DUPLICATES: &str = "ConflictingDuplicates";
pub const QUARANTINED: &str = "Quarantined";
/// Sensitive operations (zeroize, CO creation, key export, re-initialisation, cloning,
/// backup and restore, officers' password changes) and lowered quorum values, by kind.
pub const SENSITIVE_OPERATIONS: &str = "SensitiveOperations";
pub const QUORUM_LOWERED: &str = "QuorumLowered";
/// Sequence gaps found: unlike [`OPEN_SEQUENCE_GAPS`], a level published only when the
/// cluster's records arrive, this counts the gap once, so that its alarm fires on a
/// cluster that went quiet after it.
pub const SEQUENCE_GAPS_OPENED: &str = "SequenceGapsOpened";
/// Records timed more than five minutes from their CloudWatch log event: an HSM clock
/// that is off, or a delivery held back (unlike [`CLOCK_SKEWED_RECORDS`], which are
/// ahead of the function's own clock).
pub const RECORDS_OFF_LOG_TIME: &str = "RecordsOffLogTime";
pub const DYNAMODB_RETRIES: &str = "DynamoDbRetries";
/// Records more than the allowed lateness behind their cluster, folded in by a replay.
pub const LATE_RECORDS_FOLDED: &str = "LateRecordsFolded";
/// Records older than the late horizon: left out of the views until `rederive` (alarmed).
pub const LATE_RECORDS_BEYOND_HORIZON: &str = "LateRecordsBeyondHorizon";
/// Records read again from the trail by replays: what lateness costs.
pub const RECORDS_REPLAYED: &str = "RecordsReplayed";
/// Records timed ahead of the clock, held until it reaches them.
pub const CLOCK_SKEWED_RECORDS: &str = "ClockSkewedRecords";

/// The specification's limits on one metric directive.
pub const MAX_METRICS: usize = 100;
pub const MAX_DIMENSIONS: usize = 30;

/// One line per cluster of the report, and one for the invocation (DynamoDB retries
/// belong to no single cluster). `timestamp_ms` is milliseconds since the epoch.
pub fn emf_documents(
    report: &Report,
    dynamodb_retries: u64,
    service: &str,
    timestamp_ms: i64,
) -> Vec<Value> {
    let mut documents: Vec<Value> = report
        .by_cluster
        .iter()
        .map(|(cluster, counts)| cluster_document(cluster, counts, service, timestamp_ms))
        .collect();
    documents.push(document(
        timestamp_ms,
        &[&[SERVICE_DIMENSION]],
        &[(SERVICE_DIMENSION, service)],
        &[(DYNAMODB_RETRIES, dynamodb_retries)],
    ));
    documents
}

fn cluster_document(
    cluster: &str,
    counts: &ClusterReport,
    service: &str,
    timestamp_ms: i64,
) -> Value {
    let mut metrics = vec![
        (RECORDS_PROCESSED, counts.records as u64),
        (FAILED_LOGINS, counts.failed_logins as u64),
        (
            BRUTE_FORCE_ALERTS,
            counts.new_alerts_of(AlertKind::BruteForce) as u64,
        ),
        (
            CONFLICTING_DUPLICATES,
            counts.new_alerts_of(AlertKind::ConflictingDuplicate) as u64,
        ),
        (QUARANTINED, counts.quarantined as u64),
        (
            SENSITIVE_OPERATIONS,
            counts.new_alerts_of(AlertKind::SensitiveOperation) as u64,
        ),
        (
            QUORUM_LOWERED,
            counts.new_alerts_of(AlertKind::QuorumLowered) as u64,
        ),
        (
            SEQUENCE_GAPS_OPENED,
            counts.new_alerts_of(AlertKind::SequenceGap) as u64,
        ),
        (RECORDS_OFF_LOG_TIME, counts.off_log_time as u64),
        (LATE_RECORDS_FOLDED, counts.late as u64),
        (LATE_RECORDS_BEYOND_HORIZON, counts.beyond_horizon as u64),
        (RECORDS_REPLAYED, counts.replayed as u64),
        (CLOCK_SKEWED_RECORDS, counts.held as u64),
    ];
    // A cluster that was not re-derived (quarantine only, or a failed derivation) has
    // no known gap count; publishing 0 would clear a real gap's alarm.
    if let Some(gaps) = counts.open_gaps {
        metrics.push((OPEN_SEQUENCE_GAPS, gaps as u64));
    }
    document(
        timestamp_ms,
        &[
            &[SERVICE_DIMENSION, CLUSTER_DIMENSION],
            &[SERVICE_DIMENSION],
        ],
        &[(CLUSTER_DIMENSION, cluster), (SERVICE_DIMENSION, service)],
        &metrics,
    )
}

fn document(
    timestamp_ms: i64,
    dimension_sets: &[&[&str]],
    dimensions: &[(&str, &str)],
    metrics: &[(&str, u64)],
) -> Value {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).to_owned(), Value::from(*value));
    }
    for (name, value) in metrics {
        root.insert((*name).to_owned(), Value::from(*value));
    }
    Value::Object(root)
}

/// Prints the report's metrics, one JSON document a line, as EMF requires.
pub fn emit(report: &Report, dynamodb_retries: u64, service: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    for document in emf_documents(report, dynamodb_retries, service, now) {
        println!("{document}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::DEFAULT_METRICS_SERVICE;

    /// Checks a document against the EMF specification: the `_aws` metadata, each
    /// directive's namespace, dimension sets and metric definitions, and the root members
    /// they reference. Returns the problems found.
    fn violations(document: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(root) = document.as_object() else {
            return vec!["root is not an object".into()];
        };
        let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
            return vec!["no _aws object".into()];
        };
        if !aws.get("Timestamp").is_some_and(Value::is_i64) {
            problems.push("_aws.Timestamp is not an integer".into());
        }
        let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
            return vec!["_aws.CloudWatchMetrics is not an array".into()];
        };
        for directive in directives {
            match directive.get("Namespace").and_then(Value::as_str) {
                Some(namespace) if (1..=1024).contains(&namespace.len()) => {}
                _ => problems.push("Namespace missing or out of 1..=1024 characters".into()),
            }
            let Some(sets) = directive.get("Dimensions").and_then(Value::as_array) else {
                problems.push("Dimensions is not an array".into());
                continue;
            };
            for set in sets {
                let Some(names) = set.as_array() else {
                    problems.push("a dimension set is not an array".into());
                    continue;
                };
                if names.len() > MAX_DIMENSIONS {
                    problems.push(format!("a dimension set has {} dimensions", names.len()));
                }
                for name in names {
                    let member = name.as_str().and_then(|name| root.get(name));
                    if !member.is_some_and(Value::is_string) {
                        problems.push(format!("dimension {name} is not a root string member"));
                    }
                }
            }
            let Some(metrics) = directive.get("Metrics").and_then(Value::as_array) else {
                problems.push("Metrics is not an array".into());
                continue;
            };
            if metrics.len() > MAX_METRICS {
                problems.push(format!("{} metrics in one directive", metrics.len()));
            }
            for metric in metrics {
                let Some(name) = metric.get("Name").and_then(Value::as_str) else {
                    problems.push("a metric has no Name".into());
                    continue;
                };
                if !root.get(name).is_some_and(Value::is_number) {
                    problems.push(format!("metric {name} is not a root number member"));
                }
                if metric.get("Unit").and_then(Value::as_str) != Some("Count") {
                    problems.push(format!("metric {name} has no Count unit"));
                }
            }
        }
        problems
    }

    fn report() -> Report {
        let mut report = Report::default();
        report.by_cluster.insert(
            "cluster-a".into(),
            ClusterReport {
                records: 7,
                failed_logins: 5,
                new_alerts: BTreeMap::from([
                    ("brute_force".to_owned(), 1),
                    ("conflicting_duplicate".to_owned(), 2),
                    ("sensitive_operation".to_owned(), 6),
                    ("quorum_lowered".to_owned(), 8),
                    ("sequence_gap".to_owned(), 9),
                ]),
                open_gaps: Some(3),
                late: 10,
                off_log_time: 11,
                ..ClusterReport::default()
            },
        );
        report.by_cluster.insert(
            "unknown".into(),
            ClusterReport {
                quarantined: 4,
                ..ClusterReport::default()
            },
        );
        report
    }

    #[test]
    fn documents_follow_the_specification() {
        let documents = emf_documents(&report(), 2, DEFAULT_METRICS_SERVICE, 1_700_000_000_123);
        assert_eq!(documents.len(), 3);
        for document in &documents {
            assert_eq!(violations(document), Vec::<String>::new(), "{document}");
            assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_123i64);
            assert_eq!(
                document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
                NAMESPACE
            );
            // One line each: CloudWatch Logs reads one log event a line.
            assert!(!document.to_string().contains('\n'));
        }
    }

    #[test]
    fn each_cluster_line_carries_its_counts() {
        let documents = emf_documents(&report(), 2, "stack-a", 0);
        let cluster = &documents[0];
        assert_eq!(cluster[CLUSTER_DIMENSION], "cluster-a");
        assert_eq!(cluster[SERVICE_DIMENSION], "stack-a");
        assert_eq!(cluster[RECORDS_PROCESSED], 7);
        assert_eq!(cluster[FAILED_LOGINS], 5);
        assert_eq!(cluster[BRUTE_FORCE_ALERTS], 1);
        assert_eq!(cluster[CONFLICTING_DUPLICATES], 2);
        assert_eq!(cluster[OPEN_SEQUENCE_GAPS], 3);
        assert_eq!(cluster[SENSITIVE_OPERATIONS], 6);
        assert_eq!(cluster[QUORUM_LOWERED], 8);
        assert_eq!(cluster[SEQUENCE_GAPS_OPENED], 9);
        assert_eq!(cluster[LATE_RECORDS_FOLDED], 10);
        assert_eq!(cluster[RECORDS_OFF_LOG_TIME], 11);
        assert_eq!(
            cluster["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "Cluster"], ["Service"]])
        );
        let unknown = &documents[1];
        assert_eq!(unknown[CLUSTER_DIMENSION], "unknown");
        assert_eq!(unknown[QUARANTINED], 4);
        // Not derived: no gap count is claimed, neither as a member nor as a definition.
        assert!(unknown.get(OPEN_SEQUENCE_GAPS).is_none());
        assert!(!unknown.to_string().contains(OPEN_SEQUENCE_GAPS));
        assert_eq!(documents[2][DYNAMODB_RETRIES], 2);
        assert_eq!(documents[2][SERVICE_DIMENSION], "stack-a");
        assert!(documents[2].get(CLUSTER_DIMENSION).is_none());
    }

    #[test]
    fn the_checker_catches_what_the_specification_forbids() {
        let mut document = emf_documents(&report(), 0, DEFAULT_METRICS_SERVICE, 0).remove(0);
        document
            .as_object_mut()
            .map(|root| root.remove(RECORDS_PROCESSED));
        document[CLUSTER_DIMENSION] = json!(1);
        document["_aws"]["Timestamp"] = json!("now");
        let problems = violations(&document);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
