//! One Security Hub finding (ASFF) per alert, imported into the account's default
//! product: an `Id` stable per alert, so that a re-import updates and never duplicates.

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, Compliance, ComplianceStatus, Partition, RecordState, Resource,
    SeverityLabel, Workflow, WorkflowStatus,
};
use sha2::{Digest, Sha256};

use super::{Severity, StoredAlert, detail_type, is_destruction, severity};
use crate::domain::AlertKind;
use crate::model::Timestamp;

/// The ASFF version the findings follow.
const SCHEMA_VERSION: &str = "2018-10-08";

/// ASFF caps `Title` at 256 characters and `Description` at 1,024.
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 1024;

/// Where findings go: the account and region whose default product takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingTarget {
    pub account: String,
    pub region: String,
}

impl FindingTarget {
    /// `aws`, `aws-cn` or `aws-us-gov`, from the region's name.
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// The account's own product: what `BatchImportFindings` takes without a partner
    /// integration.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{}:securityhub:{}:{}:product/{}/default",
            self.partition(),
            self.region,
            self.account,
            self.account
        )
    }
}

/// The finding's `Id`: the cluster and the alert's sort key, digested because both come
/// from the input and ASFF caps an id at 512 characters.
pub fn finding_id(stored: &StoredAlert) -> String {
    let digest = Sha256::digest(format!("{}\n{}", stored.cluster, stored.id).as_bytes());
    format!("hsm-audit/{}", &hex::encode(digest)[..40])
}

/// ASFF `Types`: what kind of threat or check the alert is.
pub fn finding_types(stored: &StoredAlert) -> Vec<&'static str> {
    const PCI_DSS: &str =
        "Software and Configuration Checks/Industry and Regulatory Standards/PCI-DSS";
    match stored.alert.kind {
        AlertKind::BruteForce => vec!["TTPs/Credential Access"],
        AlertKind::SensitiveOperation if is_destruction(&stored.alert) => {
            vec!["Effects/Data Destruction", PCI_DSS]
        }
        AlertKind::QuorumLowered => vec!["TTPs/Defense Evasion", PCI_DSS],
        AlertKind::CertificateStorageError => vec!["Software and Configuration Checks"],
        AlertKind::SequenceGap
        | AlertKind::ConflictingDuplicate
        | AlertKind::LateRecord
        | AlertKind::ClockSkew
        | AlertKind::Reboot
        | AlertKind::AbandonedSession
        | AlertKind::SensitiveOperation => vec![PCI_DSS],
    }
}

/// The PCI DSS (v4) requirements an alert bears on: 10.2.1 audit logs capture access
/// attempts and administrative actions, 10.3.4 audit logs are protected from change
/// (completeness, tampering), 3.6.1 keys are protected, 3.7.6 key-management operations
/// keep split knowledge and dual control, 10.6.1 system clocks are synchronized.
pub fn related_requirements(stored: &StoredAlert) -> Vec<&'static str> {
    match stored.alert.kind {
        AlertKind::BruteForce | AlertKind::AbandonedSession => vec!["PCI DSS 10.2.1"],
        AlertKind::SequenceGap => vec!["PCI DSS 10.2.1", "PCI DSS 10.3.4"],
        AlertKind::ConflictingDuplicate | AlertKind::LateRecord | AlertKind::Reboot => {
            vec!["PCI DSS 10.3.4"]
        }
        AlertKind::SensitiveOperation => vec!["PCI DSS 10.2.1", "PCI DSS 3.6.1"],
        AlertKind::QuorumLowered => vec!["PCI DSS 3.6.1", "PCI DSS 3.7.6"],
        AlertKind::ClockSkew => vec!["PCI DSS 10.6.1"],
        AlertKind::CertificateStorageError => Vec::new(),
    }
}

