//! Time windows and pages (issue 25): every windowed read through the `by_time` and
//! `trail_by_time` indexes returns what filtering the whole list returns, in the same
//! order, and one user's sessions or one key's generations read page by page, joined
//! again, are the whole answer.

use crate::common::*;
use hsm_audit::domain::{AlertKind, ClusterSession, KeyGeneration};
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::Timestamp;
use hsm_audit::store::StoreError;
use hsm_audit::store::dynamodb::DynamoStore;
use hsm_audit::store::dynamodb::items::ViewRow;
use hsm_audit::store::window::{self, Collected, KeyOf, Paging, Window};
use hsm_audit::testkit::workload::{WorkloadSpec, generate};

const CLUSTER: &str = "cluster-windows";

async fn loaded() -> DynamoStore {
    let store = fresh_store("windows").await;
    let config = config_for(&store);
    let spec = WorkloadSpec {
        cluster: CLUSTER.into(),
        hsms: 3,
        users: 6,
        records: 1_500,
        records_per_payload: 250,
        app: true,
        ..WorkloadSpec::default()
    };
    for payload in generate(&spec) {
        ingest_event(payload.event, &store, &config)
            .await
            .expect("ingest");
    }
    store
}

async fn keys_in(store: &DynamoStore, window: Window) -> Vec<KeyGeneration> {
    let mut found = Collected::default();
    window::keys_by_time(store, CLUSTER, window, &mut |row| found.add(row))
        .await
        .expect("keys in the window");
    found.keys
}

async fn alerts_in(
    store: &DynamoStore,
    window: Window,
    kind: Option<AlertKind>,
) -> Vec<hsm_audit::domain::Alert> {
    let mut found = Collected::default();
    window::alerts(
        store,
        CLUSTER,
        window,
        kind.map(AlertKind::as_str),
        false,
        &mut |row| found.add(row),
    )
    .await
    .expect("alerts in the window");
    found.alerts
}

/// Windows over the workload's span: its first hour, a stretch in the middle, open at
/// either end, and one instant (a session's login) exactly.
fn windows(first: Timestamp, last: Timestamp, instant: Timestamp) -> Vec<Window> {
    let span = last.micros() - first.micros();
    let at = |share: i64| Timestamp::from_micros(first.micros() + span * share / 100);
    vec![
        Window {
            from: Some(first),
            to: Some(Timestamp::from_micros(first.micros() + 3_600_000_000)),
        },
        Window {
            from: Some(at(30)),
            to: Some(at(60)),
        },
        Window {
            from: Some(at(70)),
            to: None,
        },
        Window {
            from: None,
            to: Some(at(20)),
        },
        Window {
            from: Some(instant),
            to: Some(instant),
        },
    ]
}

#[tokio::test]
async fn every_windowed_query_equals_filtering_the_whole_list() {
    let store = loaded().await;
    let sessions = store
        .sessions(CLUSTER, None, None, None)
        .await
        .expect("all");
    let keys = store.keys(CLUSTER, None).await.expect("keys");
    let failed = store.failed_logins(CLUSTER, None, None).await.expect("all");
    let alerts = store.alerts(CLUSTER).await.expect("alerts");
    let trail = store.trail(CLUSTER, None).await.expect("trail");
    let quorum = store.quorum(CLUSTER).await.expect("quorum");
    assert!(sessions.len() > 20 && !failed.is_empty() && !alerts.is_empty());
    assert!(keys.iter().filter(|key| !key.events.is_empty()).count() > 5);
    // The whole list read through the index is the listing: by login time, then origin.
    let mut listed = sessions.clone();
    listed.sort_by(ClusterSession::listing_order);
    assert_eq!(sessions, listed);

    let times: Vec<Timestamp> = trail.iter().map(|entry| entry.record.time()).collect();
    let (first, last) = (
        times.iter().copied().min().expect("records"),
        times.iter().copied().max().expect("records"),
    );
    for window in windows(first, last, sessions[sessions.len() / 2].login_time) {
        let expected: Vec<_> = sessions
            .iter()
            .filter(|s| window.contains(s.login_time))
            .cloned()
            .collect();
        let found = store
            .sessions(CLUSTER, None, window.from, window.to)
            .await
            .expect("sessions");
        assert_eq!(found, expected, "sessions in {window:?}");
        assert!(!found.is_empty(), "{window:?} holds sessions");

        let user = &sessions[0].user;
        let expected: Vec<_> = expected
            .iter()
            .filter(|s| &s.user == user)
            .cloned()
            .collect();
        let found = store
            .sessions(CLUSTER, Some(user), window.from, window.to)
            .await
            .expect("one user's sessions");
        assert_eq!(found, expected, "{user}'s sessions in {window:?}");

        let expected: Vec<KeyGeneration> = keys
            .iter()
            .map(|key| KeyGeneration {
                events: key
                    .events
                    .iter()
                    .filter(|event| window.contains(event.time))
                    .cloned()
                    .collect(),
                ..key.clone()
            })
            .filter(|key| !key.events.is_empty())
            .collect();
        assert_eq!(
            keys_in(&store, window).await,
            expected,
            "keys in {window:?}"
        );

        let expected: Vec<_> = failed
            .iter()
            .filter(|l| window.contains(l.time))
            .cloned()
            .collect();
        let found = store
            .failed_logins(CLUSTER, window.from, window.to)
            .await
            .expect("failed logins");
        assert_eq!(found, expected, "failed logins in {window:?}");

        let expected: Vec<_> = alerts
            .iter()
            .filter(|a| window.contains(a.time))
            .cloned()
            .collect();
        assert_eq!(alerts_in(&store, window, None).await, expected);
        for kind in [AlertKind::SensitiveOperation, AlertKind::BruteForce] {
            let of_kind: Vec<_> = expected
                .iter()
                .filter(|a| a.kind == kind)
                .cloned()
                .collect();
            assert_eq!(
                alerts_in(&store, window, Some(kind)).await,
                of_kind,
                "{kind:?} alerts in {window:?}"
            );
        }

        let expected: Vec<_> = trail
            .iter()
            .filter(|entry| window.contains(entry.record.time()))
            .map(|entry| entry.raw.clone())
            .collect();
        let mut found = Vec::new();
        store
            .trail_pages(CLUSTER, None, window, |page| {
                found.extend(page.into_iter().map(|entry| entry.raw));
                Ok::<_, hsm_audit::store::StoreError>(())
            })
            .await
            .expect("trail");
        assert_eq!(found, expected, "trail in {window:?}");

        let mut items = Vec::new();
        window::quorum_pages(&store, CLUSTER, window, &mut |page| {
            items.extend(page);
            Ok::<_, hsm_audit::store::StoreError>(())
        })
        .await
        .expect("quorum");
        let found = hsm_audit::store::dynamodb::items::quorum_from_items(items).expect("quorum");
        let tokens: Vec<_> = quorum
            .tokens
            .iter()
            .filter(|t| window.contains(t.time))
            .cloned()
            .collect();
        assert_eq!(found.tokens, tokens, "quorum tokens in {window:?}");
    }
}

