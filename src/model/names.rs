//! The names HSMs log over and over: command, log and user types, share operations and
//! the common responses. A record holds one of these as a shared static string rather
//! than a copy of its own, so parsing a record allocates nothing for them; any other
//! name is kept verbatim, owned, as before.

use std::borrow::Cow;

macro_rules! vocabulary {
    ($($name:literal,)*) => {
        /// `text` as a static string when it is a name of the vocabulary, else as owned
        /// (moved when it is a `String` already).
        pub fn shared_name<T: AsRef<str> + Into<String>>(text: T) -> Cow<'static, str> {
            match text.as_ref() {
                $($name => Cow::Borrowed($name),)*
                _ => Cow::Owned(text.into()),
            }
        }
    };
}

vocabulary! {
    // Command types.
    "CN_MGMT_CMD",
    "CN_TIME_INFO",
    // Log types.
    "MGMT_USER_DETAILS_LOG",
    "MGMT_KEY_DETAILS_LOG",
    "MINIMAL_LOG_ENTRY",
    "GENERIC_LOG",
    "UNKNOWN_LOG_TYPE",
    // User types.
    "CN_CRYPTO_OFFICER",
    "CN_CRYPTO_USER",
    "CN_CRYPTO_PRE_OFFICER",
    "CN_APPLIANCE_USER",
    "CN_UNKNOWN_USER",
    // Share operations.
    "SHARE",
    "UNSHARE",
    // Responses, the text after the code.
    "HSM Return: SUCCESS",
    "HSM Error: RET_USER_LOGIN_FAILURE",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_names_are_shared_and_others_kept_verbatim() {
        assert!(matches!(
            shared_name("CN_CRYPTO_USER"),
            Cow::Borrowed("CN_CRYPTO_USER")
        ));
        assert!(matches!(
            shared_name("HSM Return: SUCCESS"),
            Cow::Borrowed(_)
        ));
        // Matching is exact: another case or a longer name is not the vocabulary's.
        assert!(
            matches!(shared_name("cn_crypto_user"), Cow::Owned(name) if name == "cn_crypto_user")
        );
        assert!(
            matches!(shared_name("CN_CRYPTO_USER2"), Cow::Owned(name) if name == "CN_CRYPTO_USER2")
        );
        assert!(matches!(
            shared_name(String::from("SHARE")),
            Cow::Borrowed("SHARE")
        ));
    }
}
