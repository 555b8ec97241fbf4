//! The step planner's tests: where a batch starts, what a replay reads and writes.

use super::*;
use crate::domain::KeyGeneration;
use crate::model::Opcode;
use crate::testkit::rec;

fn config() -> Config {
    Config::from_lookup(Some("t".into()), |_| None).expect("config")
}

#[test]
fn a_batch_at_or_after_the_head_folds_in_order_and_one_behind_it_replays() {
    let head = Checkpoint {
        point: Some(Timestamp(1_000)),
        ..Checkpoint::default()
    };
    let now = Timestamp(10_000_000);
    let ahead = [rec("a", 1, 5, 1_000, Opcode::Login).build()];
    let arrivals = Arrivals::sort(&head, &ahead, &BTreeSet::new(), Vec::new(), now, &config());
    assert_eq!(start(&head, &arrivals), Start::InOrder);
    let behind = [rec("b", 1, 5, 999, Opcode::Login).build()];
    let arrivals = Arrivals::sort(&head, &behind, &BTreeSet::new(), Vec::new(), now, &config());
    assert_eq!(start(&head, &arrivals), Start::Replay(Some(Timestamp(999))));
}

#[test]
fn a_step_cut_off_or_a_cut_replay_is_gone_on_with_before_anything_else() {
    let now = Timestamp(10_000_000);
    let ahead = [rec("a", 1, 5, 5_000, Opcode::Login).build()];
    let cut_off = Checkpoint {
        point: Some(Timestamp(1_000)),
        step: StepId(1 << 32),
        intent: Some(Intent {
            step: StepId(2 << 32),
            from: Some(Timestamp(700)),
        }),
        ..Checkpoint::default()
    };
    let arrivals = Arrivals::sort(
        &cut_off,
        &ahead,
        &BTreeSet::new(),
        Vec::new(),
        now,
        &config(),
    );
    assert_eq!(
        start(&cut_off, &arrivals),
        Start::Replay(Some(Timestamp(700)))
    );
    let replaying = Checkpoint {
        point: Some(Timestamp(1_000)),
        replaying: true,
        ..Checkpoint::default()
    };
    assert_eq!(
        start(&replaying, &Arrivals::default()),
        Start::Replay(Some(Timestamp(1_000)))
    );
}

#[test]
fn a_record_ahead_of_the_clock_is_held_and_moves_no_point() {
    let head = Checkpoint {
        point: Some(Timestamp(1_000)),
        ..Checkpoint::default()
    };
    let now = Timestamp(1_000_000_000);
    let future = rec("a", 1, 7, 4_000_000_000_000_000, Opcode::Login).build();
    let present = rec("a", 1, 6, 2_000, Opcode::Login).build();
    let arrivals = Arrivals::sort(
        &head,
        &[future.clone(), present],
        &BTreeSet::new(),
        Vec::new(),
        now,
        &config(),
    );
    assert_eq!(arrivals.future.len(), 1);
    let prepared = prepare_in_order(&head, &arrivals, now, &config());
    assert_eq!(prepared.point, Timestamp(2_001));
    assert_eq!(prepared.skewed.len(), 1);
    assert!(prepared.held.contains_key(&trail_key(&future)));
    assert!(
        prepared.base.carry.integrity.holds("a", 1, 7),
        "counted in its stream"
    );
    let later = Checkpoint {
        held: prepared.held.clone(),
        ..head
    };
    assert!(due_held(&later, now, &config()).is_empty());
    assert_eq!(
        due_held(&later, Timestamp(4_000_000_000_000_000), &config()),
        vec![trail_key(&future)]
    );
}

#[test]
fn logs_since_a_replays_start_say_what_it_may_remove() {
    let entry = |removal| (String::from("d"), removal);
    let at = |point, step, items: Vec<(&str, Removal)>| StepLog {
        point: Timestamp(point),
        step: StepId(step),
        written: items
            .into_iter()
            .map(|(sk, removal)| (sk.to_owned(), entry(removal)))
            .collect(),
    };
    let logs = [
        at(
            10,
            1,
            vec![
                ("gap", Removal::Provisional),
                ("event-a", Removal::Rederived),
            ],
        ),
        at(15, 3, vec![("event-b", Removal::Rederived)]),
        at(
            20,
            2,
            vec![("event-b", Removal::Rederived), ("late", Removal::Kept)],
        ),
        at(30, 3, vec![("gone", Removal::Deleted)]),
    ];
    let head = Checkpoint {
        written: Written::from([("event-b".to_owned(), entry(Removal::Rederived))]),
        ..Checkpoint::default()
    };
    let previous = Previous::of_logs(&head, &logs, Some(Timestamp(10)), Some(StepId(3)));
    let removable: Vec<&str> = previous.removable.iter().map(String::as_str).collect();
    assert_eq!(removable, ["event-b", "gap", "gone"]);
    assert!(
        !previous.digests.contains_key("gone") && !previous.digests.contains_key("event-b"),
        "what a step cut off wrote is written again, whatever an earlier log says of it"
    );
    let settled = Previous::of_logs(&head, &logs, Some(Timestamp(10)), None);
    assert!(!settled.removable.contains("gone"));
    assert!(settled.digests.contains_key("event-a"));
}

#[test]
fn objects_as_of_a_start_are_their_first_version_after_it() {
    let carry = |generation| {
        ObjectCarry::Certificate(KeyGeneration::blank(1, None, generation, "certificate"))
    };
    let heads = BTreeMap::from([
        ("CERT#1".to_owned(), carry(3)),
        ("CERT#2".to_owned(), carry(5)),
    ]);
    let versions = vec![
        ("CERT#1".to_owned(), Some(carry(1))),
        ("CERT#1".to_owned(), Some(carry(2))),
        ("CERT#3".to_owned(), None),
    ];
    let as_of = objects_as_of(&heads, &versions);
    assert_eq!(as_of["CERT#1"], Some(carry(1)));
    assert_eq!(as_of["CERT#2"], Some(carry(5)));
    assert_eq!(as_of["CERT#3"], None);
}
