//! Audit time: Unix microseconds inside, ISO-8601 UTC with microseconds outside.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with microsecond resolution, as CloudHSM's `usecs:` field gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The earliest time the trail stores: 0000-01-01T00:00:00Z.
    pub const MIN: Self = Self(-62_167_219_200_000_000);
    /// The latest: 9999-12-31T23:59:59.999999Z. Beyond four-digit years ISO-8601 needs a
    /// sign (`+10000-…`) that breaks both the fixed width sort keys rely on and reading the
    /// item back, so a record outside is quarantined before anything is stored.
    pub const MAX: Self = Self(253_402_300_799_999_999);

    /// Whether the time lies in [`Self::MIN`]..=[`Self::MAX`], where it reads back as it
    /// was written and sorts as a key.
    pub fn is_storable(self) -> bool {
        (Self::MIN..=Self::MAX).contains(&self)
    }

    /// `Err` with the reason a record is quarantined for, when `self` is not storable.
    pub fn check_storable(self, what: &'static str) -> Result<Self, super::bounds::Unstorable> {
        if self.is_storable() {
            Ok(self)
        } else {
            Err(super::bounds::Unstorable::Time {
                what,
                micros: self.0,
            })
        }
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The wall clock.
    pub fn now() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros());
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn from_millis(millis: i64) -> Self {
        Self(millis.saturating_mul(1000))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// `2018-01-16T01:48:49.824999Z`: fixed width, so that string order is time order
    /// in DynamoDB sort keys.
    pub fn iso(self) -> String {
        match DateTime::<Utc>::from_timestamp_micros(self.0) {
            Some(time) => time.to_rfc3339_opts(SecondsFormat::Micros, true),
            // Out of chrono's range only for absurd inputs; keep them visible, not lost.
            None => format!("usecs:{}", self.0),
        }
    }

    /// Reads what users type on the command line: a full RFC 3339 time, a date-time
    /// without zone (taken as UTC) or a bare date (its midnight, UTC).
    pub fn parse_user(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Some(Self(time.with_timezone(&Utc).timestamp_micros()));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
                return Some(Self(time.and_utc().timestamp_micros()));
            }
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Self(
            date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros(),
        ))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.iso())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(micros) = text.strip_prefix("usecs:") {
            return micros.parse().map(Self).map_err(serde::de::Error::custom);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|time| Self(time.timestamp_micros()))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_microseconds_and_z() {
        assert_eq!(
            Timestamp(1516067329824999).iso(),
            "2018-01-16T01:48:49.824999Z"
        );
        assert_eq!(
            Timestamp(1516067329000000).iso(),
            "2018-01-16T01:48:49.000000Z"
        );
    }

    #[test]
    fn serde_round_trips_through_iso() {
        let time = Timestamp(1513717276962174);
        let json = serde_json::to_string(&time).unwrap();
        assert_eq!(json, "\"2017-12-19T21:01:16.962174Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), time);
    }

    #[test]
    fn storable_times_read_back_exactly_and_the_next_microsecond_is_refused() {
        for time in [Timestamp::MIN, Timestamp::MAX, Timestamp(0)] {
            assert!(time.is_storable());
            let json = serde_json::to_string(&time).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), time);
            assert_eq!(time.iso().len(), "2018-01-16T01:48:49.824999Z".len());
        }
        assert_eq!(Timestamp::MAX.iso(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp::MIN.iso(), "0000-01-01T00:00:00.000000Z");
        for time in [
            Timestamp(Timestamp::MAX.0 + 1),
            Timestamp(Timestamp::MIN.0 - 1),
            Timestamp::from_millis(i64::MAX),
        ] {
            assert!(!time.is_storable());
            let reason = time.check_storable("`usecs`").unwrap_err().to_string();
            assert!(
                reason.contains("outside the years 0000 to 9999"),
                "{reason}"
            );
        }
    }

    #[test]
    fn user_times_accept_dates_and_zoneless_times() {
        assert_eq!(
            Timestamp::parse_user("2018-01-16")
                .map(Timestamp::iso)
                .as_deref(),
            Some("2018-01-16T00:00:00.000000Z")
        );
        assert_eq!(
            Timestamp::parse_user("2018-01-16T01:48:49.5").map(Timestamp::micros),
            Some(1516067329500000)
        );
        assert_eq!(
            Timestamp::parse_user("2018-01-16T02:48:49+01:00").map(Timestamp::micros),
            Some(1516067329000000)
        );
        assert_eq!(Timestamp::parse_user("yesterday"), None);
    }
}
