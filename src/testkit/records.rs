//! Builds audit records and trail entries directly, so that the domain (and the parser's
//! expectations) can be written without the parser and with only the fields a test
//! cares about.

use crate::model::{
    AuditRecord, HsmRecord, Labeled, LaterFields, LogSource, Opcode, Timestamp, TrailEntry,
    shared_name,
};

/// The init-token record of the vendor's audit-log reference, as the HSM writes it (seed
/// layout): the text parser tests start from.
pub const INIT_TOKEN_RECORD: &str = "Time: 12/19/17 21:01:16.962174, usecs:1513717276962174
Sequence No : 0x0
Reboot counter : 0xe8
Command Type(hex) : CN_MGMT_CMD (0x0)
Opcode : CN_INIT_TOKEN (0x1)
Session Handle : 0x1004001
Response : 0:HSM Return: SUCCESS
Log type : MINIMAL_LOG_ENTRY (0)
";

/// A successful management record with no user or key fields: what most of the vendor's
/// examples share, to be overridden field by field.
pub fn hsm_record(micros: i64, sequence_no: u64, reboot_counter: u32, opcode: Opcode) -> HsmRecord {
    HsmRecord {
        time: Timestamp::from_micros(micros),
        sequence_no,
        reboot_counter,
        command_type: Labeled {
            name: "CN_MGMT_CMD".into(),
            code: Some(0),
        },
        opcode,
        opcode_code: None,
        session_handle: 0,
        response_code: 0,
        response_text: "HSM Return: SUCCESS".into(),
        log_type: Labeled {
            name: "MINIMAL_LOG_ENTRY".into(),
            code: Some(0),
        },
        user_name: None,
        user_type: None,
        key_handle: None,
        public_key_handle: None,
        later: Default::default(),
    }
}

pub struct Builder {
    entry: TrailEntry,
}

/// A trail entry of [`hsm_record`] on `hsm` of cluster `cluster-test`; add what the test
/// needs.
pub fn rec(hsm: &str, boot: u32, seq: u64, micros: i64, opcode: Opcode) -> Builder {
    Builder {
        entry: TrailEntry {
            source: LogSource::shared("/aws/cloudhsm/cluster-test", hsm),
            record: AuditRecord::CloudHsm(hsm_record(micros, seq, boot, opcode)),
            log_event_id: format!("{hsm}-{boot}-{seq}"),
            log_event_time: Timestamp::from_micros(micros),
            raw: String::new(),
        },
    }
}

/// A login of `user` (a crypto user unless `user_type` says otherwise).
pub fn login(hsm: &str, seq: u64, micros: i64, handle: u64, user: &str) -> Builder {
    rec(hsm, 1, seq, micros, Opcode::Login)
        .handle(handle)
        .user(user, "CN_CRYPTO_USER")
}

impl Builder {
    fn record_mut(&mut self) -> &mut HsmRecord {
        match &mut self.entry.record {
            AuditRecord::CloudHsm(record) => record,
            AuditRecord::Certificate(_) | AuditRecord::Luna(_) => {
                unreachable!("the builder makes CloudHSM records only")
            }
        }
    }

    pub fn handle(mut self, handle: u64) -> Self {
        self.record_mut().session_handle = handle;
        self
    }

    pub fn user(mut self, name: &str, user_type: &str) -> Self {
        self.record_mut().user_name = Some(name.into());
        self.record_mut().user_type = Some(Labeled {
            name: shared_name(user_type),
            code: None,
        });
        self
    }

    pub fn key(mut self, handle: u64) -> Self {
        self.record_mut().key_handle = Some(handle);
        self.record_mut().public_key_handle.get_or_insert(0);
        self
    }

    pub fn public(mut self, handle: u64) -> Self {
        self.record_mut().public_key_handle = Some(handle);
        self
    }

    pub fn fail(mut self, code: u32, text: &str) -> Self {
        self.record_mut().response_code = code;
        self.record_mut().response_text = shared_name(text);
        self
    }

    pub fn boot(mut self, boot: u32) -> Self {
        self.record_mut().reboot_counter = boot;
        self
    }

    /// The later layout's `Target User …` fields: the record acts on this user.
    pub fn target(self, name: &str, user_type: &str, id: &str) -> Self {
        self.later(|later| {
            later.target_user_name = Some(name.into());
            later.target_user_type = Some(Labeled {
                name: shared_name(user_type),
                code: None,
            });
            later.target_user_id = Some(id.into());
        })
    }

    pub fn user_id(self, id: &str) -> Self {
        self.later(|later| later.user_id = Some(id.into()))
    }

    /// Sets any of the later layout's fields.
    pub fn later(mut self, set: impl FnOnce(&mut LaterFields)) -> Self {
        set(self.record_mut().later_mut());
        self
    }

    pub fn command_type(mut self, name: &str, code: u64) -> Self {
        self.record_mut().command_type = Labeled {
            name: shared_name(name),
            code: Some(code),
        };
        self
    }

    pub fn build(self) -> TrailEntry {
        self.entry
    }
}
