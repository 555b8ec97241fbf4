//! A synthetic but realistic workload for benchmarks and load tests: CloudWatch Logs
//! subscription events of several HSMs of one cluster, with interleaved sessions of many
//! users (logins mirrored on every HSM), key creation and synchronisation, pairs,
//! exports, shares and destruction, and about 5 % failed logins. With `app`, an
//! application's session besides: logged in once on every HSM and never out, using a
//! few keys over and over between the interactive sessions — the long session and the
//! busy keys whose views grow with the history.
//!
//! Deterministic for a seed, so two runs of a benchmark measure the same input.

use super::events::{b64, gzip, log_event, subscription_payload};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub cluster: String,
    pub hsms: usize,
    pub users: usize,
    /// Records in all, across HSMs (mirrored logins included).
    pub records: usize,
    /// Log events per subscription payload; CloudWatch batches per stream.
    pub records_per_payload: usize,
    pub seed: u64,
    /// An application's session using a few keys throughout (see the module doc).
    pub app: bool,
    /// Deliver an HSM's records at the latest this many seconds (of event time) after
    /// the first of them, as CloudWatch Logs does, rather than only when a payload is
    /// full: a quiet HSM's records then arrive with the busy ones', not hours later.
    pub delivery_seconds: Option<u64>,
    /// Time runs this many times faster than the default pace (about a million records
    /// a month): a busy cluster's hundreds of records a second.
    pub speedup: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            cluster: "cluster-bench".into(),
            hsms: 3,
            users: 40,
            records: 10_000,
            records_per_payload: 1000,
            seed: 7,
            app: false,
            delivery_seconds: None,
            speedup: 1,
        }
    }
}

/// One generated Lambda input.
#[derive(Debug, Clone)]
pub struct GeneratedPayload {
    pub log_stream: String,
    /// `{"awslogs": {"data": …}}`, exactly what the subscription delivers.
    pub event: serde_json::Value,
    pub records: usize,
    /// Size of the subscription JSON before compression.
    pub inflated_bytes: usize,
    pub compressed_bytes: usize,
}

struct Hsm {
    id: String,
    next_seq: u64,
    pending: Vec<(i64, String)>,
    handle_base: u64,
}

struct Simulation {
    spec: WorkloadSpec,
    rng: fastrand::Rng,
    hsms: Vec<Hsm>,
    now_micros: i64,
    records: usize,
    next_key: u64,
    live_keys: Vec<u64>,
    payloads: Vec<GeneratedPayload>,
    event_id: u64,
}

const REBOOT: u32 = 0x107;
const APP_USER: &str = "app-payments";

#[allow(clippy::too_many_arguments)]
fn render(
    boot: u32,
    time: i64,
    seq: u64,
    opcode: &str,
    code: u32,
    handle: u64,
    response: &str,
    tail: &str,
) -> String {
    let seconds = time / 1_000_000;
    let date = chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%m/%d/%y %H:%M:%S").to_string())
        .unwrap_or_default();
    format!(
        "Time: {date}.{:06}, usecs:{time}\nSequence No : {seq:#x}\nReboot counter : {boot:#x}\nCommand Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : {opcode} ({code:#x})\nSession Handle : {handle:#x}\nResponse : {response}\n{tail}",
        time % 1_000_000
    )
}

/// One CloudHSM management record of `user` (a crypto user) as the HSM logs it, under
/// reboot counter `boot`: what a bench builds a cluster of its own shape from.
pub fn user_record(
    time: i64,
    boot: u32,
    seq: u64,
    opcode: &str,
    code: u32,
    handle: u64,
    user: &str,
) -> String {
    let tail = user_tail(user, "CN_CRYPTO_USER");
    render(boot, time, seq, opcode, code, handle, OK, &tail)
}

fn user_tail(user: &str, user_type: &str) -> String {
    let code = if user_type == "CN_CRYPTO_OFFICER" {
        2
    } else {
        1
    };
    format!(
        "Log type : MGMT_USER_DETAILS_LOG (2)\nUser Name : {user}\nUser Type : {user_type} ({code})"
    )
}

