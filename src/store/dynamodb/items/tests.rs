//! The item layout's tests: sizes and digests as DynamoDB counts them, and keys that
//! hostile input cannot make collide.

mod size_tests {
    use super::super::*;

    fn view_item(events: Vec<(&str, &str)>) -> Item {
        let events = events
            .into_iter()
            .map(|(hsm, opcode)| {
                AttributeValue::M(HashMap::from([
                    ("hsm".to_owned(), AttributeValue::S(hsm.to_owned())),
                    ("opcode".to_owned(), AttributeValue::S(opcode.to_owned())),
                ]))
            })
            .collect();
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S("CLUSTER#c".to_owned())),
            ("sk".to_owned(), AttributeValue::S("SESSION#u#1".to_owned())),
            ("events".to_owned(), AttributeValue::L(events)),
        ])
    }

    #[test]
    fn item_digest_ignores_map_order_and_sees_every_nested_change() {
        let item = view_item(vec![("hsm-a", "CN_LOGIN"), ("hsm-b", "CN_LOGOUT")]);
        let mut rebuilt = Item::new();
        let mut names: Vec<_> = item.keys().cloned().collect();
        names.reverse();
        for name in names {
            rebuilt.insert(name.clone(), item[&name].clone());
        }
        assert_eq!(item_digest(&item), item_digest(&rebuilt));
        let changed = view_item(vec![("hsm-a", "CN_LOGIN"), ("hsm-b", "CN_APP_FINALIZE")]);
        assert_ne!(item_digest(&item), item_digest(&changed));
        let reordered = view_item(vec![("hsm-b", "CN_LOGOUT"), ("hsm-a", "CN_LOGIN")]);
        assert_ne!(
            item_digest(&item),
            item_digest(&reordered),
            "lists keep order"
        );
        let mut number = item.clone();
        number.insert("n".to_owned(), AttributeValue::N("1".to_owned()));
        let mut text = item.clone();
        text.insert("n".to_owned(), AttributeValue::S("1".to_owned()));
        assert_ne!(item_digest(&number), item_digest(&text), "types count");
    }

    #[test]
    fn key_attributes_keep_only_the_key() {
        let key = key_attributes(&view_item(vec![("hsm-a", "CN_LOGIN")]));
        assert_eq!(key.len(), 2);
        assert!(key.contains_key("pk") && key.contains_key("sk"));
    }

    #[test]
    fn sizes_follow_the_published_rules() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("abc".into())),
            ("n".to_owned(), AttributeValue::N("12300".into())),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::Bool(true),
                    AttributeValue::S("xy".into()),
                ]),
            ),
        ]);
        // pk: 2 + 3; n: 1 + (3 significant digits → 2) + 1; l: 1 + 3 + (1 + 1) + (1 + 2).
        assert_eq!(item_size(&item), 5 + 4 + 9);
        assert_eq!(write_units(&item), 1);
        let big: Item = HashMap::from([("raw".to_owned(), AttributeValue::S("x".repeat(2048)))]);
        assert_eq!(write_units(&big), 3, "2051 bytes start a third KiB");
    }
}

mod key_properties {
    use proptest::prelude::*;

    use super::super::*;
    use crate::domain::FailedLogin;
    use crate::model::RecordIdentity;

