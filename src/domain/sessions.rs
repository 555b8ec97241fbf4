//! Cluster sessions, and which session each command belongs to.
//!
//! Decision: one deterministic time-ordered sweep across the cluster, after grouping.
//!
//! 1. Grouping looks at successful logins only, so it is fixed before anything else:
//!    a user's logins sorted by (time, hsm, boot, seq) each join the earliest group
//!    whose first login is within the mirror window and that has no member on the same
//!    HSM yet, or start a new group. The group's first login is the origin.
//! 2. The sweep merges the HSM streams: each stream is consumed in (boot, seq) order,
//!    which is the HSM's true order, and among the stream heads the smallest
//!    (time, hsm) goes next. Per-HSM order is therefore never violated, and across HSMs
//!    the merge follows time, which is all that cluster-level ends need.
//! 3. The first explicit end of any member (logout, app finalize, close session, close
//!    partition sessions) ends the group, and the group's other open members are cut at
//!    that moment: later commands on their HSMs are no longer attributed to them. A
//!    member whose mirrored login is swept after the group ended starts out cut. A
//!    member ended by a reboot ends alone; the group ends by `REBOOT` only when every
//!    member did (at the last such end), since the session lives on elsewhere otherwise.
//! 4. A login under the handle of a session still open on its HSM supersedes it there
//!    (one handle names one live session): the older one stops absorbing commands.
//!    Matching never guesses: a command goes to the one open session on its HSM whose
//!    login handle shares all but the low 4 bits with it, else to the only open session
//!    there, else to none. Two sessions matching equally well leave it unattributed.
//!    An ending record is matched by handle, then by its user name, then (only without a
//!    user name) to the single open session; it may also match a member cut (by its
//!    group's end or a newer login under its handle) at most one mirror window earlier
//!    (a logout mirrored late), which then records it without stealing another
//!    session's end. Older cut members match nothing: a mirror that never logs its
//!    logout must not hold state, or interfere with later sessions, for ever.
//! 5. A cluster session's events are the origin login, every member's attributed
//!    commands and matched ending records; mirrored logins show as `mirror_hsms` only.
//! 6. Time-information records (command type `0xeee2`) are no user activity: they open,
//!    end and join no session (a new boot they show still ends the HSM's sessions).
//! 7. A session with a member still open and no activity (its logins, attributed
//!    commands and ends) for the session horizon (`SESSION_HORIZON_SECONDS`, default
//!    24 h; 0: never) is abandoned once a record of the cluster is timed after that: its
//!    members stop taking commands and ends, and an `abandoned_session` alert, timed at
//!    its last activity plus the horizon, says so. Its view keeps no end (none was
//!    logged). A logout that never came must not hold state for ever, nor take a later
//!    session's commands. Being decided by the records' times alone, it is the same in
//!    one sweep or many.
//!
//! Incremental use ([`Carry`]): the sweep can start from the state an earlier sweep left
//! at a point in time and stop recording state at another. What it keeps is what later
//! records can still touch: the HSMs' open and recently cut members, and the groups they
//! belong to or that are young enough to take a mirrored login. A resumed sweep emits
//! the head of every group it knows and the events of the records it was given.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::records::Rec;
use super::users::{UserNames, target_user};
use super::{Alert, AlertKind, ClusterSession, DeriveConfig, Emit, SessionEvent};
use crate::model::{Opcode, Timestamp};

pub(crate) struct SessionView {
    pub sessions: Vec<ClusterSession>,
    /// Per prepared record: the user of the session the record is attributed to.
    pub actors: Vec<Option<String>>,
    /// The state after every record before the settle point.
    pub carry: Carry,
    /// One per session the sweep abandoned.
    pub alerts: Vec<Alert>,
}

const REBOOT: &str = "REBOOT";

/// What a sweep leaves for the next one: groups and members by position in these lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    groups: Vec<GroupState>,
    members: Vec<MemberState>,
    hsms: BTreeMap<String, HsmCarry>,
}