fn key_tail(private: u64, public: u64) -> String {
    format!(
        "Log type : MGMT_KEY_DETAILS_LOG (1)\nPriv/Secret Key Handle : {private}\nPublic Key Handle : {public}"
    )
}

const OK: &str = "0:HSM Return: SUCCESS";

impl Simulation {
    fn emit(&mut self, hsm: usize, text_of: impl FnOnce(u64) -> String) {
        let seq = self.hsms[hsm].next_seq;
        self.hsms[hsm].next_seq += 1;
        let text = text_of(seq);
        self.hsms[hsm].pending.push((self.now_micros, text));
        self.records += 1;
        if self.hsms[hsm].pending.len() >= self.spec.records_per_payload {
            self.flush(hsm);
        }
        if let Some(seconds) = self.spec.delivery_seconds {
            let due = self.now_micros
                - i64::try_from(seconds).unwrap_or(i64::MAX / 2_000_000) * 1_000_000;
            for index in 0..self.hsms.len() {
                if self.hsms[index]
                    .pending
                    .first()
                    .is_some_and(|(time, _)| *time < due)
                {
                    self.flush(index);
                }
            }
        }
    }

    /// Logs a record on `hsm` at the current time.
    fn log(
        &mut self,
        hsm: usize,
        (opcode, code): (&str, u32),
        handle: u64,
        response: &str,
        tail: &str,
    ) {
        let time = self.now_micros;
        self.emit(hsm, |seq| {
            render(REBOOT, time, seq, opcode, code, handle, response, tail)
        });
    }

    fn tick(&mut self, max_millis: u64) {
        let micros = self.rng.u64(1..=max_millis.max(1)) * 1000 / self.spec.speedup.max(1);
        self.now_micros += i64::try_from(micros.max(1)).unwrap_or(1000);
    }

    fn flush(&mut self, hsm: usize) {
        let pending = std::mem::take(&mut self.hsms[hsm].pending);
        if pending.is_empty() {
            return;
        }
        let events: Vec<serde_json::Value> = pending
            .iter()
            .map(|(time, message)| {
                self.event_id += 1;
                log_event(self.event_id, time / 1000, message)
            })
            .collect();
        let payload = subscription_payload(
            &format!("/aws/cloudhsm/{}", self.spec.cluster),
            &self.hsms[hsm].id,
            events,
        );
        let json = payload.to_string();
        let compressed = gzip(json.as_bytes());
        let data = b64(&compressed);
        self.payloads.push(GeneratedPayload {
            log_stream: self.hsms[hsm].id.clone(),
            event: serde_json::json!({"awslogs": {"data": data}}),
            records: pending.len(),
            inflated_bytes: json.len(),
            compressed_bytes: compressed.len(),
        });
    }

    fn session(&mut self) {
        let user_index = self.rng.usize(..self.spec.users.max(1));
        let officer = user_index.is_multiple_of(8);
        let (user, user_type) = if officer {
            (format!("co-{user_index:03}"), "CN_CRYPTO_OFFICER")
        } else {
            (format!("cu-{user_index:03}"), "CN_CRYPTO_USER")
        };
        let origin = self.rng.usize(..self.hsms.len());
        let slot = self.rng.u64(1..0xfff) << 4;
        let handle_of = |hsm: &Hsm| hsm.handle_base | slot;
        // A session writes ~12 records: a third of the attempts failing makes ~5 % of records failed logins.
        if self.rng.u8(..100) < 33 {
            let handle = handle_of(&self.hsms[origin]);
            let (response, tail) = if self.rng.bool() {
                (
                    "163:HSM Error: RET_USER_LOGIN_FAILURE",
                    user_tail(&user, user_type),
                )
            } else {
                (
                    "157:HSM Error: user isn't initialized or user with this name doesn't exist",
                    user_tail("nobody", user_type),
                )
            };
            self.log(origin, ("CN_LOGIN", 0xd), handle | 2, response, &tail);
            self.tick(2000);
            return;
        }
        for offset in 0..self.hsms.len() {
            let hsm = (origin + offset) % self.hsms.len();
            let handle = handle_of(&self.hsms[hsm]) | 2;
            let tail = user_tail(&user, user_type);
            self.log(hsm, ("CN_LOGIN", 0xd), handle, OK, &tail);
            self.tick(30);
        }
        let command_handle = handle_of(&self.hsms[origin]) | 4;
        for _ in 0..self.rng.usize(1..8) {
            self.tick(5000);
            self.command(origin, command_handle, officer, &user);
        }
        self.tick(3000);
        let tail = user_tail(&user, user_type);
        self.log(origin, ("CN_LOGOUT", 0xe), command_handle, OK, &tail);
    }

