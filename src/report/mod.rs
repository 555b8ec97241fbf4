//! `hsm-audit report`: what an auditor is handed — one self-contained HTML file per
//! cluster and period (summary and trail completeness, key inventory, sessions, failed
//! logins, alerts, quorum) — and the key inventory and alerts as CSV or JSON rows.
//!
//! Design decision: **a bounded model, fed a page at a time.** [`read`] streams the
//! cluster's view items out of the store ([`crate::store::AuditStore::view_pages`]) into
//! a [`Builder`]; the model keeps counts of everything, compact marks for the charts
//! (one per session bar and failed login), and the rows of each table up to
//! [`Limits`] — a cluster with 100,000 keys gives a file a browser opens at once and the
//! counts of all of them, while the whole inventory is the CSV's (`--format csv`), which
//! is written row by row as it is read and never held. The model and its rendering
//! ([`html`], [`rows`]) are pure and tested without a store.

pub mod html;
pub mod read;
pub mod rows;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::{
    Alert, AlertKind, ClusterSession, FailedLogin, KeyEvent, KeyGeneration, KeyState, QuorumView,
    SessionEvent, StreamSummary,
};
use crate::model::Timestamp;

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// What the report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub cluster: String,
    /// Sessions, failed logins and alerts at or after this time; the inventory and the
    /// completeness of the trail are not cut by the period.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// The crypto-period: an active key older than this is flagged.
    pub max_key_age_micros: i64,
    /// Ages are measured to this instant: the end of the period, else when the report is
    /// written.
    pub as_of: Timestamp,
    pub generated_at: Timestamp,
}

impl Options {
    pub fn in_period(&self, time: Timestamp) -> bool {
        self.from.is_none_or(|from| time >= from) && self.to.is_none_or(|to| time <= to)
    }
}

/// How many rows of each table the HTML holds; counts and charts cover every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub key_rows: usize,
    pub session_rows: usize,
    pub commands_per_session: usize,
    pub failed_login_rows: usize,
    pub alert_rows: usize,
    /// Past this many sessions the timeline draws, per lane, the time covered by
    /// sessions (bars closer than a pixel merged) instead of one bar each.
    pub timeline_bars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            key_rows: 10_000,
            session_rows: 2_000,
            commands_per_session: 25,
            failed_login_rows: 5_000,
            alert_rows: 5_000,
            timeline_bars: 10_000,
        }
    }
}

/// Parses a crypto-period: `365d`, `52w`, `1y` (365 days), `720h`.
pub fn parse_age(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age: use e.g. 365d, 52w, 1y or 720h"))?;
    let unit_micros = match unit {
        "d" | "" => MICROS_PER_DAY,
        "w" => 7 * MICROS_PER_DAY,
        "y" => 365 * MICROS_PER_DAY,
        "h" => MICROS_PER_DAY / 24,
        _ => return Err(format!("`{text}`: the unit is one of d, w, y, h")),
    };
    number
        .checked_mul(unit_micros)
        .filter(|age| *age > 0)
        .ok_or_else(|| format!("`{text}` is not a positive age"))
}

/// A key state as the JSON contract spells it.
pub fn state_name(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Tombstoned => "tombstoned",
        KeyState::Destroyed => "destroyed",
    }
}

/// The opcodes whose success ends a key (CloudHSM, certificate storage, Luna).
const DESTROYING: [&str; 4] = [
    "CN_DESTROY_OBJECT",
    "CN_TOMBSTONE_OBJECT",
    "DestroyObject",
    "LUNA_DESTROY_OBJECT",
];

/// One row of the key inventory: a generation of a key, certificate or Luna object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryRow {
    /// `123`, `cert:123` or `luna:<ouid>`.
    pub key: String,
    pub generation: u32,
    pub kind: String,
    pub state: KeyState,
    pub created_time: Option<Timestamp>,
    pub created_by: Option<String>,
    pub created_opcode: Option<String>,
    pub hsms: Vec<String>,
    pub exported: bool,
    /// Users it is shared with at the end of the trail (names where the trail gives them).
    pub shared_with: Vec<String>,
    pub last_use_time: Option<Timestamp>,
    pub last_use_opcode: Option<String>,
    pub last_use_by: Option<String>,
    pub destroyed_time: Option<Timestamp>,
    pub destroyed_by: Option<String>,
    /// Days from creation to the report's `as_of`, for active keys whose creation is known.
    pub age_days: Option<i64>,
    pub past_crypto_period: bool,
    pub pair_handle: Option<u64>,
    pub events: usize,
}

