//! The command line: the commands, their arguments and how each argument is read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::failure::Failure;
use crate::domain::AlertKind;
use crate::model::Timestamp;
use crate::store::window::{Paging, Window};

#[derive(Debug, Parser)]
#[command(
    name = "hsm-audit",
    version,
    about = "HSM audit logs (AWS CloudHSM, Thales Luna) as a queryable compliance trail in DynamoDB"
)]
pub(super) struct Cli {
    /// DynamoDB table [env: TABLE_NAME]. The endpoint, region and credentials come from
    /// the standard AWS environment (AWS_ENDPOINT_URL for a local DynamoDB).
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// Output format: a readable table, stable JSON for scripts, or (list commands) one
    /// JSON value a line for pipes. Lists are written as they are read.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// On a failed DynamoDB request, print the SDK's whole report of it (request,
    /// response, causes) after the one-line error; so does a set RUST_LOG.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
    Ndjson,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Create the table as template.yaml defines it (for a local DynamoDB).
    Setup,
    /// Process files as the Lambda would: subscription events (the Lambda input), Kinesis and
    /// Firehose events, the failure queue's records (`aws sqs receive-message` output),
    /// gzipped or plain subscription payloads, `aws logs filter-log-events` output, raw audit
    /// text, Thales DPoD audit files. Directories are read recursively for *.json, *.gz,
    /// *.zip, *.txt and *.log files.
    Ingest(InputArgs),
    /// Decode and parse files only, without any AWS call, and count what they hold.
    Parse(InputArgs),
    /// Read history that predates the subscription from CloudWatch Logs (FilterLogEvents
    /// per log stream) and process it as the Lambda would. Resumes from a checkpoint per
    /// stream kept in the table; running it again is a no-op.
    Backfill {
        /// The CloudHSM log group: `/aws/cloudhsm/<cluster-id>`.
        #[arg(long)]
        log_group: String,
        /// Events at or after this time (RFC 3339 or YYYY-MM-DD, UTC); default: all.
        #[arg(long, value_parser = parse_time)]
        start: Option<Timestamp>,
        /// Events at or before this time; default: up to now.
        #[arg(long, value_parser = parse_time)]
        end: Option<Timestamp>,
        /// Ignore the checkpoints and read the whole range again.
        #[arg(long)]
        restart: bool,
    },
    /// The stored audit records of a cluster (or one HSM), in sequence order. With
    /// --from/--to, the records timed in the period, read through the trail's time index.
    Trail {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        hsm: Option<String>,
    },
    /// Cluster sessions: login through logout, finalize, close or reboot. In login order;
    /// one user's sessions can be read a page at a time (--limit, --after). With
    /// --from/--to, the sessions whose login is in the period.
    Sessions {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// The lifecycle of one key handle (or Luna object): every generation, with its
    /// events; read a page at a time with --limit and --after.
    Key {
        #[arg(long)]
        cluster: String,
        /// The key handle, in hex as the HSM logs it (`0x40008`) or in decimal (`262152`).
        #[arg(long, required_unless_present = "object", conflicts_with = "object", value_parser = parse_handle)]
        handle: Option<u64>,
        /// A Thales Luna object id (`ouid`), verbatim.
        #[arg(long)]
        object: Option<String>,
        #[command(flatten)]
        paging: PagingArgs,
    },
    /// Every key, certificate and Luna object lifecycle of a cluster; with --from/--to,
    /// the generations with an event in the period, each with its events in the period.
    Keys(Scope),
    /// Failed logins, flagged when part of a brute-force burst; with --from/--to, those
    /// in the period.
    FailedLogins(Scope),
    /// Brute force, sequence gaps, conflicting duplicates, sensitive operations, reboots,
    /// certificate-storage errors, lowered quorum values, late records, clock skew; in
    /// time order. With --from/--to, the alerts in the period.
    Alerts {
        #[command(flatten)]
        scope: Scope,
        /// Alerts of this kind only (e.g. sensitive_operation), read through the time
        /// index of that kind.
        #[arg(long, value_parser = parse_alert_kind)]
        kind: Option<AlertKind>,
    },
    /// Quorum (M of N) evidence: each token request per HSM with its approvals, its end
    /// and what the requester did while it lived; every M-value setting. With --from/--to,
    /// the tokens and M-value settings that start in the period.
    Quorum(Scope),
    /// The auditor's report of a cluster: one self-contained HTML file (is the trail
    /// complete, key inventory, session timeline, failed logins, alerts, quorum), or the
    /// key inventory or the alerts as CSV or JSON rows. Reads the table a page at a time.
    /// --from/--to cut the sessions, failed logins, alerts and quorum tokens; the key
    /// inventory and the completeness of the trail are never cut by the period, and key
    /// ages are measured to --to (default: to now).
    Report {
        #[command(flatten)]
        scope: Scope,
        /// The file to write (replaced only once it is whole).
        #[arg(long)]
        out: PathBuf,
        /// The crypto-period: active keys older than this are flagged (e.g. 365d, 52w, 1y,
        /// 720h).
        #[arg(long, default_value = "365d", value_parser = crate::report::parse_age)]
        max_key_age: i64,
        /// `html`: the whole report in one file; `csv`, `json`: the rows --data names.
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// With --format csv or json, the rows to write: the key inventory (default) or
        /// the alerts of the period.
        #[arg(long, value_enum)]
        data: Option<ReportData>,
    },
    /// What could not be processed, with the reason.
    Quarantine {
        /// Write the whole content of the item whose `raw_sha256` this is (checked
        /// against it), byte for byte, instead of listing.
        #[arg(long, value_name = "RAW_SHA256")]
        export: Option<String>,
        /// Where `--export` writes; standard output when absent.
        #[arg(long, requires = "export")]
        out: Option<PathBuf>,
    },
    /// Rebuild a cluster's views from its whole trail, a bounded part of each stream at a
    /// time: after `late_record` alerts (records that arrived later than the allowed
    /// lateness), or after an upgrade that changed how views are derived.
    Rederive {
        #[arg(long)]
        cluster: String,
    },
    /// Check the cluster's trail against its digest chain: records modified, deleted or
    /// added after their digest, broken links, dropped digests, bad signatures. Reads the
    /// whole trail partition once, a page at a time. Exit code 0 only when everything
    /// holds; 3 when something was found (each finding is listed). --from/--to: report
    /// the records (and digests) timed in the period; the chain is still checked whole.
    Verify {
        #[command(flatten)]
        scope: Scope,
        /// The signing key's public half (PEM, or DER as `aws kms get-public-key` gives
        /// it, base64-decoded): every digest must carry a valid signature by it. Without
        /// it or --kms-key-id, signatures are not checked.
        #[arg(long, value_name = "FILE", conflicts_with = "kms_key_id")]
        public_key: Option<PathBuf>,
        /// Read the public key of this KMS key (GetPublicKey) instead of a file.
        #[arg(long, value_name = "KEY_ID")]
        kms_key_id: Option<String>,
        /// Digests exported by `hsm-audit digests` (kept outside the table): the chain is
        /// checked on them, and the table's digests must equal them.
        #[arg(long, value_name = "DIR")]
        digests: Option<PathBuf>,
        /// Check the chain against the heads anchored in `ANCHOR_LOG_GROUP` (CloudWatch
        /// Logs): a chain that ends before the newest anchor is `truncated`.
        #[arg(long)]
        anchors: bool,
    },
    /// The cluster's trail and alerts as OCSF 1.7 events for a SIEM or Security Lake, one
    /// folder per class: Authentication, Account Change, Entity Management (key
    /// lifecycles), API Activity, Detection Finding. NDJSON: `DIR/<class>/<cluster>.ndjson`;
    /// Parquet, in Security Lake's custom-source partitions:
    /// `DIR/<class>/region=<REGION>/accountId=<ACCOUNT>/eventDay=<YYYYMMDD>/<cluster>.parquet`.
    /// With --from/--to, the records and alerts in the period.
    Export {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The AWS account of the Parquet partitions (Security Lake's `accountId=`).
        #[arg(long, value_name = "ID", required_if_eq("format", "parquet"))]
        account: Option<String>,
        /// The region of the Parquet partitions (`region=`).
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        region: String,
    },
    /// Export the cluster's digests as JSON files (`digest-<number>.json`), to keep them
    /// outside the table's reach (an S3 bucket with Object Lock); `verify --digests DIR`
    /// checks the table against them.
    Digests {
        #[arg(long)]
        cluster: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The cluster a command reads and the period it reads of it; what falls in the period
/// (records by their time, sessions by their login, tokens by their start) is each
/// command's own, said in its help.
#[derive(Debug, Args)]
pub(super) struct Scope {
    #[arg(long)]
    pub cluster: String,
    /// At or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// At or before this time.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<Timestamp>,
}

impl Scope {
    pub fn window(&self) -> Window {
        Window {
            from: self.from,
            to: self.to,
        }
    }
}

/// The container of `export`'s OCSF events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ExportFormat {
    /// One JSON event a line.
    Ndjson,
    /// Apache Parquet (Snappy), partitioned as Security Lake reads a custom source.
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ReportFormat {
    Html,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ReportData {
    Keys,
    Alerts,
}

/// Reading one user's sessions or one key's generations a page at a time.
#[derive(Debug, Args)]
pub(super) struct PagingArgs {
    /// At most about this many events (a page never ends between two events of the same
    /// microsecond); what remains is named on standard error as `--after <KEY>`. With
    /// `sessions`, needs --user.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Go on after this key, as a page that stopped at its --limit named it.
    #[arg(long, value_name = "KEY")]
    after: Option<String>,
}

impl PagingArgs {
    pub fn paging(&self) -> Result<Paging, Failure> {
        let after = match &self.after {
            Some(token) => Some(
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        Failure::Usage(format!(
                            "--after `{token}` is not a key a page named: pass it as printed"
                        ))
                    })?,
            ),
            None => None,
        };
        Ok(Paging {
            limit: self
                .limit
                .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX)),
            after,
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct InputArgs {
    /// Files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Log group of raw text and of filter-log-events output (they do not name it):
    /// `/aws/cloudhsm/<cluster-id>`.
    #[arg(long)]
    pub log_group: Option<String>,
    /// Log stream (the HSM id) of raw audit text.
    #[arg(long)]
    pub log_stream: Option<String>,
    /// `luna`: Thales DPoD audit files (the Audit Query API's ZIP of a JSON array, a
    /// JSON array, JSON lines; gzipped or not), placed by each record's service id, or
    /// by --log-group. `auto` recognises those and reads everything else as before.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum InputFormat {
    Auto,
    Luna,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_user(text)
        .ok_or_else(|| format!("`{text}` is not a time: use RFC 3339 or YYYY-MM-DD (UTC)"))
}

fn parse_alert_kind(text: &str) -> Result<AlertKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        format!(
            "`{text}` is not an alert kind: brute_force, sequence_gap, conflicting_duplicate, \
             sensitive_operation, reboot, certificate_storage_error, quorum_lowered, \
             late_record or clock_skew"
        )
    })
}

fn parse_handle(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| {
        format!("`{text}` is not a key handle: use hex as logged (0x40008) or decimal (262152)")
    })
}

impl Command {
    /// A `--from` after its `--to` selects nothing; said so, it is not mistaken for a
    /// quiet period.
    pub fn check_window(&self) -> Result<(), Failure> {
        let (from, to, names) = match self {
            Command::Backfill { start, end, .. } => (start, end, ("--start", "--end")),
            _ => match self.scope() {
                Some(scope) => (&scope.from, &scope.to, ("--from", "--to")),
                None => return Ok(()),
            },
        };
        match (from, to) {
            (Some(from), Some(to)) if from > to => Err(Failure::Usage(format!(
                "{} {from} is after {} {to}: the window is empty",
                names.0, names.1
            ))),
            _ => Ok(()),
        }
    }

    fn scope(&self) -> Option<&Scope> {
        match self {
            Command::Sessions { scope, .. }
            | Command::Trail { scope, .. }
            | Command::Keys(scope)
            | Command::Alerts { scope, .. }
            | Command::Quorum(scope)
            | Command::FailedLogins(scope)
            | Command::Report { scope, .. }
            | Command::Verify { scope, .. }
            | Command::Export { scope, .. } => Some(scope),
            Command::Setup
            | Command::Ingest(_)
            | Command::Parse(_)
            | Command::Backfill { .. }
            | Command::Key { .. }
            | Command::Quarantine { .. }
            | Command::Rederive { .. }
            | Command::Digests { .. } => None,
        }
    }

    /// The cluster a command reads.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Command::Key { cluster, .. }
            | Command::Rederive { cluster }
            | Command::Digests { cluster, .. } => Some(cluster),
            _ => self.scope().map(|scope| scope.cluster.as_str()),
        }
    }
}
