//! Configuration, read once from the environment; each error names its variable.

use std::env;

use crate::domain::DeriveConfig;

/// A payload of CloudWatch Logs holds at most ~1 MiB of log text; 16 MiB leaves room for
/// JSON overhead and future limits while keeping a bomb far from a 128 MB Lambda's memory.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 16 * 1024 * 1024;

/// The metrics' `Service` outside a stack (the CLI, local runs), when `METRICS_SERVICE`
/// is unset.
pub const DEFAULT_METRICS_SERVICE: &str = "hsm-audit";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub derive: DeriveConfig,
    pub max_inflated_bytes: usize,
    /// The most records of one stream a derivation step reads (its memory bound).
    pub tail_records_per_stream: usize,
    /// How long a step's snapshot, log and object versions are kept: how late a record
    /// may arrive and still be replayed into the views (`LATE_HORIZON_SECONDS`).
    pub late_horizon_micros: i64,
    /// How far ahead of the invocation's clock a record may be timed and be folded at
    /// once (`CLOCK_SKEW_SECONDS`); one further ahead waits for its time.
    pub clock_skew_micros: i64,
    /// The value of the metrics' `Service` dimension: `METRICS_SERVICE` (the template
    /// sets the stack's name), [`DEFAULT_METRICS_SERVICE`] when unset.
    pub metrics_service: String,
    /// Test hook, unset in every deployment: `HSM_AUDIT_PANIC_ON_LOG_GROUP` names a log
    /// group whose invocations panic after their records are stored, so that
    /// `scripts/panic-check.py` can show what the release artifact does with a panic.
    pub panic_on_log_group: Option<String>,
}

/// How the process logs: Lambda's advanced logging controls set `AWS_LAMBDA_LOG_FORMAT`
/// and `AWS_LAMBDA_LOG_LEVEL` (the template's `LoggingConfig`); `RUST_LOG` is the
/// fallback elsewhere (the CLI, `cargo lambda watch`) and may hold full directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub json: bool,
    /// A `tracing` filter directive: `info`, `debug`, `hsm_audit=debug,info`.
    pub filter: String,
}

impl Logging {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let json = lookup("AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|format| format.trim().eq_ignore_ascii_case("json"));
        let filter = lookup("AWS_LAMBDA_LOG_LEVEL")
            .map(|level| level.trim().to_ascii_lowercase())
            .or_else(|| lookup("RUST_LOG"))
            .filter(|filter| !filter.trim().is_empty())
            .unwrap_or_else(|| "info".to_owned());
        Self { json, filter }
    }

    /// Installs the process's `tracing` subscriber: JSON lines (with the current span's
    /// fields, so every line of an invocation names its log groups and streams) when
    /// Lambda asks for JSON, text otherwise. No timestamps: CloudWatch Logs adds its own.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_target(false)
            .without_time()
            .with_env_filter(filter);
        if self.json {
            builder.json().with_current_span(true).init();
        } else {
            builder.init();
        }
    }
}