    fn command(&mut self, origin: usize, handle: u64, officer: bool, user: &str) {
        match self.rng.u8(..10) {
            0..=2 => {
                let key = self.generate_key(origin, handle);
                self.synchronise(origin, handle, key);
            }
            3 => {
                let (private, public) = (self.new_key(), self.new_key());
                self.log(
                    origin,
                    ("CN_GENERATE_KEY_PAIR", 0x19),
                    handle,
                    OK,
                    &key_tail(private, public),
                );
                self.synchronise(origin, handle, private);
            }
            4 | 5 if !self.live_keys.is_empty() => {
                let key = self.live_keys[self.rng.usize(..self.live_keys.len())];
                let (opcode, code) = if self.rng.bool() {
                    ("CN_WRAP_KEY", 0x1a)
                } else {
                    ("CN_NIST_AES_WRAP", 0x1e)
                };
                self.log(origin, (opcode, code), handle, OK, &key_tail(key, 0));
            }
            6 if !self.live_keys.is_empty() => {
                let key = self
                    .live_keys
                    .swap_remove(self.rng.usize(..self.live_keys.len()));
                for hsm in 0..self.hsms.len() {
                    let handle = if hsm == origin {
                        handle
                    } else {
                        self.hsms[hsm].handle_base | 3
                    };
                    self.log(
                        hsm,
                        ("CN_DESTROY_OBJECT", 0x11),
                        handle,
                        OK,
                        &key_tail(key, 0),
                    );
                }
            }
            7 if officer => {
                let target = format!("cu-{:03}", self.rng.usize(..self.spec.users.max(1)));
                let tail = user_tail(&target, "CN_CRYPTO_USER");
                self.log(origin, ("CN_CREATE_USER", 0x3), handle, OK, &tail);
            }
            _ => {
                let tail = format!("Log type : MINIMAL_LOG_ENTRY (0)\nUser Name : {user}");
                self.log(origin, ("CN_FIPS_RAND", 0x7), handle, OK, &tail);
            }
        }
    }

    /// The application logs in on every HSM (its handle slot 0 is never an interactive
    /// session's) and makes its keys on the first.
    fn app_login(&mut self) -> Vec<u64> {
        let tail = user_tail(APP_USER, "CN_CRYPTO_USER");
        for hsm in 0..self.hsms.len() {
            let handle = self.hsms[hsm].handle_base | 2;
            self.log(hsm, ("CN_LOGIN", 0xd), handle, OK, &tail);
            self.tick(30);
        }
        let handle = self.hsms[0].handle_base | 4;
        (0..3)
            .map(|_| {
                self.tick(100);
                let key = self.generate_key(0, handle);
                // The application's keys are never destroyed by the interactive sessions.
                self.live_keys.retain(|&live| live != key);
                key
            })
            .collect()
    }

    /// One use of one of the application's keys, on the HSM it logged in first.
    fn app_command(&mut self, keys: &[u64]) {
        let key = keys[self.rng.usize(..keys.len())];
        let handle = self.hsms[0].handle_base | 4;
        self.log(0, ("CN_NIST_AES_WRAP", 0x1e), handle, OK, &key_tail(key, 0));
    }