/// Reads pages of at most `limit` events until none is named, and joins what they hand
/// on: a head that goes on from the page before is the same session or key.
async fn paged<T: PartialEq + Clone>(
    limit: usize,
    mut read: impl AsyncFnMut(Paging, &mut Vec<ViewRow>) -> Option<String>,
    heads: impl Fn(&[ViewRow]) -> Vec<T>,
    mut join: impl FnMut(&mut T, T),
) -> (Vec<T>, usize) {
    let mut whole: Vec<T> = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let mut rows = Vec::new();
        let next = read(
            Paging {
                limit: Some(limit),
                after: after.clone(),
            },
            &mut rows,
        )
        .await;
        pages += 1;
        let mut found = heads(&rows).into_iter();
        if after.is_some()
            && let (Some(last), Some(first)) = (whole.last_mut(), found.next())
        {
            join(last, first);
        }
        whole.extend(found);
        match next {
            Some(next) => after = Some(next),
            None => return (whole, pages),
        }
    }
}

/// A reader's `out` that keeps every row.
fn push_to(rows: &mut Vec<ViewRow>) -> impl FnMut(ViewRow) -> Result<(), StoreError> + '_ {
    |row| {
        rows.push(row);
        Ok(())
    }
}

fn collected(rows: &[ViewRow]) -> Collected {
    let mut found = Collected::default();
    for row in rows {
        found.add(row.clone()).expect("collect");
    }
    found
}

#[tokio::test]
async fn one_users_sessions_and_one_keys_generations_read_in_pages_are_the_whole_answer() {
    let store = loaded().await;
    let sessions = store
        .sessions(CLUSTER, None, None, None)
        .await
        .expect("all");
    // The application's session is the longest.
    let busiest = sessions
        .iter()
        .max_by_key(|s| s.events.len())
        .expect("sessions");
    let user = busiest.user.clone();
    let whole = store
        .sessions(CLUSTER, Some(&user), None, None)
        .await
        .expect("whole");
    let total: usize = whole.iter().map(|s| s.events.len()).sum();
    assert!(total > 40, "{user} has {total} events");
    let (joined, pages) = paged(
        7,
        async |paging, rows| {
            let out = &mut push_to(rows);
            window::user_sessions(&store, CLUSTER, &user, Window::default(), &paging, out)
                .await
                .expect("a page")
        },
        |rows| collected(rows).sessions,
        |last: &mut ClusterSession, next| {
            assert_eq!(
                last.login_time, next.login_time,
                "a page goes on in its session"
            );
            last.events.extend(next.events);
        },
    )
    .await;
    assert_eq!(joined, whole);
    // A page ends at its limit, past it only to keep one microsecond's events together.
    assert!(pages > total / 14, "{pages} pages of {total} events");

    let keys = store.keys(CLUSTER, None).await.expect("keys");
    let busiest = keys
        .iter()
        .max_by_key(|key| key.events.len())
        .expect("keys");
    let whole = store
        .keys(CLUSTER, Some(busiest.handle))
        .await
        .expect("one key");
    let (joined, _) = paged(
        3,
        async |paging, rows| {
            let out = &mut push_to(rows);
            window::key_generations(
                &store,
                CLUSTER,
                &KeyOf::Handle(busiest.handle),
                &paging,
                out,
            )
            .await
            .expect("a page")
        },
        |rows| collected(rows).keys,
        |last: &mut KeyGeneration, next| {
            assert_eq!(last.generation, next.generation);
            last.events.extend(next.events);
        },
    )
    .await;
    assert_eq!(joined, whole);
}