impl Carry {
    /// Open and recently cut sessions, and the groups the carry keeps: what the
    /// benchmark and the limits speak of.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupState {
    user: String,
    user_type: Option<String>,
    first_time: Timestamp,
    origin_hsm: String,
    origin_seq: u64,
    origin_boot: u32,
    end: Option<(Timestamp, String)>,
    members: Vec<usize>,
    /// The time of its latest activity (its first login when absent: stored before
    /// sessions could be abandoned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_active: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberState {
    group: usize,
    hsm: String,
    handle: u64,
    user: String,
    login_time: Timestamp,
    end: Option<(Timestamp, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HsmCarry {
    boot: Option<u32>,
    open: Vec<usize>,
    /// Members cut, with the time they were cut.
    cut: Vec<(usize, Timestamp)>,
}

struct Group {
    user: String,
    user_type: Option<String>,
    first_time: Timestamp,
    origin_hsm: String,
    origin_seq: u64,
    origin_boot: u32,
    /// The origin login, when it is among the records of this sweep.
    origin_login: Option<usize>,
    /// In grouping order, so the first is the origin.
    members: Vec<usize>,
    end: Option<(Timestamp, String)>,
    last_active: Timestamp,
    /// Attributed commands and matched ending records of every member.
    events: Vec<usize>,
}

struct Member {
    group: usize,
    hsm: String,
    handle: u64,
    user: String,
    login_time: Timestamp,
    end: Option<(Timestamp, String)>,
}

#[derive(Default, Clone)]
struct HsmState {
    boot: Option<u32>,
    open: Vec<usize>,
    cut: Vec<(usize, Timestamp)>,
}

fn is_session_end(opcode: &Opcode) -> bool {
    matches!(
        opcode,
        Opcode::Logout | Opcode::AppFinalize | Opcode::CloseSession | Opcode::SessionClose
    )
}

/// CloudHSM numbers a session's handles alike except for the low 4 bits.
fn same_session(a: u64, b: u64) -> bool {
    (a >> 4) == (b >> 4)
}

/// Sweeps `recs` (prepared: by stream position) from `carry`. The returned carry is the
/// state after every record timed before `settle_before`; the sessions are those `emit`
/// asks for.
pub(crate) fn derive(
    recs: &[Rec<'_>],
    config: &DeriveConfig,
    names: &UserNames,
    carry: &Carry,
    settle_before: Timestamp,
    emit: Emit,
) -> SessionView {
    let mut hsm_names: Vec<&str> = Vec::new();
    let mut hsm_of = Vec::with_capacity(recs.len());
    for rec in recs {
        if hsm_names.last() != Some(&rec.hsm) {
            hsm_names.push(rec.hsm);
        }
        hsm_of.push(hsm_names.len() - 1);
    }
    let mut sweep = Sweep::resume(recs, names, carry, config);
    sweep.group_logins();
    // Stream heads by (time, hsm): records of one HSM are contiguous in `recs`.
    let mut heads = BinaryHeap::new();
    for (index, &hsm) in hsm_of.iter().enumerate() {
        if index == 0 || hsm_of[index - 1] != hsm {
            heads.push(Reverse((recs[index].time(), hsm, index)));
        }
    }
    let mut settled = None;
    while let Some(Reverse((time, hsm, index))) = heads.pop() {
        if settled.is_none() && time >= settle_before {
            settled = Some(sweep.carry(settle_before));
        }
        sweep.abandon_idle(time);
        sweep.process(index, hsm_names[hsm]);
        if hsm_of.get(index + 1) == Some(&hsm) {
            heads.push(Reverse((recs[index + 1].time(), hsm, index + 1)));
        }
    }
    let carry = settled.unwrap_or_else(|| sweep.carry(settle_before));
    sweep.finish(carry, emit)
}

struct Sweep<'r, 'a> {
    recs: &'r [Rec<'a>],
    names: &'r UserNames,
    window: i64,
    /// 0: sessions are never abandoned.
    horizon: i64,
    /// Groups not ended, by their latest activity.
    idle: BTreeSet<(Timestamp, usize)>,
    /// Groups this sweep abandoned.
    abandoned: Vec<usize>,
    /// The carried groups' heads as resumed, first in `groups`.
    resumed: Vec<SessionHead>,
    groups: Vec<Group>,
    members: Vec<Member>,
    member_of_login: Vec<Option<usize>>,
    hsms: BTreeMap<String, HsmState>,
    actor: Vec<Option<usize>>,
}

impl<'r, 'a> Sweep<'r, 'a> {
    fn resume(
        recs: &'r [Rec<'a>],
        names: &'r UserNames,
        carry: &Carry,
        config: &DeriveConfig,
    ) -> Self {
        let mut sweep = Sweep {
            recs,
            names,
            window: config.mirror_window_micros,
            horizon: config.session_horizon_micros,
            idle: BTreeSet::new(),
            abandoned: Vec::new(),
            resumed: Vec::new(),
            groups: carry
                .groups
                .iter()
                .map(|group| Group {
                    user: group.user.clone(),
                    user_type: group.user_type.clone(),
                    first_time: group.first_time,
                    origin_hsm: group.origin_hsm.clone(),
                    origin_seq: group.origin_seq,
                    origin_boot: group.origin_boot,
                    origin_login: None,
                    members: group.members.clone(),
                    end: group.end.clone(),
                    last_active: group.last_active.unwrap_or(group.first_time),
                    events: Vec::new(),
                })
                .collect(),
            members: carry
                .members
                .iter()
                .map(|member| Member {
                    group: member.group,
                    hsm: member.hsm.clone(),
                    handle: member.handle,
                    user: member.user.clone(),
                    login_time: member.login_time,
                    end: member.end.clone(),
                })
                .collect(),
            member_of_login: vec![None; recs.len()],
            hsms: carry
                .hsms
                .iter()
                .map(|(hsm, state)| {
                    (
                        hsm.clone(),
                        HsmState {
                            boot: state.boot,
                            open: state.open.clone(),
                            cut: state.cut.clone(),
                        },
                    )
                })
                .collect(),
            actor: vec![None; recs.len()],
        };
        sweep.resumed = (0..sweep.groups.len())
            .map(|group| sweep.head(group))
            .collect();
        sweep.idle = (sweep.groups.iter().enumerate())
            .filter(|(_, group)| group.end.is_none())
            .map(|(index, group)| (group.last_active, index))
            .collect();
        sweep
    }

    fn group_logins(&mut self) {
        let window = self.window;
        let mut logins: Vec<usize> = (0..self.recs.len())
            .filter(|&i| *self.recs[i].op() == Opcode::Login && self.recs[i].ok())
            .collect();
        logins.sort_by_key(|&i| self.recs[i].time_key());
        // Carried groups are older than any new one: they come first, in time order.
        let mut groups_of_user: HashMap<String, Vec<usize>> = HashMap::new();
        let mut carried: Vec<usize> = (0..self.groups.len()).collect();
        carried.sort_by_key(|&g| self.groups[g].first_time);
        for group in carried {
            groups_of_user
                .entry(self.groups[group].user.clone())
                .or_default()
                .push(group);
        }
        for login in logins {
            let rec = self.recs[login];
            let user = rec.user_name().unwrap_or("");
            let candidates = groups_of_user.entry(user.to_owned()).or_default();
            let mut chosen = None;
            // Groups are created in time order: walking back, the first one too old ends
            // the search, and the last eligible one seen is the earliest.
            for &group in candidates.iter().rev() {
                let age = rec
                    .time()
                    .micros()
                    .saturating_sub(self.groups[group].first_time.micros());
                if age > window {
                    break;
                }
                let taken = self.groups[group]
                    .members
                    .iter()
                    .any(|&m| self.members[m].hsm == rec.hsm);
                if !taken {
                    chosen = Some(group);
                }
            }
            let group = match chosen {
                Some(group) => group,
                None => {
                    self.groups.push(Group {
                        user: user.to_owned(),
                        user_type: rec.user_type_name().map(str::to_owned),
                        first_time: rec.time(),
                        origin_hsm: rec.hsm.to_owned(),
                        origin_seq: rec.seq(),
                        origin_boot: rec.boot(),
                        origin_login: Some(login),
                        members: Vec::new(),
                        end: None,
                        last_active: rec.time(),
                        events: Vec::new(),
                    });
                    self.idle.insert((rec.time(), self.groups.len() - 1));
                    candidates.push(self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            let member = self.members.len();
            self.members.push(Member {
                group,
                hsm: rec.hsm.to_owned(),
                handle: rec.record.session_handle,
                user: user.to_owned(),
                login_time: rec.time(),
                end: None,
            });
            self.groups[group].members.push(member);
            self.member_of_login[login] = Some(member);
        }
    }

    fn state(&mut self, hsm: &str) -> &mut HsmState {
        self.hsms.entry(hsm.to_owned()).or_default()
    }

    fn process(&mut self, index: usize, hsm: &str) {
        let rec = self.recs[index];
        let window = self.window;
        let state = self.state(hsm);
        if state.boot.is_some_and(|boot| boot != rec.boot()) {
            let ended = std::mem::take(&mut state.open);
            state.cut.clear();
            for member in ended {
                self.members[member].end = Some((rec.time(), REBOOT.to_owned()));
            }
        }
        let state = self.state(hsm);
        state.boot = Some(rec.boot());
        // A cut member older than the mirror window matches nothing any more.
        state
            .cut
            .retain(|&(_, cut_at)| rec.time().micros().saturating_sub(cut_at.micros()) <= window);
        if rec.is_time_information() {
            return;
        }
        match rec.op() {
            Opcode::Login => {
                // Failed logins open nothing and belong to no session.
                if let Some(member) = self.member_of_login[index] {
                    self.supersede_same_handle(hsm, member, rec.time());
                    let group = self.members[member].group;
                    self.touch(group, rec.time());
                    if let Some(end) = self.groups[group].end.clone() {
                        self.members[member].end = Some(end);
                        self.state(hsm).cut.push((member, rec.time()));
                    } else {
                        self.state(hsm).open.push(member);
                    }
                }
            }
            Opcode::ClosePartitionSessions if rec.ok() => {
                let closing = std::mem::take(&mut self.state(hsm).open);
                for member in closing {
                    self.end_member(member, index);
                }
            }
            opcode if is_session_end(opcode) && rec.ok() => {
                if let Some(member) = self.match_end(hsm, index) {
                    let state = self.state(hsm);
                    if let Some(pos) = state.open.iter().position(|&m| m == member) {
                        state.open.remove(pos);
                        self.end_member(member, index);
                        self.actor[index] = Some(self.members[member].group);
                    } else {
                        state.cut.retain(|&(m, _)| m != member);
                        let group = self.members[member].group;
                        self.groups[group].events.push(index);
                        self.touch(group, rec.time());
                        self.actor[index] = Some(group);
                    }
                }
            }
            _ => {
                if let Some(member) = self.attribute(hsm, index) {
                    let group = self.members[member].group;
                    self.groups[group].events.push(index);
                    self.touch(group, rec.time());
                    self.actor[index] = Some(group);
                }
            }
        }
    }

    /// A session handle names one live session on an HSM, so a new login under the
    /// handle of an open session means that session is gone there, though its end was
    /// logged elsewhere or not at all (a mirrored login whose logout ran on another HSM).
    /// It stops absorbing this HSM's commands; its end, if logged soon, still matches.
    fn supersede_same_handle(&mut self, hsm: &str, new_member: usize, at: Timestamp) {
        let handle = self.members[new_member].handle;
        let open = std::mem::take(&mut self.state(hsm).open);
        let (gone, still_open): (Vec<usize>, Vec<usize>) = open
            .into_iter()
            .partition(|&m| same_session(self.members[m].handle, handle));
        let state = self.state(hsm);
        state.open = still_open;
        state
            .cut
            .extend(gone.into_iter().map(|member| (member, at)));
    }

    fn attribute(&mut self, hsm: &str, index: usize) -> Option<usize> {
        let handle = self.recs[index].record.session_handle;
        let open = self.state(hsm).open.clone();
        let by_handle: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&m| same_session(self.members[m].handle, handle))
            .collect();
        match (by_handle.as_slice(), open.as_slice()) {
            ([only], _) => Some(*only),
            ([], [only]) => Some(*only),
            _ => None,
        }
    }

    fn match_end(&mut self, hsm: &str, index: usize) -> Option<usize> {
        let rec = self.recs[index];
        let state = self.state(hsm).clone();
        let candidates: Vec<usize> = state
            .open
            .iter()
            .copied()
            .chain(state.cut.iter().map(|&(member, _)| member))
            .collect();
        let of_user = |members: &[usize], user: &str| -> Vec<usize> {
            members
                .iter()
                .copied()
                .filter(|&m| self.members[m].user == user)
                .collect()
        };
        let by_handle: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&m| same_session(self.members[m].handle, rec.record.session_handle))
            .collect();
        let narrowed = match (by_handle.len(), rec.user_name()) {
            (0, _) => None,
            (1, _) => Some(by_handle),
            (_, Some(user)) => Some(of_user(&by_handle, user)),
            (_, None) => Some(by_handle),
        };
        let chosen = match (narrowed, rec.user_name()) {
            (Some(found), _) => found,
            (None, Some(user)) => of_user(&candidates, user),
            (None, None) => state.open.clone(),
        };
        match chosen.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// Ends `member` with the record at `index`; if it is the first explicit end of its
    /// group, the group ends there and its other open members are cut.
    fn end_member(&mut self, member: usize, index: usize) {
        let rec = self.recs[index];
        let end = (rec.time(), rec.op().as_str().to_owned());
        self.members[member].end = Some(end.clone());
        let group = self.members[member].group;
        self.groups[group].events.push(index);
        if self.groups[group].end.is_some() {
            return;
        }
        self.groups[group].end = Some(end.clone());
        self.idle.remove(&(self.groups[group].last_active, group));
        for position in 0..self.groups[group].members.len() {
            let other = self.groups[group].members[position];
            let other_hsm = self.members[other].hsm.clone();
            let Some(state) = self.hsms.get_mut(&other_hsm) else {
                continue;
            };
            if let Some(pos) = state.open.iter().position(|&m| m == other) {
                state.open.remove(pos);
                state.cut.push((other, rec.time()));
                self.members[other].end = Some(end.clone());
            }
        }
    }

    /// Takes note of a group's activity at `time`.
    fn touch(&mut self, group: usize, time: Timestamp) {
        let state = &mut self.groups[group];
        if state.end.is_some() || time <= state.last_active {
            return;
        }
        self.idle.remove(&(state.last_active, group));
        state.last_active = time;
        self.idle.insert((time, group));
    }

    /// Abandons the groups idle for longer than the horizon before `now` (rule 7) whose
    /// members are still open somewhere; the others, ended on every HSM by reboots or
    /// superseded, are not open to abandon. A group leaves `idle` for good either way:
    /// none of its members takes anything again.
    fn abandon_idle(&mut self, now: Timestamp) {
        if self.horizon <= 0 {
            return;
        }
        while let Some(&(last_active, group)) = self.idle.first() {
            let deadline = Timestamp(last_active.micros().saturating_add(self.horizon));
            if deadline >= now {
                return;
            }
            self.idle.pop_first();
            let mut open_members = 0;
            for &member in &self.groups[group].members {
                let Some(state) = self.hsms.get_mut(&self.members[member].hsm) else {
                    continue;
                };
                if let Some(pos) = state.open.iter().position(|&m| m == member) {
                    state.open.remove(pos);
                    open_members += 1;
                }
            }
            if open_members > 0 {
                self.abandoned.push(group);
            }
        }
    }

    /// The state a later sweep needs, as of `settle_before` (every record before it
    /// swept, none after): open and recently cut members, their groups, and groups young
    /// enough to take a mirrored login.
    fn carry(&self, settle_before: Timestamp) -> Carry {
        let swept = |member: &Member| member.login_time < settle_before;
        let young = |group: &Group| {
            settle_before
                .micros()
                .saturating_sub(group.first_time.micros())
                <= self.window
        };
        let mut keep_group = vec![false; self.groups.len()];
        for state in self.hsms.values() {
            for &member in state.open.iter().chain(state.cut.iter().map(|(m, _)| m)) {
                keep_group[self.members[member].group] = true;
            }
        }
        for (group, kept) in keep_group.iter_mut().enumerate() {
            let state = &self.groups[group];
            let origin_swept = state.first_time < settle_before;
            *kept = origin_swept && (*kept || young(state));
        }
        let mut group_index = vec![None; self.groups.len()];
        let mut member_index = vec![None; self.members.len()];
        let mut carry = Carry::default();
        for (group, state) in self.groups.iter().enumerate() {
            if !keep_group[group] {
                continue;
            }
            group_index[group] = Some(carry.groups.len());
            carry.groups.push(GroupState {
                user: state.user.clone(),
                user_type: state.user_type.clone(),
                first_time: state.first_time,
                origin_hsm: state.origin_hsm.clone(),
                origin_seq: state.origin_seq,
                origin_boot: state.origin_boot,
                end: state.end.clone(),
                members: Vec::new(),
                last_active: Some(state.last_active),
            });
        }
        for (member, state) in self.members.iter().enumerate() {
            let Some(group) = group_index[state.group] else {
                continue;
            };
            if !swept(state) {
                continue;
            }
            member_index[member] = Some(carry.members.len());
            carry.groups[group].members.push(carry.members.len());
            carry.members.push(MemberState {
                group,
                hsm: state.hsm.clone(),
                handle: state.handle,
                user: state.user.clone(),
                login_time: state.login_time,
                end: state.end.clone(),
            });
        }
        for (hsm, state) in &self.hsms {
            let kept = HsmCarry {
                boot: state.boot,
                open: state.open.iter().filter_map(|&m| member_index[m]).collect(),
                cut: state
                    .cut
                    .iter()
                    .filter(|(_, at)| {
                        settle_before.micros().saturating_sub(at.micros()) <= self.window
                    })
                    .filter_map(|&(m, at)| Some((member_index[m]?, at)))
                    .collect(),
            };
            // An HSM with no open or cut member has nothing a reboot could end.
            if !kept.open.is_empty() || !kept.cut.is_empty() {
                carry.hsms.insert(hsm.clone(), kept);
            }
        }
        carry
    }

    /// What a session's item shows of a group besides its events: how it ended, where
    /// it was mirrored.
    fn head(&self, group: usize) -> SessionHead {
        let state = &self.groups[group];
        let end = state.end.clone().or_else(|| {
            let ends: Option<Vec<Timestamp>> = state
                .members
                .iter()
                .map(|&m| self.members[m].end.as_ref().map(|(time, _)| *time))
                .collect();
            Some((ends?.into_iter().max()?, REBOOT.to_owned()))
        });
        let mut mirror_hsms: Vec<String> = state
            .members
            .iter()
            .skip(1)
            .map(|&m| self.members[m].hsm.clone())
            .collect();
        mirror_hsms.sort();
        mirror_hsms.dedup();
        SessionHead { end, mirror_hsms }
    }

    fn finish(self, carry: Carry, emit: Emit) -> SessionView {
        let recs = self.recs;
        let mut sessions: Vec<ClusterSession> = (0..self.groups.len())
            .filter_map(|index| {
                let group = &self.groups[index];
                let head = self.head(index);
                let changed = self
                    .resumed
                    .get(index)
                    .is_none_or(|resumed| *resumed != head)
                    || !group.events.is_empty()
                    || group.origin_login.is_some();
                if emit == Emit::Changed && !changed {
                    return None;
                }
                let mut events = group.events.clone();
                events.extend(group.origin_login);
                events.sort_by_key(|&i| recs[i].time_key());
                events.dedup();
                Some(ClusterSession {
                    user: group.user.clone(),
                    user_type: group.user_type.clone(),
                    login_time: group.first_time,
                    end_time: head.end.as_ref().map(|(time, _)| *time),
                    ended_by: head.end.map(|(_, by)| by),
                    origin_hsm: group.origin_hsm.clone(),
                    origin_seq: group.origin_seq,
                    origin_reboot_counter: group.origin_boot,
                    mirror_hsms: head.mirror_hsms,
                    events: events
                        .into_iter()
                        .map(|i| session_event(recs[i], self.names))
                        .collect(),
                })
            })
            .collect();
        sessions.sort_by(ClusterSession::listing_order);
        let actors = self
            .actor
            .iter()
            .map(|group| group.map(|g| self.groups[g].user.clone()))
            .collect();
        let alerts = self
            .abandoned
            .iter()
            .map(|&group| abandoned_alert(&self.groups[group], self.horizon))
            .collect();
        SessionView {
            sessions,
            actors,
            carry,
            alerts,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionHead {
    end: Option<(Timestamp, String)>,
    mirror_hsms: Vec<String>,
}

fn abandoned_alert(group: &Group, horizon: i64) -> Alert {
    Alert {
        kind: AlertKind::AbandonedSession,
        time: Timestamp(group.last_active.micros().saturating_add(horizon)),
        hsm: Some(group.origin_hsm.clone()),
        reboot_counter: Some(group.origin_boot),
        from: None,
        to: None,
        seq: Some(group.origin_seq),
        user: Some(group.user.clone()),
        opcode: Some(Opcode::Login),
        detail: Some(format!(
            "no activity for {} s after {}",
            horizon / 1_000_000,
            group.last_active.iso()
        )),
    }
}

fn session_event(rec: Rec<'_>, names: &UserNames) -> SessionEvent {
    SessionEvent {
        time: rec.time(),
        hsm: rec.hsm.to_owned(),
        seq: rec.seq(),
        reboot_counter: Some(rec.boot()),
        opcode: rec.op().clone(),
        success: rec.ok(),
        target_user: target_user(rec, names),
        key_handles: rec.key_handles(),
        object_ids: Vec::new(),
        log_event_id: None,
    }
}

#[cfg(test)]
mod tests;