    /// A key generated now on `origin`, in session `handle`.
    fn generate_key(&mut self, origin: usize, handle: u64) -> u64 {
        let key = self.new_key();
        self.log(
            origin,
            ("CN_GENERATE_KEY", 0x17),
            handle,
            OK,
            &key_tail(key, 0),
        );
        key
    }

    fn new_key(&mut self) -> u64 {
        self.next_key += 1;
        self.live_keys.push(self.next_key);
        self.next_key
    }

    /// The client synchronises a new key: extracted on the origin, inserted elsewhere.
    fn synchronise(&mut self, origin: usize, handle: u64, key: u64) {
        self.tick(5);
        self.log(
            origin,
            ("CN_EXTRACT_MASKED_OBJECT_USER", 0xf0),
            handle,
            OK,
            &key_tail(key, 0),
        );
        for offset in 1..self.hsms.len() {
            let hsm = (origin + offset) % self.hsms.len();
            self.tick(40);
            let handle = self.hsms[hsm].handle_base | 3;
            self.log(
                hsm,
                ("CN_INSERT_MASKED_OBJECT_USER", 0xf1),
                handle,
                OK,
                &key_tail(key, 0),
            );
        }
    }
}

/// Generates the payloads of `spec`, in delivery order.
pub fn generate(spec: &WorkloadSpec) -> Vec<GeneratedPayload> {
    let hsms = (0..spec.hsms.max(1))
        .map(|index| Hsm {
            id: format!("hsm-bench{index:06}"),
            next_seq: 0,
            pending: Vec::new(),
            handle_base: (0x7 + index as u64) << 24,
        })
        .collect();
    let mut simulation = Simulation {
        spec: spec.clone(),
        rng: fastrand::Rng::with_seed(spec.seed),
        hsms,
        now_micros: 1_700_000_000_000_000,
        records: 0,
        next_key: 0x40000,
        live_keys: Vec::new(),
        payloads: Vec::new(),
        event_id: 0,
    };
    let app_keys = if spec.app {
        simulation.app_login()
    } else {
        Vec::new()
    };
    while simulation.records < spec.records {
        simulation.session();
        simulation.tick(20_000);
        if !app_keys.is_empty() {
            for _ in 0..simulation.rng.usize(1..6) {
                simulation.app_command(&app_keys);
                simulation.tick(500);
            }
        }
    }
    for hsm in 0..simulation.hsms.len() {
        simulation.flush(hsm);
    }
    simulation.payloads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_event;
    use crate::pipeline::parse_decoded;

    #[test]
    fn generated_payloads_parse_completely_with_some_failed_logins() {
        let spec = WorkloadSpec {
            records: 3000,
            records_per_payload: 500,
            ..WorkloadSpec::default()
        };
        let payloads = generate(&spec);
        assert!(payloads.len() >= 6);
        let parsed = parse_decoded(
            payloads
                .iter()
                .flat_map(|p| decode_event(&p.event, 16 << 20).into_decoded()),
        );
        assert!(
            parsed.quarantined.is_empty(),
            "{:?}",
            parsed.quarantined.first()
        );
        let records: Vec<_> = parsed.records().collect();
        assert_eq!(
            records.len(),
            payloads.iter().map(|p| p.records).sum::<usize>()
        );
        let failed = records
            .iter()
            .filter(|entry| entry.record.is_failed_login())
            .count();
        assert!(
            failed * 100 > records.len() && failed * 100 < records.len() * 6,
            "{failed} of {}",
            records.len()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_payloads() {
        let spec = WorkloadSpec {
            records: 500,
            ..WorkloadSpec::default()
        };
        let first: Vec<_> = generate(&spec).into_iter().map(|p| p.event).collect();
        let second: Vec<_> = generate(&spec).into_iter().map(|p| p.event).collect();
        assert_eq!(first, second);
    }
}