impl InventoryRow {
    /// A row from a key's head item; its events are added one at a time.
    pub fn from_head(key: &KeyGeneration, options: &Options) -> Self {
        let name = match (&key.object_id, key.kind.as_str()) {
            (Some(object), _) => format!("luna:{object}"),
            (None, "certificate") => format!("cert:{}", key.handle),
            (None, _) => key.handle.to_string(),
        };
        let mut shared: BTreeMap<&str, String> = BTreeMap::new();
        for share in &key.shared_with {
            if share.operation == "UNSHARE" {
                shared.remove(share.user_id.as_str());
            } else {
                let who = share
                    .user_name
                    .clone()
                    .unwrap_or_else(|| format!("id {}", share.user_id));
                shared.insert(&share.user_id, who);
            }
        }
        let age = match (key.state, key.created_time) {
            (KeyState::Active, Some(created)) => Some(options.as_of.0.saturating_sub(created.0)),
            _ => None,
        };
        let mut row = Self {
            key: name,
            generation: key.generation,
            kind: key.kind.clone(),
            state: key.state,
            created_time: key.created_time,
            created_by: key.created_by.clone(),
            created_opcode: key.created_opcode.as_ref().map(|op| op.as_str().to_owned()),
            hsms: key.hsms.clone(),
            exported: key.exported,
            shared_with: shared.into_values().collect(),
            last_use_time: None,
            last_use_opcode: None,
            last_use_by: None,
            destroyed_time: None,
            destroyed_by: None,
            age_days: age.map(|age| age.div_euclid(MICROS_PER_DAY)),
            past_crypto_period: age.is_some_and(|age| age > options.max_key_age_micros),
            pair_handle: key.pair_handle,
            events: 0,
        };
        for event in &key.events {
            row.add_event(event);
        }
        row
    }

    /// An active key whose creation the trail does not hold: its age, and whether it is
    /// past the crypto-period, are unknown (which is a finding, not a pass).
    pub fn age_unknown(&self) -> bool {
        self.state == KeyState::Active && self.age_days.is_none()
    }

    pub fn add_event(&mut self, event: &KeyEvent) {
        self.events += 1;
        // Events are read in key order (time first); a later or equal time replaces.
        if self.last_use_time.is_none_or(|last| event.time >= last) {
            self.last_use_time = Some(event.time);
            self.last_use_opcode = Some(event.opcode.as_str().to_owned());
            self.last_use_by = event.user.clone();
        }
        let ends = event.success && DESTROYING.contains(&event.opcode.as_str());
        if ends && self.state != KeyState::Active && self.destroyed_time.is_none() {
            self.destroyed_time = Some(event.time);
            self.destroyed_by = event.user.clone();
        }
    }
}

/// One HSM stream in one boot: the evidence that its trail is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamRow {
    pub hsm: String,
    pub reboot_counter: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub missing: u64,
    /// Missing sequence ranges, first to last, inclusive.
    pub gaps: Vec<(u64, u64)>,
    /// Whether this boot began with a reboot the trail saw (the HSM's counter changed).
    pub after_reboot: bool,
    pub conflicts: usize,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
}

impl StreamRow {
    pub fn complete(&self) -> bool {
        self.missing == 0 && self.gaps.is_empty() && self.conflicts == 0
    }
}

/// A session in the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub lane: usize,
    pub start: Timestamp,
    /// `None` while the session is open.
    pub end: Option<Timestamp>,
    /// Where the bar ends: its end, or for an open session the last record of its HSM
    /// (what the trail knows of it), never the end of the period.
    pub drawn_end: Timestamp,
    pub mirrored: bool,
    /// The session's number in the report (its row, when the table holds it).
    pub index: usize,
}

/// A session with the commands the report shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub index: usize,
    pub session: ClusterSession,
    pub commands: usize,
}

/// Counted rows: every row counted, the first `limit` kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows<T> {
    pub rows: Vec<T>,
    pub total: usize,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            total: 0,
        }
    }
}

impl<T> Rows<T> {
    fn push(&mut self, row: T, limit: usize) {
        self.total += 1;
        if self.rows.len() < limit {
            self.rows.push(row);
        }
    }
}