    /// Arbitrary text as hostile input has it: separators, escapes, the cut marker,
    /// unicode, and lengths past the cut (up to 1 KiB and a little more).
    fn hostile_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a#%~é]{0,12}",
            ".{0,40}",
            "[a#%~\\u{1F600}]{150,400}",
            (".{0,8}", "[a-z#~%]{0,4}", 1usize..1100).prop_map(|(start, tail, repeat)| {
                format!(
                    "{}{tail}",
                    start.repeat(repeat.min(1100 / start.len().max(1)))
                )
            }),
        ]
    }

    /// Two distinct values, often sharing a long start (where a cut alone would collide)
    /// or one being the other plus a separator and more.
    fn distinct_pair() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            (hostile_text(), hostile_text()),
            (hostile_text(), "[a#~%]{1,6}").prop_map(|(a, tail)| (a.clone(), format!("{a}{tail}"))),
            (hostile_text(), hostile_text()).prop_map(|(a, b)| (a.clone(), format!("{a}#{b}"))),
        ]
        .prop_filter("distinct", |(a, b)| a != b)
    }

    fn session(user: &str, hsm: &str) -> ClusterSession {
        ClusterSession {
            user: user.to_owned(),
            user_type: None,
            login_time: Timestamp::from_micros(1_516_067_329_824_999),
            end_time: None,
            ended_by: None,
            origin_hsm: hsm.to_owned(),
            origin_seq: 7,
            origin_reboot_counter: 1,
            mirror_hsms: Vec::new(),
            events: Vec::new(),
        }
    }

    fn failed_login(hsm: &str) -> FailedLogin {
        FailedLogin {
            time: Timestamp::from_micros(1_516_067_329_824_999),
            hsm: hsm.to_owned(),
            seq: 7,
            reboot_counter: 1,
            user: "u".to_owned(),
            user_type: None,
            response_code: 163,
            response: "wrong password".to_owned(),
            hsm_response: "HSM Error".to_owned(),
            brute_force: false,
            opcode: None,
            log_event_id: None,
        }
    }

    fn quarantine_sk(group: &str, stream: &str, id: &str) -> String {
        let quarantined = Quarantined::new("bad", b"x").at(group, stream, Some(id));
        quarantine_item(&quarantined)
            .map(|item| sort_key(&item))
            .unwrap_or_default()
    }

    fn assert_apart(a: &str, b: &str, key_a: &str, key_b: &str, prefix_b: &str) {
        assert_ne!(key_a, key_b, "{a:?} and {b:?} share a key");
        assert!(
            !key_a.starts_with(prefix_b),
            "{a:?}'s key {key_a} matches {b:?}'s query {prefix_b}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn distinct_values_never_share_a_key_or_match_each_others_queries(
            (a, b) in distinct_pair()
        ) {
            for (x, y) in [(&a, &b), (&b, &a)] {
                prop_assert_ne!(key_part(x), key_part(y));
                // Users: a session's key and a user's session query.
                assert_apart(x, y, &session_sk(&session(x, "h")), &session_sk(&session(y, "h")),
                    &session_prefix(Some(y)));
                // HSMs: trail records, an HSM's trail query, sessions, failed logins, streams.
                assert_apart(x, y, &trail_sk(x, 1, 7), &trail_sk(y, 1, 7), &hsm_trail_prefix(y));
                prop_assert_ne!(session_sk(&session("u", x)), session_sk(&session("u", y)));
                prop_assert_ne!(failed_login_sk(&failed_login(x)), failed_login_sk(&failed_login(y)));
                prop_assert_ne!(trail_pk(x), trail_pk(y));
                prop_assert_ne!(cluster_pk(x), cluster_pk(y));
                // Log groups, streams and event ids: quarantine entries and trail records
                // without a sequence number.
                prop_assert_ne!(quarantine_sk(x, "s", "1"), quarantine_sk(y, "s", "1"));
                prop_assert_ne!(quarantine_sk("g", x, "1"), quarantine_sk("g", y, "1"));
                prop_assert_ne!(quarantine_sk("g", "s", x), quarantine_sk("g", "s", y));
                // A value's separator cannot move a boundary: `C#s`/`x` is not `C`/`s#x`.
                prop_assert_ne!(quarantine_sk(x, y, "1"), quarantine_sk(y, x, "1"));
                let log_x = identity_sk(&RecordIdentity::LogEvent {
                    stream: x.clone(),
                    log_event_id: "1".to_owned(),
                });
                let log_y = identity_sk(&RecordIdentity::LogEvent {
                    stream: y.clone(),
                    log_event_id: "1".to_owned(),
                });
                prop_assert_ne!(log_x, log_y);
                // Every key stays within DynamoDB's sort-key limit.
                prop_assert!(session_sk(&session(x, x)).len() <= 1024);
                prop_assert!(quarantine_sk(x, x, x).len() <= 1024);
                prop_assert!(!key_part(x).contains('#'));
            }
        }
    }
}
