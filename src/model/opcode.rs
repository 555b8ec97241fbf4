//! CloudHSM opcodes by name. The set is the "HSM audit log reference" table; any other
//! name is kept verbatim in `Other`, because new firmware adds opcodes and an audit
//! trail must never drop what it does not recognise.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! opcodes {
    ($($variant:ident => $name:literal,)*) => {
        /// The command an audit record logs, by the name the HSM logs it under.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Opcode {
            $($variant,)*
            Other(String),
        }

        impl Opcode {
            /// The name as the HSM logs it (`CN_LOGIN`).
            pub fn as_str(&self) -> &str {
                match self {
                    $(Opcode::$variant => $name,)*
                    Opcode::Other(name) => name,
                }
            }

            pub fn from_name(name: &str) -> Self {
                match name {
                    $($name => Opcode::$variant,)*
                    other => Opcode::Other(other.to_owned()),
                }
            }
        }
    };
}

opcodes! {
    Login => "CN_LOGIN",
    Logout => "CN_LOGOUT",
    AppFinalize => "CN_APP_FINALIZE",
    CloseSession => "CN_CLOSE_SESSION",
    // The "Interpreting" page names the close-session event this way once; accept both.
    SessionClose => "CN_SESSION_CLOSE",
    CreateUser => "CN_CREATE_USER",
    CreateCo => "CN_CREATE_CO",
    CreateApplianceUser => "CN_CREATE_APPLIANCE_USER",
    DeleteUser => "CN_DELETE_USER",
    ChangePswd => "CN_CHANGE_PSWD",
    SetMValue => "CN_SET_M_VALUE",
    ApproveToken => "CN_APPROVE_TOKEN",
    DeleteToken => "CN_DELETE_TOKEN",
    GetToken => "CN_GET_TOKEN",
    GenerateKey => "CN_GENERATE_KEY",
    GenerateKeyPair => "CN_GENERATE_KEY_PAIR",
    CreateObject => "CN_CREATE_OBJECT",
    ModifyObject => "CN_MODIFY_OBJECT",
    DestroyObject => "CN_DESTROY_OBJECT",
    TombstoneObject => "CN_TOMBSTONE_OBJECT",
    ShareObject => "CN_SHARE_OBJECT",
    WrapKey => "CN_WRAP_KEY",
    UnwrapKey => "CN_UNWRAP_KEY",
    DeriveKey => "CN_DERIVE_KEY",
    NistAesWrap => "CN_NIST_AES_WRAP",
    InsertMaskedObjectUser => "CN_INSERT_MASKED_OBJECT_USER",
    ExtractMaskedObjectUser => "CN_EXTRACT_MASKED_OBJECT_USER",
    CloneSourceStage1 => "CN_CLONE_SOURCE_STAGE1",
    CloneTargetInit => "CN_CLONE_TARGET_INIT",
    CloneTargetStage1 => "CN_CLONE_TARGET_STAGE1",
    BackupBegin => "CN_BACKUP_BEGIN",
    BackupEnd => "CN_BACKUP_END",
    RestoreBegin => "CN_RESTORE_BEGIN",
    RestoreEnd => "CN_RESTORE_END",
    CertAuthStoreCert => "CN_CERT_AUTH_STORE_CERT",
    CertAuthValidatePeerCerts => "CN_CERT_AUTH_VALIDATE_PEER_CERTS",
    CertAuthSourceKeyExchange => "CN_CERT_AUTH_SOURCE_KEY_EXCHANGE",
    CertAuthTargetKeyExchange => "CN_CERT_AUTH_TARGET_KEY_EXCHANGE",
    InitToken => "CN_INIT_TOKEN",
    InitDone => "CN_INIT_DONE",
    GenKeyEncKey => "CN_GEN_KEY_ENC_KEY",
    GenPswdEncKey => "CN_GEN_PSWD_ENC_KEY",
    ClosePartitionSessions => "CN_CLOSE_PARTITION_SESSIONS",
    StoreKbkShare => "CN_STORE_KBK_SHARE",
    SetNodeid => "CN_SET_NODEID",
    Zeroize => "CN_ZEROIZE",
    FipsRand => "CN_FIPS_RAND",
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Opcode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Opcode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| Opcode::from_name(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_map_to_variants_and_back() {
        assert_eq!(Opcode::from_name("CN_LOGIN"), Opcode::Login);
        assert_eq!(Opcode::Login.as_str(), "CN_LOGIN");
        assert_eq!(
            Opcode::from_name("CN_INSERT_MASKED_OBJECT_USER").as_str(),
            "CN_INSERT_MASKED_OBJECT_USER"
        );
    }

    #[test]
    fn unknown_names_survive_verbatim() {
        let opcode = Opcode::from_name("CN_FUTURE_THING");
        assert_eq!(opcode, Opcode::Other("CN_FUTURE_THING".into()));
        assert_eq!(opcode.as_str(), "CN_FUTURE_THING");
    }
}
