//! What one step writes: the views it derives weighed against what the steps before it
//! wrote (unchanged ones skipped, those no longer derived removed), the alerts of its
//! late and skewed records, the objects it changed with their versions, its logs and the
//! new head. The views come laid out by the store ([`LaidOut`]): the plan decides from
//! their keys and digests and carries their stored form through untouched.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::domain::{Alert, AlertKind, Derived, Folded};
use crate::incremental::{
    Checkpoint, Intent, Late, ObjectCarry, Objects, Prepared, Removal, StepId, StepLog, Written,
    resume_of,
};
use crate::model::{Timestamp, TrailEntry};

/// What the steps since a replay's start wrote: the digest each item has now, and the
/// items the replay removes when it does not derive them again.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub digests: BTreeMap<String, String>,
    pub removable: BTreeSet<String>,
}

impl Previous {
    /// From the head alone, for a step in order: what the last step wrote that only it
    /// may replace.
    pub fn of_head(head: &Checkpoint) -> Self {
        let mut previous = Previous::default();
        for (sk, (digest, removal)) in &head.written {
            previous.digests.insert(sk.clone(), digest.clone());
            if *removal == Removal::Provisional {
                previous.removable.insert(sk.clone());
            }
        }
        previous
    }

    /// From the logs of the steps that ended at or after `from` (in point order): of the
    /// step that ended at `from`, what only it may replace; of every later one, all it
    /// derived; of a step cut off (`cut_off`), what it removed as well, and none of its
    /// digests (it may have stored none of what its log names).
    /// The head's own record of its step comes first: a log may be gone with its horizon.
    pub fn of_logs(
        head: &Checkpoint,
        logs: &[StepLog],
        from: Option<Timestamp>,
        cut_off: Option<StepId>,
    ) -> Self {
        let mut previous = Previous::of_head(head);
        let (cut, committed): (Vec<&StepLog>, Vec<&StepLog>) =
            logs.iter().partition(|log| cut_off == Some(log.step));
        for log in committed {
            let after = from.is_none_or(|from| log.point > from);
            for (sk, (digest, removal)) in &log.written {
                let removable = match removal {
                    Removal::Kept | Removal::Deleted => false,
                    Removal::Rederived => after,
                    Removal::Provisional => true,
                };
                // A view a later step deleted has no digest: derived again, it is written.
                if *removal == Removal::Deleted {
                    previous.digests.remove(sk);
                } else {
                    previous.digests.insert(sk.clone(), digest.clone());
                }
                if removable {
                    previous.removable.insert(sk.clone());
                } else if *removal != Removal::Deleted {
                    previous.removable.remove(sk);
                }
            }
        }
        // Last, whatever its points: what a step cut off may have overwritten, after any
        // earlier step's digest of it.
        for log in cut {
            for (sk, (_, removal)) in &log.written {
                if *removal != Removal::Kept {
                    previous.digests.remove(sk);
                    previous.removable.insert(sk.clone());
                }
            }
        }
        previous
    }
}

/// What a replay found stored after its start, to remove once it has written.
#[derive(Debug, Clone, Default)]
pub struct Stale {
    /// Sort keys of the logs and object versions of steps after the start.
    pub state: Vec<String>,
    /// Points of the snapshots of steps after the start.
    pub snapshots: Vec<Timestamp>,
}

/// What a view is, for deciding whether a later step may replace or remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewOf {
    SessionHead {
        login_time: Timestamp,
    },
    KeyHead {
        created_time: Option<Timestamp>,
        generation: u32,
        first_event: Option<Timestamp>,
    },
    /// An event of a session or key: the record's time.
    Event {
        time: Timestamp,
    },
    /// A quorum token or M-value setting: the time of the record that starts it.
    Quorum {
        time: Timestamp,
    },
    FailedLogin,
    Alert {
        kind: AlertKind,
        time: Timestamp,
        user: Option<String>,
    },
    Stream,
}

/// One view as the store lays it out: its sort key, a digest of its stored form (a view
/// whose digest a step wrote before is not written again), what it is, and the stored
/// form itself, which the plan carries to the store untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct LaidOut<T> {
    pub sk: String,
    pub digest: String,
    pub of: ViewOf,
    pub stored: T,
}