/// `MAX_INFLATED_BYTES` alone, for commands that need no table (`hsm-audit parse`).
pub fn max_inflated_bytes_from_env() -> Result<usize, ConfigError> {
    match env::var("MAX_INFLATED_BYTES") {
        Err(_) => Ok(DEFAULT_MAX_INFLATED_BYTES),
        Ok(value) => value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|count| *count > 0)
            .ok_or(ConfigError::Invalid {
                name: "MAX_INFLATED_BYTES",
                value,
                expected: "a positive whole number",
            }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name}={value:?} is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Config {
    /// Reads `TABLE_NAME`, `MIRROR_WINDOW_SECONDS`, `BRUTE_FORCE_THRESHOLD`,
    /// `BRUTE_FORCE_WINDOW_SECONDS`, `LUNA_SESSION_IDLE_SECONDS`, `SESSION_HORIZON_SECONDS`,
    /// `ALLOWED_LATENESS_SECONDS`,
    /// `TAIL_RECORDS_PER_STREAM` and `MAX_INFLATED_BYTES`; `table_name` overrides
    /// `TABLE_NAME` (the CLI's `--table`).
    pub fn from_env(table_name: Option<String>) -> Result<Self, ConfigError> {
        Self::from_lookup(table_name, |name| env::var(name).ok())
    }

    /// [`Config::from_env`] over any variable source, so tests need not touch the process environment.
    pub fn from_lookup(
        table_name: Option<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table_name = table_name
            .or_else(|| lookup("TABLE_NAME"))
            .filter(|name| !name.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let defaults = DeriveConfig::default();
        let seconds = |name: &'static str, default_micros: i64| -> Result<i64, ConfigError> {
            match lookup(name) {
                None => Ok(default_micros),
                Some(value) => value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                    .map(|seconds| (seconds * 1e6).round() as i64)
                    .ok_or(ConfigError::Invalid {
                        name,
                        value,
                        expected: "a non-negative number of seconds",
                    }),
            }
        };
        let count = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(value) => value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or(ConfigError::Invalid {
                        name,
                        value,
                        expected: "a positive whole number",
                    }),
            }
        };
        Ok(Self {
            table_name,
            derive: DeriveConfig {
                mirror_window_micros: seconds(
                    "MIRROR_WINDOW_SECONDS",
                    defaults.mirror_window_micros,
                )?,
                brute_force_threshold: count(
                    "BRUTE_FORCE_THRESHOLD",
                    defaults.brute_force_threshold,
                )?,
                brute_force_window_micros: seconds(
                    "BRUTE_FORCE_WINDOW_SECONDS",
                    defaults.brute_force_window_micros,
                )?,
                luna_idle_window_micros: seconds(
                    "LUNA_SESSION_IDLE_SECONDS",
                    defaults.luna_idle_window_micros,
                )?,
                session_horizon_micros: seconds(
                    "SESSION_HORIZON_SECONDS",
                    defaults.session_horizon_micros,
                )?,
                allowed_lateness_micros: seconds(
                    "ALLOWED_LATENESS_SECONDS",
                    defaults.allowed_lateness_micros,
                )?,
            },
            max_inflated_bytes: count("MAX_INFLATED_BYTES", DEFAULT_MAX_INFLATED_BYTES)?,
            tail_records_per_stream: count(
                "TAIL_RECORDS_PER_STREAM",
                crate::incremental::TAIL_RECORDS_PER_STREAM,
            )?,
            late_horizon_micros: seconds(
                "LATE_HORIZON_SECONDS",
                crate::incremental::LATE_HORIZON_SECONDS * 1_000_000,
            )?,
            clock_skew_micros: seconds(
                "CLOCK_SKEW_SECONDS",
                crate::incremental::CLOCK_SKEW_SECONDS * 1_000_000,
            )?,
            metrics_service: lookup("METRICS_SERVICE")
                .filter(|service| !service.is_empty())
                .unwrap_or_else(|| DEFAULT_METRICS_SERVICE.to_owned()),
            panic_on_log_group: lookup("HSM_AUDIT_PANIC_ON_LOG_GROUP")
                .filter(|group| !group.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn logging_follows_lambdas_controls_then_rust_log() {
        let logging = Logging::from_lookup(lookup(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
        ]));
        assert_eq!(
            logging,
            Logging {
                json: true,
                filter: "warn".into()
            }
        );
        let logging = Logging::from_lookup(lookup(&[("RUST_LOG", "hsm_audit=debug,info")]));
        assert!(!logging.json);
        assert_eq!(logging.filter, "hsm_audit=debug,info");
        assert_eq!(Logging::from_lookup(lookup(&[])).filter, "info");
    }

    #[test]
    fn defaults_apply_when_only_the_table_is_set() {
        let config = Config::from_lookup(None, lookup(&[("TABLE_NAME", "t")])).unwrap();
        assert_eq!(config.table_name, "t");
        assert_eq!(config.derive, DeriveConfig::default());
        assert_eq!(config.max_inflated_bytes, DEFAULT_MAX_INFLATED_BYTES);
        assert_eq!(config.panic_on_log_group, None);
        assert_eq!(config.metrics_service, DEFAULT_METRICS_SERVICE);
    }

    #[test]
    fn values_are_read_and_bad_ones_named() {
        let config = Config::from_lookup(
            Some("cli".into()),
            lookup(&[
                ("TABLE_NAME", "t"),
                ("MIRROR_WINDOW_SECONDS", "2.5"),
                ("BRUTE_FORCE_THRESHOLD", "3"),
                ("METRICS_SERVICE", "stack-a"),
                ("HSM_AUDIT_PANIC_ON_LOG_GROUP", "/test/panic"),
            ]),
        )
        .unwrap();
        assert_eq!(config.table_name, "cli");
        assert_eq!(config.metrics_service, "stack-a");
        assert_eq!(config.panic_on_log_group.as_deref(), Some("/test/panic"));
        assert_eq!(config.derive.mirror_window_micros, 2_500_000);
        assert_eq!(config.derive.brute_force_threshold, 3);
        let error = Config::from_lookup(
            None,
            lookup(&[("TABLE_NAME", "t"), ("BRUTE_FORCE_THRESHOLD", "many")]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("BRUTE_FORCE_THRESHOLD"),
            "{error}"
        );
        assert_eq!(
            Config::from_lookup(None, lookup(&[])),
            Err(ConfigError::Missing("TABLE_NAME"))
        );
    }
}