/// An alert as the report lists it: with the log event id of its record, where the
/// trail has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    #[serde(flatten)]
    pub alert: Alert,
    pub log_event_id: Option<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub options: Options,
    pub limits: Limits,
    pub streams: Vec<StreamRow>,
    pub hsms: BTreeSet<String>,
    pub keys: Rows<InventoryRow>,
    pub keys_by_state: BTreeMap<String, usize>,
    pub keys_past_period: usize,
    pub keys_exported: usize,
    pub lanes: Vec<String>,
    pub bars: Vec<Bar>,
    pub sessions: Rows<SessionRow>,
    /// Every failed login's time, and whether it is part of a brute-force burst.
    pub failed_marks: Vec<(Timestamp, bool)>,
    pub failed_logins: Rows<FailedLogin>,
    /// Newest first.
    pub alerts: Rows<AlertRow>,
    pub alerts_by_kind: BTreeMap<AlertKind, usize>,
    /// Sensitive operations of the period, by opcode.
    pub sensitive_by_opcode: BTreeMap<String, usize>,
    /// Active keys past the crypto-period, and active keys whose creation is not in the
    /// trail (their age, and so their crypto-period, unknown): the first names of each.
    pub keys_past_names: Vec<String>,
    pub keys_unknown_age: usize,
    pub keys_unknown_age_names: Vec<String>,
    /// The cluster's quarantined input (and that of no cluster), by reason; set by the
    /// caller, which reads the quarantine.
    pub quarantine: BTreeMap<String, usize>,
    pub quorum: QuorumView,
}

/// How many keys the summary names of each finding; the inventory lists them all.
pub const NAMED_KEYS: usize = 10;

impl Report {
    /// Whether every stream runs without gaps and conflicts; a cluster without any
    /// sequence-numbered stream has no evidence, so is not complete.
    pub fn complete(&self) -> bool {
        !self.streams.is_empty() && self.streams.iter().all(StreamRow::complete)
    }

    pub fn records(&self) -> u64 {
        self.streams.iter().map(|stream| stream.records).sum()
    }

    /// The period drawn: the one asked for, else from the first to the last time the
    /// report holds (streams, sessions, failed logins).
    pub fn span(&self) -> (Timestamp, Timestamp) {
        let times = self
            .streams
            .iter()
            .flat_map(|s| [s.first_time, s.last_time])
            .chain(
                self.bars
                    .iter()
                    .flat_map(|b| [Some(b.start), b.end])
                    .flatten(),
            )
            .chain(self.failed_marks.iter().map(|(time, _)| *time));
        let (mut low, mut high) = (None::<Timestamp>, None::<Timestamp>);
        for time in times {
            low = Some(low.map_or(time, |low| low.min(time)));
            high = Some(high.map_or(time, |high| high.max(time)));
        }
        let low = self.options.from.or(low).unwrap_or(self.options.as_of);
        let high = self.options.to.or(high).unwrap_or(self.options.as_of);
        (low, high.max(Timestamp(low.0.saturating_add(1))))
    }
}

/// What the alerts say of one stream (HSM, boot).
#[derive(Debug, Default)]
struct Integrity {
    gaps: Vec<(u64, u64)>,
    conflicts: usize,
    after_reboot: bool,
}

/// Builds a [`Report`] from view items in the order the store holds them: streams, then
/// alerts newest first, keys (each head before its events), sessions (likewise), failed
/// logins and quorum.
#[derive(Debug)]
pub struct Builder {
    report: Report,
    integrity: BTreeMap<(String, u32), Integrity>,
    key: Option<InventoryRow>,
    session: Option<SessionRow>,
    /// Each user's lanes: their index and where their last bar ends.
    lanes: BTreeMap<String, Vec<(usize, Timestamp)>>,
}

/// The alerts that say whether a stream is complete.
pub const INTEGRITY_ALERTS: [AlertKind; 3] = [
    AlertKind::SequenceGap,
    AlertKind::ConflictingDuplicate,
    AlertKind::Reboot,
];

/// Overlapping sessions of one user are stacked on lanes of their own, up to this many
/// (past it they share the last one): one bar never hides another.
const LANES_PER_USER: usize = 4;

