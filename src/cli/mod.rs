//! `hsm-audit`: the same pipeline as the Lambda, from files, and the queries on what it
//! stored. Exit codes: 0 success, 1 processing error, 2 bad usage.

mod args;
pub mod backfill;
mod clusters;
pub mod export;
mod failure;
mod files;
mod input;
mod render;
mod report;
mod stream;

use std::env;
use std::process::ExitCode;

use clap::Parser;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::config::Config;
use crate::digest::anchor::Anchoring;
use crate::digest::kms::{DigestSigner, kms_client, public_key as kms_public_key};
use crate::digest::signature::PublicKey;
use crate::domain::AlertKind;
use crate::model::Timestamp;
use crate::pipeline::rederive;
use crate::store::dynamodb::items::ViewRow;
use crate::store::dynamodb::{DynamoStore, connect, create_table};
use crate::store::window::{self, Continuation, KeyOf, Paging};
use crate::verify::{VerifyOptions, export_digests, verify_trail};
use args::{Cli, Command, ExportFormat, Output, Scope};
use failure::{Failure, processing, written};

/// Names where a page stopped, on standard error (standard output stays the listing).
fn continuation(stopped: Continuation) {
    if let Some(sk) = stopped {
        let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sk);
        eprintln!("more: --after {token}");
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
        return input::parse_only(input, cli.output);
    }
    cli.command.check_window()?;
    let config = Config::from_env(cli.table.clone())
        .map_err(|error| Failure::Usage(format!("{error} (or pass --table)")))?;
    let anchoring = Anchoring::from_env()
        .await
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let store = DynamoStore::new(connect().await, &config.table_name)
        .with_signer(DigestSigner::from_env().await)
        .with_anchoring(anchoring.clone())
        .with_publisher(crate::publish::Publisher::from_env().await);
    if let Some(cluster) = cli.command.cluster() {
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
        Command::Ingest(input) => input::ingest_files(&store, &config, &input, output).await,
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
        Command::Trail { scope, hsm } => {
            let mut out = list_out(output, "(none)");
            store
                .trail_pages(&scope.cluster, hsm.as_deref(), scope.window(), |page| {
                    out.trail(&page).map_err(written)
                })
                .await?;
            finish(out)
        }
        Command::Sessions {
            scope,
            user,
            paging,
        } => {
            let paging = paging.paging()?;
            let (cluster, window) = (&scope.cluster, scope.window());
            let mut out = list_out(output, "(no sessions)");
            let mut write = |row| out.row(row).map_err(written);
            match &user {
                Some(user) => continuation(
                    window::user_sessions(&store, cluster, user, window, &paging, &mut write)
                        .await?,
                ),
                None if paging != Paging::default() => {
                    return Err(Failure::Usage(
                        "--limit and --after page one user's sessions: add --user".into(),
                    ));
                }
                None => window::sessions_by_time(&store, cluster, window, &mut write).await?,
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
        Command::Keys(scope) => {
            let (cluster, window) = (&scope.cluster, scope.window());
            let mut out = list_out(output, "(no keys)");
            if window.is_open() {
                // The table holds handles in the order of their digits as text; the
                // listing is by number.
                let mut sorted = stream::Reorder::new(format_of(output)).map_err(written)?;
                window::keys_stored(&store, cluster, &mut |row| {
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
                window::keys_by_time(&store, cluster, window, &mut |row| {
                    out.row(row).map_err(written)
                })
                .await?;
            }
            finish(out)
        }
        Command::FailedLogins(scope) => {
            let mut out = list_out(output, "(none)");
            window::failed_logins(&store, &scope.cluster, scope.window(), &mut |row| {
                out.row(row).map_err(written)
            })
            .await?;
            finish(out)
        }
        Command::Alerts { scope, kind } => {
            let mut out = list_out(output, "(none)");
            let kind = kind.map(AlertKind::as_str);
            window::alerts(
                &store,
                &scope.cluster,
                scope.window(),
                kind,
                false,
                &mut |row| out.row(row).map_err(written),
            )
            .await?;
            finish(out)
        }
        Command::Quorum(scope) => {
            let mut out = stream::QuorumOut::new(stdout(), format_of(output));
            window::quorum_pages(&store, &scope.cluster, scope.window(), &mut |page| {
                out.page(crate::store::dynamodb::items::quorum_from_items(page)?)
                    .map_err(written)
            })
            .await?;
            out.finish().map_err(written)
        }
        Command::Report {
            scope: Scope { cluster, from, to },
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
            let summary = report::write_report(&store, options, &out, format, data).await?;
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
            let bar = input::progress(1, "rederive", "clusters");
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
            scope: Scope { cluster, from, to },
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
            scope,
            format,
            out,
            account,
            region,
        } => {
            let window = scope.window();
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
                export::export_ocsf(&store, store.table(), &scope.cluster, window, &out, layout)
                    .await
                    .map_err(processing)?;
            render::emit(output, &summary, || {
                format!(
                    "{} OCSF events of {} written to {}\n",
                    summary.events,
                    scope.cluster,
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

/// What `rederive --output json` prints.
#[derive(Debug, Serialize)]
struct RederiveSummary {
    cluster: String,
    steps: usize,
    views_written: usize,
    open_gaps: usize,
}
