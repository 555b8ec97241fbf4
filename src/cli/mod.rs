//! `hsm-audit`: the same pipeline as the Lambda, from files, and the queries on what it
//! stored. Exit codes: 0 success, 1 processing error, 2 bad usage.

pub mod backfill;
mod clusters;
pub mod export;
mod files;
mod render;
mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::config::Config;
use crate::decode::RawTextSource;
use crate::digest::anchor::Anchoring;
use crate::digest::kms::{DigestSigner, kms_client, public_key as kms_public_key};
use crate::digest::signature::PublicKey;
use crate::domain::AlertKind;
use crate::model::Timestamp;
use crate::pipeline::{
    Report, derive_clusters, parse_decoded, rederive, stop_at_first, store_parsed,
};
use crate::store::BoxError;
use crate::store::dynamodb::items::ViewRow;
use crate::store::dynamodb::{DynamoStore, connect, create_table};
use crate::store::window::{self, Continuation, KeyOf, Paging, Window};
use crate::verify::{VerifyOptions, export_digests, verify_trail};

#[derive(Debug, Parser)]
#[command(
    name = "hsm-audit",
    version,
    about = "HSM audit logs (AWS CloudHSM, Thales Luna) as a queryable compliance trail in DynamoDB"
)]
struct Cli {
    /// DynamoDB table [env: TABLE_NAME]. The endpoint, region and credentials come from
    /// the standard AWS environment (AWS_ENDPOINT_URL for a local DynamoDB).
    #[arg(long, global = true)]
    table: Option<String>,
    /// Output format: a readable table, stable JSON for scripts, or (list commands) one
    /// JSON value a line for pipes. Lists are written as they are read.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// On a failed DynamoDB request, print the SDK's whole report of it (request,
    /// response, causes) after the one-line error; so does a set RUST_LOG.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Ndjson,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// The stored audit records of a cluster (or one HSM), in sequence order.
    Trail {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        hsm: Option<String>,
        /// Records timed at or after this time (RFC 3339 or YYYY-MM-DD, UTC); read through
        /// the trail's time index.
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Records timed at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
    },
    /// Cluster sessions: login through logout, finalize, close or reboot. In login order;
    /// one user's sessions can be read a page at a time (--limit, --after).
    Sessions {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        user: Option<String>,
        /// Sessions whose login is at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Sessions whose login is at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
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
    /// the generations with an event in the window, each with its events in the window.
    Keys {
        #[arg(long)]
        cluster: String,
        /// Events at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Events at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
    },
    /// Failed logins, flagged when part of a brute-force burst.
    FailedLogins {
        #[arg(long)]
        cluster: String,
        /// Failed logins at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Failed logins at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
    },
    /// Brute force, sequence gaps, conflicting duplicates, sensitive operations, reboots,
    /// certificate-storage errors, lowered quorum values, late records, clock skew; in
    /// time order.
    Alerts {
        #[arg(long)]
        cluster: String,
        /// Alerts of this kind only (e.g. sensitive_operation), read through the time
        /// index of that kind.
        #[arg(long, value_parser = parse_alert_kind)]
        kind: Option<AlertKind>,
        /// Alerts at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Alerts at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
    },
    /// Quorum (M of N) evidence: each token request per HSM with its approvals, its end
    /// and what the requester did while it lived; every M-value setting.
    Quorum {
        #[arg(long)]
        cluster: String,
        /// Tokens and M-value settings that start at or after this time.
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Tokens and M-value settings that start at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
    },
    /// The auditor's report of a cluster: one self-contained HTML file (is the trail
    /// complete, key inventory, session timeline, failed logins, alerts, quorum), or the
    /// key inventory or the alerts as CSV or JSON rows. Reads the table a page at a time.
    Report {
        #[arg(long)]
        cluster: String,
        /// Sessions, failed logins, alerts and quorum tokens at or after this time (RFC 3339
        /// or YYYY-MM-DD, UTC). The key inventory and the completeness of the trail are
        /// never cut by the period.
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Sessions, failed logins, alerts and quorum tokens at or before this time; key
        /// ages are measured to it (default: to now).
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
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
    /// holds; 3 when something was found (each finding is listed).
    Verify {
        #[arg(long)]
        cluster: String,
        /// Report records (and digests) timed at or after this time; the chain is still
        /// checked whole.
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Report records timed at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
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
    Export {
        #[arg(long)]
        cluster: String,
        /// Records and alerts at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = parse_time)]
        from: Option<Timestamp>,
        /// Records and alerts at or before this time.
        #[arg(long, value_parser = parse_time)]
        to: Option<Timestamp>,
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

/// The container of `export`'s OCSF events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    /// One JSON event a line.
    Ndjson,
    /// Apache Parquet (Snappy), partitioned as Security Lake reads a custom source.
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Html,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportData {
    Keys,
    Alerts,
}

/// Reading one user's sessions or one key's generations a page at a time.
#[derive(Debug, Args)]
struct PagingArgs {
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
    fn paging(&self) -> Result<Paging, Failure> {
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

/// Names where a page stopped, on standard error (standard output stays the listing).
fn continuation(stopped: Continuation) {
    if let Some(sk) = stopped {
        let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sk);
        eprintln!("more: --after {token}");
    }
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Log group of raw text and of filter-log-events output (they do not name it):
    /// `/aws/cloudhsm/<cluster-id>`.
    #[arg(long)]
    log_group: Option<String>,
    /// Log stream (the HSM id) of raw audit text.
    #[arg(long)]
    log_stream: Option<String>,
    /// `luna`: Thales DPoD audit files (the Audit Query API's ZIP of a JSON array, a
    /// JSON array, JSON lines; gzipped or not), placed by each record's service id, or
    /// by --log-group. `auto` recognises those and reads everything else as before.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
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

/// A `--from` after its `--to` selects nothing; said so, it is not mistaken for a quiet
/// period.
fn check_window(command: &Command) -> Result<(), Failure> {
    let (from, to, names) = match command {
        Command::Sessions { from, to, .. }
        | Command::Trail { from, to, .. }
        | Command::Keys { from, to, .. }
        | Command::Alerts { from, to, .. }
        | Command::Quorum { from, to, .. }
        | Command::FailedLogins { from, to, .. }
        | Command::Report { from, to, .. }
        | Command::Verify { from, to, .. }
        | Command::Export { from, to, .. } => (from, to, ("--from", "--to")),
        Command::Backfill { start, end, .. } => (start, end, ("--start", "--end")),
        _ => return Ok(()),
    };
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(Failure::Usage(format!(
            "{} {from} is after {} {to}: the window is empty",
            names.0, names.1
        ))),
        _ => Ok(()),
    }
}

/// The cluster a command reads.
fn cluster_of(command: &Command) -> Option<&str> {
    match command {
        Command::Trail { cluster, .. }
        | Command::Sessions { cluster, .. }
        | Command::Key { cluster, .. }
        | Command::Keys { cluster, .. }
        | Command::FailedLogins { cluster, .. }
        | Command::Alerts { cluster, .. }
        | Command::Quorum { cluster, .. }
        | Command::Report { cluster, .. }
        | Command::Rederive { cluster }
        | Command::Verify { cluster, .. }
        | Command::Digests { cluster, .. }
        | Command::Export { cluster, .. } => Some(cluster),
        Command::Setup
        | Command::Ingest(_)
        | Command::Parse(_)
        | Command::Backfill { .. }
        | Command::Quarantine { .. } => None,
    }
}

/// A cluster the table holds no record of is an error: answered as an empty trail, a
/// mistyped name would pass for a clean, quiet cluster (`verify` would say the trail
/// is as its digests say).
async fn require_cluster(store: &DynamoStore, cluster: &str) -> Result<(), Failure> {
    if store.has_cluster(cluster).await.map_err(processing)? {
        return Ok(());
    }
    let (clusters, whole) = clusters::known(store).await.map_err(processing)?;
    let mut known = if clusters.is_empty() {
        "none".to_owned()
    } else {
        clusters.into_iter().collect::<Vec<_>>().join(", ")
    };
    if !whole {
        known.push_str(", … (the first pages of the table only)");
    }
    Err(processing(format!(
        "no cluster {cluster} in table {}; clusters: {known}",
        store.table()
    )))
}

/// Failures, by exit code. A processing failure keeps its type and causes up to here,
/// where it is printed as its chain of causes on one line, and the SDK's whole report
/// of a failed request only when asked for (`-v`, `RUST_LOG`): one line is what a
/// person acts on.
enum Failure {
    Usage(String),
    Processing(BoxError),
    /// `verify` found the trail not as its digests say (the report is printed).
    Unverified,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose || env::var("RUST_LOG").is_ok_and(|filter| !filter.is_empty());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {}", render::shown(&message));
            ExitCode::from(2)
        }
        Err(Failure::Processing(error)) => {
            let line = render::shown(&crate::errors::one_line(error.as_ref())).into_owned();
            match crate::errors::sdk_report(error.as_ref()) {
                Some(report) if verbose => {
                    eprintln!("error: {line}");
                    eprintln!("detail: {}", render::shown(&report));
                }
                Some(_) => eprintln!("error: {line} (-v shows the whole report)"),
                None => eprintln!("error: {line}"),
            }
            ExitCode::from(1)
        }
        Err(Failure::Unverified) => ExitCode::from(3),
    }
}

fn processing(error: impl Into<BoxError>) -> Failure {
    Failure::Processing(error.into())
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        processing(error)
    }
}

/// Standard output could not be written (a closed pipe, a full disk).
fn written(error: std::io::Error) -> Failure {
    processing(format!("cannot write the output: {error}"))
}

fn format_of(output: Output) -> stream::Format {
    match output {
        Output::Table => stream::Format::Table,
        Output::Json => stream::Format::Json,
        Output::Ndjson => stream::Format::Ndjson,
    }
}

fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

fn list_out(
    output: Output,
    empty_note: &'static str,
) -> stream::ListOut<std::io::BufWriter<std::io::StdoutLock<'static>>> {
    stream::ListOut::new(stdout(), format_of(output), empty_note)
}

fn finish<W: std::io::Write>(out: stream::ListOut<W>) -> Result<(), Failure> {
    out.finish().map(drop).map_err(written)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Parse(input) = &cli.command {
        return parse_only(input, cli.output);
    }
    check_window(&cli.command)?;
    let config = Config::from_env(cli.table.clone())
        .map_err(|error| Failure::Usage(format!("{error} (or pass --table)")))?;
    let anchoring = Anchoring::from_env()
        .await
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let store = DynamoStore::new(connect().await, &config.table_name)
        .with_signer(DigestSigner::from_env().await)
        .with_anchoring(anchoring.clone())
        .with_publisher(crate::publish::Publisher::from_env().await);
    if let Some(cluster) = cluster_of(&cli.command) {
        require_cluster(&store, cluster).await?;
    }
    let output = cli.output;
    match cli.command {
        Command::Parse(_) => Ok(()),
        Command::Setup => {
            let setup = create_table(store.client(), store.table())
                .await
                .map_err(processing)?;
            if let Some(error) = &setup.backups_not_enabled {
                eprintln!("warning: point-in-time recovery is not enabled: {error}");
            }
            if let Some(error) = &setup.expiry_not_enabled {
                eprintln!(
                    "warning: time to live is not enabled (snapshots and step logs are kept): {error}"
                );
            }
            let state = if setup.created {
                "created"
            } else {
                "already exists"
            };
            render::emit(
                output,
                &serde_json::json!({"table": store.table(), "state": state}),
                || format!("table {} {state}\n", store.table()),
            )
        }
        Command::Ingest(input) => ingest_files(&store, &config, &input, output).await,
        Command::Backfill {
            log_group,
            start,
            end,
            restart,
        } => {
            let aws = aws_config::from_env().load().await;
            let logs = aws_sdk_cloudwatchlogs::Client::new(&aws);
            let request = backfill::Request {
                log_group,
                start_ms: start.map(|time| time.micros().div_euclid(1000)),
                end_ms: end.map(|time| time.micros().div_euclid(1000)),
                restart,
            };
            let report = backfill::backfill(&store, &config, &logs, &request)
                .await
                .map_err(processing)?;
            render::emit(output, &report, || render::report_text(&report))
        }
        Command::Trail {
            cluster,
            hsm,
            from,
            to,
        } => {
            let mut out = list_out(output, "(none)");
            store
                .trail_pages(&cluster, hsm.as_deref(), Window { from, to }, |page| {
                    out.trail(&page).map_err(written)
                })
                .await?;
            finish(out)
        }
        Command::Sessions {
            cluster,
            user,
            from,
            to,
            paging,
        } => {
            let paging = paging.paging()?;
            let window = Window { from, to };
            let mut out = list_out(output, "(no sessions)");
            let mut write = |row| out.row(row).map_err(written);
            match &user {
                Some(user) => continuation(
                    window::user_sessions(&store, &cluster, user, window, &paging, &mut write)
                        .await?,
                ),
                None if paging != Paging::default() => {
                    return Err(Failure::Usage(
                        "--limit and --after page one user's sessions: add --user".into(),
                    ));
                }
                None => window::sessions_by_time(&store, &cluster, window, &mut write).await?,
            }
            finish(out)
        }
        Command::Key {
            cluster,
            handle,
            object,
            paging,
        } => {
            let paging = paging.paging()?;
            let of = match (object, handle) {
                (Some(object), _) => KeyOf::Object(object),
                (None, Some(handle)) => KeyOf::Handle(handle),
                (None, None) => return Err(Failure::Usage("--handle or --object".into())),
            };
            let mut out = list_out(output, "(no keys)");
            let stopped = window::key_generations(&store, &cluster, &of, &paging, &mut |row| {
                out.row(row).map_err(written)
            })
            .await?;
            continuation(stopped);
            finish(out)
        }
        Command::Keys { cluster, from, to } => {
            let window = Window { from, to };
            let mut out = list_out(output, "(no keys)");
            if window.is_open() {
                // The table holds handles in the order of their digits as text; the
                // listing is by number.
                let mut sorted = stream::Reorder::new(format_of(output)).map_err(written)?;
                window::keys_stored(&store, &cluster, &mut |row| {
                    if let ViewRow::KeyHead(key) = &row {
                        let (handle, object, generation, kind) = key.listing_key();
                        let place = (
                            handle,
                            object.map(str::to_owned),
                            generation,
                            kind.to_owned(),
                        );
                        sorted.start(place).map_err(written)?;
                    }
                    sorted.row(row).map_err(written)
                })
                .await?;
                sorted.finish(&mut out).map_err(written)?;
            } else {
                window::keys_by_time(&store, &cluster, window, &mut |row| {
                    out.row(row).map_err(written)
                })
                .await?;
            }
            finish(out)
        }
        Command::FailedLogins { cluster, from, to } => {
            let mut out = list_out(output, "(none)");
            window::failed_logins(&store, &cluster, Window { from, to }, &mut |row| {
                out.row(row).map_err(written)
            })
            .await?;
            finish(out)
        }
        Command::Alerts {
            cluster,
            kind,
            from,
            to,
        } => {
            let mut out = list_out(output, "(none)");
            let kind = kind.map(AlertKind::as_str);
            window::alerts(
                &store,
                &cluster,
                Window { from, to },
                kind,
                false,
                &mut |row| out.row(row).map_err(written),
            )
            .await?;
            finish(out)
        }
        Command::Quorum { cluster, from, to } => {
            let mut out = stream::QuorumOut::new(stdout(), format_of(output));
            window::quorum_pages(&store, &cluster, Window { from, to }, &mut |page| {
                out.page(crate::store::dynamodb::items::quorum_from_items(page)?)
                    .map_err(written)
            })
            .await?;
            out.finish().map_err(written)
        }
        Command::Report {
            cluster,
            from,
            to,
            out,
            max_key_age,
            format,
            data,
        } => {
            let now = Timestamp::from_millis(chrono::Utc::now().timestamp_millis());
            let options = crate::report::Options {
                cluster,
                from,
                to,
                max_key_age_micros: max_key_age,
                as_of: to.unwrap_or(now),
                generated_at: now,
            };
            let summary = write_report(&store, options, &out, format, data).await?;
            render::emit(output, &summary, || render::report_summary_text(&summary))
        }
        Command::Quarantine {
            export: Some(digest),
            out,
        } => {
            let content = store
                .quarantined_content(&digest)
                .await
                .map_err(processing)?
                .ok_or_else(|| {
                    Failure::Usage(format!("nothing quarantined has SHA-256 {digest}"))
                })?;
            match out {
                Some(path) => std::fs::write(&path, &content)
                    .map_err(|error| processing(format!("{}: {error}", path.display()))),
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&content).map_err(processing)
                }
            }
        }
        Command::Quarantine { export: None, .. } => {
            let items = store.quarantined().await.map_err(processing)?;
            render::emit(output, &items, || render::quarantine_table(&items))
        }
        Command::Rederive { cluster } => {
            let bar = progress(1, "rederive", "clusters");
            bar.set_message(format!("rebuilding {cluster} from its trail"));
            let rebuilt = rederive(&store, &config, &cluster)
                .await
                .map_err(processing)?;
            bar.finish_and_clear();
            let summary = RederiveSummary {
                cluster,
                steps: rebuilt.steps,
                views_written: rebuilt.put,
                open_gaps: rebuilt.open_gaps,
            };
            render::emit(output, &summary, || {
                format!(
                    "rebuilt {}: {} views written in {} steps, {} open gaps\n",
                    summary.cluster, summary.views_written, summary.steps, summary.open_gaps
                )
            })
        }
        Command::Verify {
            cluster,
            from,
            to,
            public_key,
            kms_key_id,
            digests,
            anchors,
        } => {
            let anchors = match (anchors, &anchoring) {
                (false, _) => None,
                (true, None) => {
                    return Err(Failure::Usage(
                        "--anchors needs ANCHOR_LOG_GROUP, the log group the function anchors to"
                            .to_owned(),
                    ));
                }
                (true, Some(anchoring)) => {
                    let anchors = anchoring.read(&cluster).await.map_err(processing)?;
                    // A mistyped group reads as no anchors: say so, or it passes for a check.
                    if anchors.is_empty() {
                        eprintln!(
                            "warning: no anchors of {cluster} in log group {}",
                            anchoring.log_group()
                        );
                    }
                    Some(anchors)
                }
            };
            let public_key = match (public_key, kms_key_id) {
                (Some(path), _) => {
                    let bytes = std::fs::read(&path)
                        .map_err(|error| Failure::Usage(format!("{}: {error}", path.display())))?;
                    Some(
                        PublicKey::from_pem_or_der(&bytes).map_err(|error| {
                            Failure::Usage(format!("{}: {error}", path.display()))
                        })?,
                    )
                }
                (None, Some(key_id)) => Some(
                    kms_public_key(&kms_client().await, &key_id)
                        .await
                        .map_err(|message| Failure::Processing(message.into()))?
                        .0,
                ),
                (None, None) => None,
            };
            let options = VerifyOptions {
                public_key,
                from,
                to,
                exported: digests,
                anchors,
            };
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!("verifying {cluster}"));
            let report = verify_trail(&store, &cluster, &options, |records| {
                bar.set_message(format!("verifying {cluster}: {records} records"));
                bar.tick();
            })
            .await
            .map_err(processing)?;
            bar.finish_and_clear();
            render::emit(output, &report, || render::verify_text(&report))?;
            if report.clean {
                Ok(())
            } else {
                Err(Failure::Unverified)
            }
        }
        Command::Export {
            cluster,
            from,
            to,
            format,
            out,
            account,
            region,
        } => {
            let window = export::Window { from, to };
            let layout = match (format, account) {
                (ExportFormat::Ndjson, _) => export::Layout::Ndjson,
                (ExportFormat::Parquet, Some(account)) => {
                    export::Layout::SecurityLake { region, account }
                }
                (ExportFormat::Parquet, None) => {
                    return Err(Failure::Usage(
                        "--format parquet needs --account (Security Lake's accountId=)".into(),
                    ));
                }
            };
            let summary =
                export::export_ocsf(&store, store.table(), &cluster, window, &out, layout)
                    .await
                    .map_err(processing)?;
            render::emit(output, &summary, || {
                format!(
                    "{} OCSF events of {cluster} written to {}\n",
                    summary.events,
                    out.display()
                )
            })
        }
        Command::Digests { cluster, out } => {
            let written = export_digests(&store, &cluster, &out)
                .await
                .map_err(processing)?;
            render::emit(
                output,
                &serde_json::json!({"cluster": cluster, "digests": written, "out": out}),
                || {
                    format!(
                        "{written} digests of {cluster} written to {}\n",
                        out.display()
                    )
                },
            )
        }
    }
}