/// The alert as a new, active finding, observed at the alert's time and imported `now`.
pub fn finding(stored: &StoredAlert, target: &FindingTarget, now: Timestamp) -> AwsSecurityFinding {
    let alert = &stored.alert;
    let label = match severity(alert) {
        Severity::Low => SeverityLabel::Low,
        Severity::Medium => SeverityLabel::Medium,
        Severity::High => SeverityLabel::High,
    };
    let mut finding = AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(finding_id(stored))
        .product_arn(target.product_arn())
        .generator_id(format!("hsm-audit/{}", alert.kind.as_str()))
        .aws_account_id(&target.account)
        .created_at(alert.time.iso())
        .first_observed_at(alert.time.iso())
        .last_observed_at(alert.time.iso())
        .updated_at(now.iso())
        .severity(
            aws_sdk_securityhub::types::Severity::builder()
                .label(label)
                .build(),
        )
        .title(cut(&title(stored), TITLE_CHARS))
        .description(cut(&description(stored), DESCRIPTION_CHARS))
        .resources(resource(stored, target))
        .source_url(console_url(stored, &target.region))
        .workflow(Workflow::builder().status(WorkflowStatus::New).build())
        .record_state(if stored.archived {
            RecordState::Archived
        } else {
            RecordState::Active
        })
        .product_fields("hsm-audit/alert_id", &stored.id)
        .product_fields("hsm-audit/cluster", &stored.cluster)
        .product_fields("hsm-audit/cli_command", stored.cli_command())
        .product_fields("hsm-audit/console_query", stored.console_query());
    for kind in finding_types(stored) {
        finding = finding.types(kind);
    }
    let requirements = related_requirements(stored);
    if !requirements.is_empty() {
        let mut compliance = Compliance::builder().status(ComplianceStatus::Failed);
        for requirement in requirements {
            compliance = compliance.related_requirements(requirement);
        }
        finding = finding.compliance(compliance.build());
    }
    finding.build()
}

fn title(stored: &StoredAlert) -> String {
    let alert = &stored.alert;
    let mut title = format!("{} on {}", detail_type(alert.kind), stored.cluster);
    if let Some(user) = &alert.user {
        title.push_str(&format!(" by {user}"));
    }
    if let Some(hsm) = &alert.hsm {
        title.push_str(&format!(" ({hsm})"));
    }
    title
}

fn description(stored: &StoredAlert) -> String {
    let alert = &stored.alert;
    let mut parts = Vec::new();
    if let Some(opcode) = &alert.opcode {
        parts.push(opcode.as_str().to_owned());
    }
    if let (Some(from), Some(to)) = (alert.from, alert.to) {
        parts.push(format!("sequence {from:#x}..={to:#x} missing"));
    } else if let Some(seq) = alert.seq {
        parts.push(format!("sequence {seq:#x}"));
    }
    if let Some(boot) = alert.reboot_counter {
        parts.push(format!("reboot counter {boot:#x}"));
    }
    if let Some(detail) = &alert.detail {
        parts.push(detail.clone());
    }
    parts.push(format!("at {}", alert.time.iso()));
    parts.push(format!("see: {}", stored.cli_command()));
    parts.join("; ")
}

/// The cluster as ASFF knows no CloudHSM resource type: `Other`, its ARN for a CloudHSM
/// cluster id, the name as it is for others (a Luna service).
fn resource(stored: &StoredAlert, target: &FindingTarget) -> Resource {
    let id = if stored.cluster.starts_with("cluster-") {
        format!(
            "arn:{}:cloudhsm:{}:{}:cluster/{}",
            target.partition(),
            target.region,
            target.account,
            stored.cluster
        )
    } else {
        stored.cluster.clone()
    };
    Resource::builder()
        .r#type("Other")
        .id(id)
        .partition(Partition::from(target.partition()))
        .region(&target.region)
        .build()
}