impl Builder {
    pub fn new(options: Options, limits: Limits) -> Self {
        Self {
            report: Report {
                options,
                limits,
                streams: Vec::new(),
                hsms: BTreeSet::new(),
                keys: Rows::default(),
                keys_by_state: BTreeMap::new(),
                keys_past_period: 0,
                keys_exported: 0,
                lanes: Vec::new(),
                bars: Vec::new(),
                sessions: Rows::default(),
                failed_marks: Vec::new(),
                failed_logins: Rows::default(),
                alerts: Rows::default(),
                alerts_by_kind: BTreeMap::new(),
                sensitive_by_opcode: BTreeMap::new(),
                keys_past_names: Vec::new(),
                keys_unknown_age: 0,
                keys_unknown_age_names: Vec::new(),
                quarantine: BTreeMap::new(),
                quorum: QuorumView::default(),
            },
            integrity: BTreeMap::new(),
            key: None,
            session: None,
            lanes: BTreeMap::new(),
        }
    }

    pub fn options(&self) -> &Options {
        &self.report.options
    }

    pub fn stream(&mut self, stream: StreamSummary) {
        self.report.hsms.insert(stream.hsm.clone());
        self.report.streams.push(StreamRow {
            hsm: stream.hsm,
            reboot_counter: stream.reboot_counter,
            first_seq: stream.first_seq,
            last_seq: stream.last_seq,
            records: stream.records,
            missing: stream.missing,
            gaps: Vec::new(),
            after_reboot: false,
            conflicts: 0,
            first_time: stream.first_time,
            last_time: stream.last_time,
        });
    }

    /// Every alert of the cluster, newest first: the integrity ones count whatever the
    /// period (the trail's completeness is not cut by it); the period's are listed.
    pub fn alert(&mut self, alert: Alert, log_event_id: Option<String>) {
        self.integrity(&alert);
        self.listed(alert, log_event_id);
    }

    /// What an alert says of its stream's completeness (gaps, conflicts, reboots): whatever
    /// the period.
    pub fn integrity(&mut self, alert: &Alert) {
        if let (Some(hsm), Some(boot)) = (&alert.hsm, alert.reboot_counter)
            && INTEGRITY_ALERTS.contains(&alert.kind)
        {
            let slot = self.integrity.entry((hsm.clone(), boot)).or_default();
            match (alert.kind, alert.from, alert.to) {
                (AlertKind::SequenceGap, Some(from), Some(to)) => slot.gaps.push((from, to)),
                (AlertKind::ConflictingDuplicate, _, _) => slot.conflicts += 1,
                (AlertKind::Reboot, _, _) => slot.after_reboot = true,
                _ => {}
            }
        }
    }

    /// An alert of the period, listed and counted (newest first).
    pub fn listed(&mut self, alert: Alert, log_event_id: Option<String>) {
        if !self.report.options.in_period(alert.time) {
            return;
        }
        *self.report.alerts_by_kind.entry(alert.kind).or_default() += 1;
        if alert.kind == AlertKind::SensitiveOperation {
            let opcode = alert
                .opcode
                .as_ref()
                .map_or_else(|| "unknown opcode".to_owned(), |op| op.as_str().to_owned());
            *self.report.sensitive_by_opcode.entry(opcode).or_default() += 1;
        }
        let limit = self.report.limits.alert_rows;
        self.report.alerts.push(
            AlertRow {
                alert,
                log_event_id,
            },
            limit,
        );
    }

    /// Starts the next key; hands back the row of the key it ends.
    pub fn key_head(&mut self, key: &KeyGeneration) -> Option<InventoryRow> {
        let ended = self.end_key();
        let row = InventoryRow::from_head(key, &self.report.options);
        self.report.hsms.extend(row.hsms.iter().cloned());
        self.key = Some(row);
        ended
    }

    pub fn key_event(&mut self, event: &KeyEvent) {
        if let Some(row) = &mut self.key {
            row.add_event(event);
        }
    }