/// What `report --output json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ReportSummary {
    pub out: PathBuf,
    pub format: &'static str,
    /// Rows written (CSV, JSON); absent for HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// What the HTML report counted; absent for CSV and JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<ReportCounts>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReportCounts {
    pub streams: usize,
    pub complete: bool,
    pub missing_ranges: usize,
    pub keys: usize,
    pub keys_past_crypto_period: usize,
    pub sessions: usize,
    pub failed_logins: usize,
    pub alerts: usize,
}

/// Writes the report next to `out` and moves it there once whole, so that a failed run
/// never leaves half a file where a finished one is expected.
async fn write_report(
    store: &DynamoStore,
    options: crate::report::Options,
    out: &std::path::Path,
    format: ReportFormat,
    data: Option<ReportData>,
) -> Result<ReportSummary, Failure> {
    use crate::report::{read, rows};
    use std::io::BufWriter;
    if format == ReportFormat::Html && data.is_some() {
        return Err(Failure::Usage(
            "--data chooses the rows of --format csv or json; the HTML report holds them all"
                .into(),
        ));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .map_err(|error| Failure::Usage(format!("{}: {error}", partial.display())))?;
    let mut writer = BufWriter::new(file);
    let failed = |error: read::ReportError| {
        let _ = std::fs::remove_file(&partial);
        match error {
            read::ReportError::Store(error) => processing(error),
            other => processing(other),
        }
    };
    let mut summary = ReportSummary {
        out: out.to_owned(),
        format: match format {
            ReportFormat::Html => "html",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        },
        rows: None,
        counts: None,
    };
    if format == ReportFormat::Html {
        let quarantine = quarantine_reasons(store, &options.cluster)
            .await
            .map_err(|error| failed(error.into()))?;
        let mut report = read::build(store, options, crate::report::Limits::default())
            .await
            .map_err(failed)?;
        report.quarantine = quarantine;
        crate::report::html::write(&report, &mut writer)
            .and_then(|()| std::io::Write::flush(&mut writer))
            .map_err(|error| failed(error.into()))?;
        summary.counts = Some(ReportCounts {
            streams: report.streams.len(),
            complete: report.complete(),
            missing_ranges: report.streams.iter().map(|s| s.gaps.len()).sum(),
            keys: report.keys.total,
            keys_past_crypto_period: report.keys_past_period,
            sessions: report.sessions.total,
            failed_logins: report.failed_logins.total,
            alerts: report.alerts.total,
        });
    } else {
        let row_format = if format == ReportFormat::Csv {
            rows::RowFormat::Csv
        } else {
            rows::RowFormat::Json
        };
        let mut rows_out = rows::RowWriter::new(writer, row_format, &options.cluster);
        let (written, columns) = match data.unwrap_or(ReportData::Keys) {
            ReportData::Keys => (
                read::export_keys(store, options, &mut rows_out).await,
                &rows::INVENTORY_COLUMNS[..],
            ),
            ReportData::Alerts => (
                read::export_alerts(store, &options, &mut rows_out).await,
                &rows::ALERT_COLUMNS[..],
            ),
        };
        summary.rows = Some(written.map_err(failed)?);
        rows_out
            .finish(columns)
            .map_err(|error| failed(error.into()))?;
    }
    std::fs::rename(&partial, out)
        .map_err(|error| processing(format!("{}: {error}", out.display())))?;
    Ok(summary)
}

/// The quarantined input of `cluster`, and of no cluster (without a log group to tell),
/// by reason.
async fn quarantine_reasons(
    store: &DynamoStore,
    cluster: &str,
) -> Result<BTreeMap<String, usize>, crate::store::StoreError> {
    let mut reasons = BTreeMap::new();
    for item in store.quarantined().await? {
        let of = item.log_group.as_deref().map(|group| {
            crate::model::StreamId::from_log(group, item.log_stream.as_deref().unwrap_or_default())
                .cluster
        });
        if of.is_none_or(|of| &*of == cluster) {
            *reasons.entry(item.reason).or_default() += 1;
        }
    }
    Ok(reasons)
}

/// What `rederive --output json` prints.
#[derive(Debug, Serialize)]
struct RederiveSummary {
    cluster: String,
    steps: usize,
    views_written: usize,
    open_gaps: usize,
}

/// Reads one file, once, and decodes it as `--format` says. Undecodable content is
/// quarantined, not an error; only a file that cannot be read, or raw text without its
/// group and stream, is.
fn decode_input(
    file: &std::path::Path,
    input: &InputArgs,
    source: &RawTextSource,
    max_inflated_bytes: usize,
) -> Result<Vec<crate::decode::Decoded>, String> {
    let bytes = std::fs::read(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let luna = match input.format {
        InputFormat::Luna => true,
        InputFormat::Auto => crate::decode::looks_like_luna_file(&bytes, max_inflated_bytes),
    };
    if luna {
        return Ok(crate::decode::decode_luna_file(
            &bytes,
            &name,
            input.log_group.as_deref(),
            max_inflated_bytes,
        ));
    }
    crate::decode::decode_document(&bytes, &name, source, max_inflated_bytes)
}

fn source_of(input: &InputArgs) -> RawTextSource {
    RawTextSource {
        log_group: input.log_group.clone(),
        log_stream: input.log_stream.clone(),
    }
}

/// A progress bar of `len` `unit`s for `task`.
fn progress(len: usize, task: &str, unit: &str) -> ProgressBar {
    // indicatif draws on stderr only when it is a terminal: scripts see clean output.
    let bar = ProgressBar::new(len as u64);
    let template = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(task.to_owned());
    bar
}

async fn ingest_files(
    store: &DynamoStore,
    config: &Config,
    input: &InputArgs,
    output: Output,
) -> Result<(), Failure> {
    let files = files::collect(&input.paths).map_err(Failure::Usage)?;
    let source = source_of(input);
    let bar = progress(files.len(), "ingest", "files");
    let mut report = Report::default();
    let mut quarantine = Vec::new();
    for file in &files {
        let parsed = parse_decoded(
            decode_input(file, input, &source, config.max_inflated_bytes)
                .map_err(Failure::Usage)?,
        );
        quarantine.extend(parsed.quarantined.iter().map(|item| QuarantineNote {
            file: file.clone(),
            reason: item.reason.clone(),
            raw_sha256: item.raw_sha256.clone(),
        }));
        // Each file as the function takes one delivery (a subscription payload, a Kinesis
        // or Firehose batch): stored, then derived, so that what the CLI shows is what the
        // function does.
        let mut stored = store_parsed(store, parsed).await.map_err(processing)?;
        derive_clusters(store, config, &mut stored, stop_at_first)
            .await
            .map_err(processing)?;
        report.add(stored);
        bar.set_message(format!("{} records", report.records));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = IngestSummary { report, quarantine };
    render::emit(output, &summary, || render::ingest_text(&summary))
}

/// What `ingest` prints: the pipeline's counts, and each item it quarantined with the
/// file it came from, so that input that was not taken says why.
#[derive(Debug, Serialize)]
pub(crate) struct IngestSummary {
    #[serde(flatten)]
    pub report: Report,
    pub quarantine: Vec<QuarantineNote>,
}

#[derive(Debug, Serialize)]
pub(crate) struct QuarantineNote {
    pub file: PathBuf,
    pub reason: String,
    /// The key of `quarantine --export`.
    pub raw_sha256: String,
}

/// The `parse --output json` contract: counts that the benchmark and scripts rely on.
#[derive(Debug, Serialize)]
struct ParseSummary {
    events: usize,
    quarantined: usize,
    failed_logins: usize,
    control_messages: usize,
    by_opcode: BTreeMap<String, usize>,
    clusters: BTreeSet<String>,
}

fn parse_only(input: &InputArgs, output: Output) -> Result<(), Failure> {
    let max_inflated_bytes = crate::config::max_inflated_bytes_from_env()
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let files = files::collect(&input.paths).map_err(Failure::Usage)?;
    let source = source_of(input);
    let bar = progress(files.len(), "parse", "files");
    let mut summary = ParseSummary {
        events: 0,
        quarantined: 0,
        failed_logins: 0,
        control_messages: 0,
        by_opcode: BTreeMap::new(),
        clusters: BTreeSet::new(),
    };
    for file in &files {
        let parsed = parse_decoded(
            decode_input(file, input, &source, max_inflated_bytes).map_err(Failure::Usage)?,
        );
        for entry in parsed.records() {
            summary.events += 1;
            summary.failed_logins += usize::from(entry.record.is_failed_login());
            let opcode = entry.record.opcode_name();
            match summary.by_opcode.get_mut(opcode) {
                Some(count) => *count += 1,
                None => {
                    summary.by_opcode.insert(opcode.to_owned(), 1);
                }
            }
        }
        summary.quarantined += parsed.quarantined.len();
        summary.control_messages += parsed.control_messages;
        summary.clusters.extend(parsed.entries.keys().cloned());
        bar.inc(1);
    }
    bar.finish_and_clear();
    render::emit(output, &summary, || {
        render::parse_text(
            summary.events,
            summary.quarantined,
            summary.failed_logins,
            &summary.by_opcode,
        )
    })
}