/// The alert item in the DynamoDB console's item explorer.
fn console_url(stored: &StoredAlert, region: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/dynamodbv2/home?region={region}#edit-item?table={}&itemMode=2&pk={}&sk={}&route=ROUTE_ITEM_EXPLORER",
        percent_encode(&stored.table),
        percent_encode(&crate::store::dynamodb::items::cluster_pk(&stored.cluster)),
        percent_encode(&stored.id)
    )
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::{gap, stored};
    use crate::domain::Alert;
    use crate::model::Opcode;

    fn target() -> FindingTarget {
        FindingTarget {
            account: "123456789012".to_owned(),
            region: "eu-west-1".to_owned(),
        }
    }

    #[test]
    fn a_gap_is_a_pci_completeness_finding_on_its_cluster() {
        let now = Timestamp(1_700_000_000_000_000);
        let finding = finding(&stored(gap()), &target(), now);
        assert_eq!(finding.schema_version(), Some("2018-10-08"));
        assert_eq!(
            finding.product_arn(),
            Some("arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default")
        );
        assert_eq!(finding.generator_id(), Some("hsm-audit/sequence_gap"));
        assert_eq!(
            finding.types(),
            ["Software and Configuration Checks/Industry and Regulatory Standards/PCI-DSS"]
        );
        assert_eq!(
            finding.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::Medium)
        );
        let compliance = finding.compliance().expect("compliance");
        assert_eq!(
            compliance.related_requirements(),
            ["PCI DSS 10.2.1", "PCI DSS 10.3.4"]
        );
        let resource = &finding.resources()[0];
        assert_eq!(resource.r#type(), Some("Other"));
        assert_eq!(
            resource.id(),
            Some("arn:aws:cloudhsm:eu-west-1:123456789012:cluster/cluster-demo")
        );
        assert_eq!(
            finding.first_observed_at(),
            Some("2018-01-24T00:39:23.172777Z")
        );
        assert_eq!(finding.updated_at(), Some(now.iso().as_str()));
        assert_eq!(
            finding.title(),
            Some("Sequence gap on cluster-demo (hsm-abcde123456)")
        );
        assert_eq!(
            finding.description(),
            Some(
                "sequence 0x20..=0x22 missing; reboot counter 0x7; 3 records missing; \
                 at 2018-01-24T00:39:23.172777Z; see: hsm-audit alerts --cluster cluster-demo --output json"
            )
        );
        assert_eq!(
            finding.source_url(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/dynamodbv2/home?region=eu-west-1#edit-item?table=hsm-audit&itemMode=2&pk=CLUSTER%23cluster-demo&sk=ALERT%232018-01-24T00%3A39%3A23.172777Z%23sequence_gap%23x&route=ROUTE_ITEM_EXPLORER"
            )
        );
    }

    #[test]
    fn the_id_is_stable_per_alert_and_differs_between_alerts_and_clusters() {
        let one = stored(gap());
        assert_eq!(finding_id(&one), finding_id(&stored(gap())));
        let mut other_cluster = stored(gap());
        other_cluster.cluster = "cluster-other".to_owned();
        assert_ne!(finding_id(&one), finding_id(&other_cluster));
        let mut other_alert = stored(gap());
        other_alert.id.push('y');
        assert_ne!(finding_id(&one), finding_id(&other_alert));
        assert!(finding_id(&one).len() <= 512);
    }

    #[test]
    fn brute_force_destruction_and_quorum_have_their_types_and_requirements() {
        let of = |kind, opcode| {
            stored(Alert {
                kind,
                opcode,
                from: None,
                to: None,
                seq: Some(3),
                ..gap()
            })
        };
        let brute = of(AlertKind::BruteForce, Some(Opcode::Login));
        assert_eq!(finding_types(&brute), ["TTPs/Credential Access"]);
        assert_eq!(related_requirements(&brute), ["PCI DSS 10.2.1"]);
        let zeroize = of(AlertKind::SensitiveOperation, Some(Opcode::Zeroize));
        assert_eq!(finding_types(&zeroize)[0], "Effects/Data Destruction");
        let wrap = of(AlertKind::SensitiveOperation, Some(Opcode::WrapKey));
        assert!(!finding_types(&wrap).contains(&"Effects/Data Destruction"));
        let quorum = of(AlertKind::QuorumLowered, Some(Opcode::SetMValue));
        assert_eq!(
            related_requirements(&quorum),
            ["PCI DSS 3.6.1", "PCI DSS 3.7.6"]
        );
        let certificate = of(AlertKind::CertificateStorageError, None);
        assert!(
            finding(&certificate, &target(), Timestamp(0))
                .compliance()
                .is_none()
        );
    }

    #[test]
    fn a_luna_service_is_named_as_it_is_and_long_text_is_cut() {
        let mut luna = stored(gap());
        luna.cluster = "luna-service-demo".to_owned();
        luna.alert.detail = Some("é".repeat(2000));
        let finding = finding(&luna, &target(), Timestamp(0));
        assert_eq!(finding.resources()[0].id(), Some("luna-service-demo"));
        assert_eq!(
            finding.description().map(|d| d.chars().count()),
            Some(DESCRIPTION_CHARS)
        );
    }
}