/// Everything one step writes; `T` is a view as the store lays it out.
#[derive(Debug, Clone, Default)]
pub struct StepWrite<T> {
    pub intent: Intent,
    /// One log per state the step ends a fold at (its split, if any, and its end).
    pub logs: Vec<StepLog>,
    pub puts: Vec<T>,
    /// Sort keys of views written before that this step no longer derives.
    pub deletes: Vec<String>,
    /// Carries of the objects the step changed.
    pub objects: Vec<(String, ObjectCarry)>,
    /// Objects' carries before a fold of the step changed them (`None`: they had none),
    /// under the point that fold ended at.
    pub versions: Vec<(Timestamp, String, Option<ObjectCarry>)>,
    /// States the step passed through, kept as snapshots beside its head's.
    pub snapshots: Vec<Checkpoint>,
    /// What the head before this step named as its garbage: deleted first.
    pub garbage: Vec<String>,
    pub stale_snapshots: Vec<Timestamp>,
    pub checkpoint: Checkpoint,
    /// Time to live of the snapshot, log and versions (seconds since the epoch).
    pub expires_at: i64,
    /// Alert items that did not exist before, by kind.
    pub new_alerts: BTreeMap<String, usize>,
    /// Those alerts themselves: what is published ([`crate::publish`]).
    pub new_alert_items: Vec<T>,
    pub unchanged: usize,
    pub open_gaps: usize,
}

/// One fold of a step, ending at `point`.
pub struct FoldPart {
    pub point: Timestamp,
    pub folded: Folded,
}

/// What a step writes: its views (unchanged ones skipped, and what the steps it replays
/// or follows wrote and it no longer derives removed), the alerts of late and skewed
/// records, the objects it changed with their versions, its logs and the new head.
/// `parts` are the step's folds in time order: one, or one more than a replay's splits.
/// `lay_out` is the store's: it turns derived views into its items, their keys and
/// digests.
#[allow(clippy::too_many_arguments)]
pub fn plan_write<T: Clone + Default, E>(
    lay_out: impl Fn(&Derived) -> Result<Vec<LaidOut<T>>, E>,
    head: &Checkpoint,
    prepared: Prepared,
    parts: Vec<FoldPart>,
    objects: &Objects,
    previous: &Previous,
    stale: Stale,
    now: Timestamp,
    config: &Config,
) -> Result<StepWrite<T>, E> {
    let point = prepared.point;
    let step = head.step.next();
    let evidence: Vec<Alert> = prepared
        .late
        .iter()
        .map(|(entry, late)| late_record_alert(entry, late, prepared.base.point))
        .chain(
            prepared
                .skewed
                .iter()
                .map(|(entry, ahead)| clock_skew_alert(entry, *ahead)),
        )
        .collect();
    let mut write = StepWrite::<T> {
        expires_at: now.micros() / 1_000_000 + config.late_horizon_micros / 1_000_000,
        ..StepWrite::default()
    };
    // What the step leaves stored: each later fold's views over the earlier's, whose
    // views of what was open then it derives anew.
    let mut stored: BTreeMap<String, (LaidOut<T>, Removal)> = BTreeMap::new();
    let mut retracted: BTreeSet<String> = BTreeSet::new();
    let mut at_start = objects.at_start.clone();
    let mut carry = None;
    let last = parts.len().saturating_sub(1);
    let mut splits = prepared.splits.iter();
    for (index, part) in parts.into_iter().enumerate() {
        let mut views = lay_out(&part.folded.derived)?;
        if index == last {
            views.extend(lay_out(&Derived {
                alerts: evidence.clone(),
                ..Default::default()
            })?);
            write.open_gaps = usize::try_from(part.folded.open_gaps).unwrap_or(usize::MAX);
        }
        stored.retain(|_, (_, removal)| *removal != Removal::Provisional);
        // What the fold's records made untrue goes before what it derives: a gap alert
        // retracted and derived again under the same key stays.
        for view in lay_out(&Derived {
            alerts: part.folded.retracted.clone(),
            ..Default::default()
        })? {
            stored.remove(&view.sk);
            retracted.insert(view.sk);
        }
        let mut logged = Written::new();
        for view in views {
            let removal = removal(&view.of, part.point, &part.folded);
            logged.insert(view.sk.clone(), (view.digest.clone(), removal));
            stored.insert(view.sk.clone(), (view, removal));
        }
        for (name, carry) in ObjectCarry::split(part.folded.entities) {
            let before = at_start.get(&name).cloned().flatten();
            if before.as_ref() != Some(&carry) {
                write.versions.push((part.point, name.clone(), before));
            }
            at_start.insert(name, Some(carry));
        }
        if index < last
            && let Some(split) = splits.next()
        {
            write.snapshots.push(Checkpoint {
                carry: part.folded.carry.clone(),
                point: Some(part.point),
                newest: prepared.newest,
                log_positions: split.log_positions.clone(),
                resume: resume_of(&split.unfolded, &part.folded.carry, &prepared.streams),
                garbage: Vec::new(),
                streams: prepared.streams.clone(),
                written: Written::new(),
                held: prepared.held.clone(),
                step,
                replaying: false,
                since_micros: head.since_micros.or(Some(now.micros())),
                stored_pieces: 0,
                intent: None,
            });
        }
        write.logs.push(StepLog {
            point: part.point,
            step,
            written: logged,
        });
        carry = Some(part.folded.carry);
    }
    let mut head_written = Written::new();
    for (sk, (view, removal)) in stored.iter() {
        let before = previous.digests.get(sk);
        if before.is_none()
            && let ViewOf::Alert { kind, .. } = view.of
        {
            *write
                .new_alerts
                .entry(kind.as_str().to_owned())
                .or_default() += 1;
            write.new_alert_items.push(view.stored.clone());
        }
        if before == Some(&view.digest) {
            write.unchanged += 1;
        } else {
            write.puts.push(view.stored.clone());
        }
        if !matches!(view.of, ViewOf::Event { .. }) {
            head_written.insert(sk.clone(), (view.digest.clone(), *removal));
        }
    }
    if let Some(log) = write.logs.last_mut() {
        for sk in previous.removable.union(&retracted) {
            if !stored.contains_key(sk) {
                write.deletes.push(sk.clone());
                log.written
                    .insert(sk.clone(), (String::new(), Removal::Deleted));
            }
        }
    }
    for (name, carry) in at_start {
        if let Some(carry) = carry
            && objects.heads.get(&name) != Some(&carry)
            && write
                .versions
                .iter()
                .any(|(_, changed, _)| *changed == name)
        {
            write.objects.push((name, carry));
        }
    }
    write.garbage = head.garbage.clone();
    write.stale_snapshots = stale.snapshots;
    write.intent = Intent {
        step,
        from: prepared.base.point,
    };
    let carry = carry.unwrap_or_else(|| prepared.base.carry.clone());
    write.checkpoint = Checkpoint {
        garbage: stale.state,
        resume: resume_of(&prepared.unfolded, &carry, &prepared.streams),
        carry,
        point: Some(point),
        newest: prepared.newest,
        log_positions: prepared.log_positions,
        streams: prepared.streams,
        written: head_written,
        held: prepared.held,
        step,
        replaying: prepared.replaying,
        since_micros: head.since_micros.or(Some(now.micros())),
        stored_pieces: head.stored_pieces,
        intent: None,
    };
    Ok(write)
}

