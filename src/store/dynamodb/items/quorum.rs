//! The quorum view's items in the cluster's partition: `QUORUM#TOKEN#<time>#<hsm>#<seq>`
//! (`item_type` `quorum_token`) and `QUORUM#M_VALUE#<time>#<hsm>#<seq>` (`quorum_m_value`),
//! times ISO-8601 and sequence numbers fixed-width hex, so a partition query lists each
//! kind in time order.

use super::{DerivedHeader, Item, derived_item, item_type, key_part, read_item};
use crate::domain::{MValueSetting, QuorumToken, QuorumView};
use crate::store::StoreError;

pub const QUORUM_PREFIX: &str = "QUORUM#";
pub const QUORUM_TOKEN_PREFIX: &str = "QUORUM#TOKEN#";
pub const QUORUM_M_VALUE_PREFIX: &str = "QUORUM#M_VALUE#";
const TOKEN_TYPE: &str = "quorum_token";
const M_VALUE_TYPE: &str = "quorum_m_value";

fn sk(kind: &str, time: &crate::model::Timestamp, hsm: &str, seq: u64) -> String {
    format!(
        "{QUORUM_PREFIX}{kind}#{}#{}#{seq:016x}",
        time.iso(),
        key_part(hsm)
    )
}

/// The view's items, each with the time of the record that starts it.
pub(super) fn quorum_items(
    cluster: &str,
    quorum: &QuorumView,
) -> Result<Vec<(Item, crate::model::Timestamp)>, StoreError> {
    let mut items = Vec::with_capacity(quorum.tokens.len() + quorum.m_values.len());
    for token in &quorum.tokens {
        let sk = sk("TOKEN", &token.time, &token.hsm, token.seq);
        items.push((derived_item(cluster, sk, TOKEN_TYPE, token)?, token.time));
    }
    for setting in &quorum.m_values {
        let step = &setting.step;
        let sk = sk("M_VALUE", &step.time, &step.hsm, step.seq);
        items.push((derived_item(cluster, sk, M_VALUE_TYPE, setting)?, step.time));
    }
    Ok(items)
}

/// The quorum view from the items of a `QUORUM#` query.
pub fn quorum_from_items(items: Vec<Item>) -> Result<QuorumView, StoreError> {
    let mut view = QuorumView::default();
    for item in items {
        match item_type(&item) {
            TOKEN_TYPE => view
                .tokens
                .push(read_item::<DerivedHeader<QuorumToken>>(item)?.body),
            M_VALUE_TYPE => view
                .m_values
                .push(read_item::<DerivedHeader<MValueSetting>>(item)?.body),
            _ => {}
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MValueSetting, QuorumStep, QuorumToken};
    use crate::model::{Opcode, Timestamp};

    fn step(seq: u64, opcode: Opcode) -> QuorumStep {
        QuorumStep {
            time: Timestamp::from_micros(1_000 + i64::try_from(seq).unwrap_or(0)),
            hsm: "hsm-a".into(),
            seq,
            opcode,
            success: true,
            user: Some("admin".into()),
        }
    }

    #[test]
    fn quorum_items_read_back_and_sort_by_time_under_their_prefix() {
        let view = QuorumView {
            tokens: vec![QuorumToken {
                hsm: "hsm-a".into(),
                reboot_counter: 3,
                seq: 1,
                time: Timestamp::from_micros(1_001),
                requested_by: Some("admin".into()),
                approved_by: vec!["carol".into()],
                end_time: None,
                ended_by: None,
                steps: vec![step(1, Opcode::GetToken), step(2, Opcode::ApproveToken)],
                activity: vec![step(3, Opcode::CreateUser)],
                activity_count: 1,
            }],
            m_values: vec![MValueSetting {
                step: step(4, Opcode::SetMValue),
                value: Some(2),
                previous: None,
            }],
        };
        let items: Vec<Item> = quorum_items("cluster-x", &view)
            .unwrap()
            .into_iter()
            .map(|(item, _)| item)
            .collect();
        let sks: Vec<String> = items.iter().map(super::super::sort_key).collect();
        assert_eq!(
            sks,
            vec![
                "QUORUM#TOKEN#1970-01-01T00:00:00.001001Z#hsm-a#0000000000000001",
                "QUORUM#M_VALUE#1970-01-01T00:00:00.001004Z#hsm-a#0000000000000004",
            ]
        );
        assert!(
            !items[0].contains_key("end_time"),
            "absent values are left out"
        );
        assert_eq!(quorum_from_items(items).unwrap(), view);
    }
}
