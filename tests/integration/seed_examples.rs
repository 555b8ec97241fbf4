//! The vendor's worked examples ("Interpreting HSM audit logs", as the Lambda events of
//! `events/`, generated from `tests/fixtures/seed-000`) through the handler into the
//! local DynamoDB, read back through the store's queries: what a compliance team sees.
//! `domain_scenarios.rs` checks the same rules on the pure derivation.

use hsm_audit::domain::{Alert, AlertKind, ClusterSession, KeyGeneration, KeyState};
use hsm_audit::lambda::ingest_event;
use hsm_audit::model::Opcode;
use hsm_audit::store::dynamodb::DynamoStore;

use crate::common::*;

const CLUSTER: &str = "cluster-demo";

async fn ingested() -> DynamoStore {
    let store = fresh_store("seed-examples").await;
    let config = config_for(&store);
    for (name, event) in sample_events() {
        ingest_event(event, &store, &config)
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    store
}

fn opcodes(session: &ClusterSession) -> Vec<&str> {
    session
        .events
        .iter()
        .map(|event| event.opcode.as_str())
        .collect()
}

fn key(keys: &[KeyGeneration], handle: u64) -> &KeyGeneration {
    keys.iter()
        .find(|key| key.handle == handle)
        .unwrap_or_else(|| panic!("no lifecycle of key {handle}: {keys:#?}"))
}

fn sensitive<'a>(alerts: &'a [Alert], opcode: &str) -> &'a Alert {
    alerts
        .iter()
        .find(|alert| {
            alert.kind == AlertKind::SensitiveOperation
                && alert.opcode.as_ref().map(Opcode::as_str) == Some(opcode)
        })
        .unwrap_or_else(|| panic!("no sensitive-operation alert for {opcode}: {alerts:#?}"))
}

#[tokio::test]
async fn the_worked_examples_read_back_from_dynamodb_as_the_vendor_explains_them() {
    let store = ingested().await;
    let sessions = store
        .sessions(CLUSTER, None, None, None)
        .await
        .expect("sessions");
    let keys = store.keys(CLUSTER, None).await.expect("keys");
    let failed = store
        .failed_logins(CLUSTER, None, None)
        .await
        .expect("failed logins");
    let alerts = store.alerts(CLUSTER).await.expect("alerts");

    // First HSM initialisation: the token initialised, the officer's password changed.
    sensitive(&alerts, "CN_INIT_TOKEN");
    assert_eq!(
        sensitive(&alerts, "CN_CHANGE_PSWD").detail.as_deref(),
        Some("admin")
    );

    // Login and logout: admin's session on one HSM, mirrored on another, where the user
    // bob was created, ended by the logout.
    let admin = sessions
        .iter()
        .find(|session| session.user == "admin")
        .expect("admin's session");
    assert_eq!(admin.origin_hsm, "hsm-bbbbbb00002");
    assert_eq!(admin.mirror_hsms, ["hsm-cccccc00003"]);
    assert_eq!(admin.ended_by.as_deref(), Some("CN_LOGOUT"));
    assert_eq!(opcodes(admin), ["CN_LOGIN", "CN_CREATE_USER", "CN_LOGOUT"]);
    assert_eq!(admin.events[1].target_user.as_deref(), Some("bob"));

    // Failed logins: response 157 is an unknown user, 163 a wrong password.
    let mut flags: Vec<(&str, u32, &str)> = failed
        .iter()
        .map(|login| {
            (
                login.user.as_str(),
                login.response_code,
                login.response.as_str(),
            )
        })
        .collect();
    flags.sort();
    assert_eq!(
        flags,
        [
            ("ExampleUser", 157, "unknown user"),
            ("testuser", 163, "wrong password")
        ]
    );
    assert!(failed.iter().all(|login| !login.brute_force));

    // User management: creating and deleting a crypto officer are sensitive.
    assert_eq!(
        sensitive(&alerts, "CN_CREATE_CO").detail.as_deref(),
        Some("alice")
    );
    assert_eq!(
        sensitive(&alerts, "CN_DELETE_USER").detail.as_deref(),
        Some("alice")
    );

    // A key pair generated and destroyed: two linked lifecycles, both ended.
    let public = key(&keys, 131_078);
    let private = key(&keys, 131_079);
    assert_eq!(
        (public.kind.as_str(), private.kind.as_str()),
        ("public", "private")
    );
    assert_eq!(public.pair_handle, Some(131_079));
    assert_eq!(private.pair_handle, Some(131_078));
    for half in [public, private] {
        assert_eq!(half.state, KeyState::Destroyed);
        assert_eq!(half.created_by.as_deref(), Some("crypto_user"));
        assert_eq!(half.created_opcode, Some(Opcode::GenerateKeyPair));
    }

    // A key generated on one HSM and synchronised to another: one key on both HSMs.
    let synced = key(&keys, 262_152);
    assert_eq!(synced.created_by.as_deref(), Some("testuser"));
    assert_eq!(synced.created_opcode, Some(Opcode::GenerateKey));
    assert_eq!(synced.hsms, ["hsm-abcde123456", "hsm-zyxwv987654"]);
    assert_eq!(synced.state, KeyState::Active);

    // Export: key 7 wrapped out of the HSM by testuser.
    assert!(key(&keys, 7).exported);
    assert_eq!(
        sensitive(&alerts, "CN_WRAP_KEY").user.as_deref(),
        Some("testuser")
    );

    // Import: key 11 unwrapped by testuser and synchronised to the other HSM.
    let imported = key(&keys, 11);
    assert_eq!(imported.created_opcode, Some(Opcode::UnwrapKey));
    assert_eq!(imported.created_by.as_deref(), Some("testuser"));
    assert_eq!(imported.hsms, ["hsm-abcde123456", "hsm-zyxwv987654"]);

    // Share: the record is in the trail, but it names no key, so no lifecycle changes.
    let shared = store
        .trail(CLUSTER, Some("hsm-eeeeee00005"))
        .await
        .expect("trail");
    assert!(
        shared
            .iter()
            .filter_map(|entry| entry.cloudhsm())
            .any(|record| record.opcode == Opcode::ShareObject),
        "the share record is stored: {shared:#?}"
    );
    assert!(
        keys.iter().all(|key| key
            .events
            .iter()
            .all(|event| event.opcode != Opcode::ShareObject)),
        "a share without key fields touches no key"
    );
}