/// What may remove a view later: evidence of a delivery never; views of what is open
/// (a brute-force burst that may still grow) any later step; every other view a replay
/// over its records, or the step whose records retract it (gaps, reboots).
fn removal(view: &ViewOf, point: Timestamp, folded: &Folded) -> Removal {
    match view {
        ViewOf::Alert { kind, time, user } => match kind {
            AlertKind::ConflictingDuplicate | AlertKind::LateRecord | AlertKind::ClockSkew => {
                Removal::Kept
            }
            // Removed by the step whose records fill the gap or move the stream's start.
            AlertKind::SequenceGap | AlertKind::Reboot => Removal::Rederived,
            AlertKind::BruteForce
                if user
                    .as_ref()
                    .is_some_and(|user| folded.open_bursts.contains(&(user.clone(), *time))) =>
            {
                Removal::Provisional
            }
            _ if *time >= point => Removal::Provisional,
            _ => Removal::Rederived,
        },
        _ => Removal::Rederived,
    }
}

/// An alert for a record that arrived late: folded in (how late, which stream), or
/// older than the horizon and left out until `hsm-audit rederive`.
fn late_record_alert(entry: &TrailEntry, late: &Late, from: Option<Timestamp>) -> Alert {
    let detail = match late {
        Late::Folded { behind_micros } => format!(
            "arrived {} s behind the cluster's newest record (log event {}); folded in by replaying from {}",
            behind_micros / 1_000_000,
            entry.log_event_id,
            from.map_or_else(|| "the start".to_owned(), Timestamp::iso),
        ),
        Late::BeyondHorizon => format!(
            "older than every snapshot the late horizon keeps (log event {}): in the trail and its stream's integrity, not in sessions, key lifecycles or failed logins until `hsm-audit rederive`",
            entry.log_event_id
        ),
    };
    delivery_alert(AlertKind::LateRecord, entry, detail)
}

/// An alert for a record timed ahead of the invocation's clock: held out of the views
/// until the clock reaches it.
fn clock_skew_alert(entry: &TrailEntry, ahead_micros: i64) -> Alert {
    let detail = format!(
        "timed {} s ahead of the clock when it arrived (log event {}); held out of the views until then",
        ahead_micros / 1_000_000,
        entry.log_event_id
    );
    delivery_alert(AlertKind::ClockSkew, entry, detail)
}

/// An alert about how a record was delivered, placed at the record.
fn delivery_alert(kind: AlertKind, entry: &TrailEntry, detail: String) -> Alert {
    let (hsm, reboot_counter, seq) = entry.identity().into_parts();
    Alert {
        kind,
        time: entry.record.time(),
        hsm: Some(hsm),
        reboot_counter,
        from: None,
        to: None,
        seq,
        user: None,
        opcode: None,
        detail: Some(detail),
    }
}