    /// Ends the key being read and hands back its row.
    pub fn end_key(&mut self) -> Option<InventoryRow> {
        let row = self.key.take()?;
        let report = &mut self.report;
        *report
            .keys_by_state
            .entry(state_name(row.state).to_owned())
            .or_default() += 1;
        report.keys_past_period += usize::from(row.past_crypto_period);
        if row.past_crypto_period && report.keys_past_names.len() < NAMED_KEYS {
            report.keys_past_names.push(row.key.clone());
        }
        if row.age_unknown() {
            report.keys_unknown_age += 1;
            if report.keys_unknown_age_names.len() < NAMED_KEYS {
                report.keys_unknown_age_names.push(row.key.clone());
            }
        }
        report.keys_exported += usize::from(row.exported);
        // Only the rows the file holds are copied; past them a row is counted and handed on.
        if report.keys.rows.len() < report.limits.key_rows {
            report.keys.rows.push(row.clone());
        }
        report.keys.total += 1;
        Some(row)
    }

    pub fn session_head(&mut self, session: ClusterSession) {
        self.end_session();
        if !self.report.options.in_period(session.login_time) {
            return;
        }
        let report = &mut self.report;
        let index = report.sessions.total;
        report.hsms.insert(session.origin_hsm.clone());
        let last_seen = report
            .streams
            .iter()
            .filter(|stream| stream.hsm == session.origin_hsm)
            .flat_map(|stream| [stream.first_time, stream.last_time])
            .max()
            .unwrap_or(session.login_time);
        let drawn_end = session
            .end_time
            .unwrap_or_else(|| last_seen.max(session.login_time));
        // Sessions come by user, then login: a user's lanes are made one after another.
        let lanes = self.lanes.entry(session.user.clone()).or_default();
        let free = lanes.iter().position(|(_, end)| *end <= session.login_time);
        let slot = match free {
            Some(slot) => slot,
            None if lanes.len() < LANES_PER_USER => {
                report.lanes.push(match lanes.len() {
                    0 => session.user.clone(),
                    taken => format!("{} ({})", session.user, taken + 1),
                });
                lanes.push((report.lanes.len() - 1, drawn_end));
                lanes.len() - 1
            }
            None => lanes.len() - 1,
        };
        let (lane, end) = &mut lanes[slot];
        *end = if free.is_some() {
            drawn_end
        } else {
            (*end).max(drawn_end)
        };
        let lane = *lane;
        report.bars.push(Bar {
            lane,
            start: session.login_time,
            end: session.end_time,
            drawn_end,
            mirrored: !session.mirror_hsms.is_empty(),
            index,
        });
        self.session = Some(SessionRow {
            index,
            session: ClusterSession {
                events: Vec::new(),
                ..session
            },
            commands: 0,
        });
    }

    pub fn session_event(&mut self, event: SessionEvent) {
        let limit = self.report.limits.commands_per_session;
        if let Some(row) = &mut self.session {
            row.commands += 1;
            if row.session.events.len() < limit {
                row.session.events.push(event);
            }
        }
    }

    fn end_session(&mut self) {
        if let Some(mut row) = self.session.take() {
            let luna = row.session.events.iter().any(|e| e.log_event_id.is_some());
            row.session
                .events
                .sort_by_key(|e| crate::domain::event_order(e.time, &e.opcode, luna));
            let limit = self.report.limits.session_rows;
            self.report.sessions.push(row, limit);
        }
    }

    pub fn failed_login(&mut self, login: FailedLogin) {
        if !self.report.options.in_period(login.time) {
            return;
        }
        self.report
            .failed_marks
            .push((login.time, login.brute_force));
        let limit = self.report.limits.failed_login_rows;
        self.report.failed_logins.push(login, limit);
    }

    pub fn quorum(&mut self, quorum: QuorumView) {
        let options = &self.report.options;
        let tokens = quorum
            .tokens
            .into_iter()
            .filter(|token| options.in_period(token.time))
            .collect();
        let m_values = quorum
            .m_values
            .into_iter()
            .filter(|setting| options.in_period(setting.step.time))
            .collect();
        self.report.quorum = QuorumView { tokens, m_values };
    }

    pub fn finish(mut self) -> Report {
        self.end_key();
        self.end_session();
        for stream in &mut self.report.streams {
            if let Some(found) = self
                .integrity
                .remove(&(stream.hsm.clone(), stream.reboot_counter))
            {
                stream.gaps = found.gaps;
                stream.gaps.sort_unstable();
                stream.conflicts = found.conflicts;
                stream.after_reboot = found.after_reboot;
            }
        }
        self.report
            .streams
            .sort_by(|a, b| (&a.hsm, a.reboot_counter).cmp(&(&b.hsm, b.reboot_counter)));
        self.report
    }
}

#[cfg(test)]
mod tests;
