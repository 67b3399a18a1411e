//! Identifiers that travel on the wire, as validated newtypes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::ProtocolError;

/// An appliance's identity: a lowercase hyphenated UUID. It is also the
/// appliance's MQTT client id and username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApplianceId(Uuid);

impl ApplianceId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl FromStr for ApplianceId {
    type Err = ProtocolError;

    /// Accepts only the canonical lowercase hyphenated form, so that one
    /// appliance has exactly one spelling in topics, client ids and rows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = s.len() == 36
            && s.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match Uuid::parse_str(s) {
            Ok(uuid) if canonical => Ok(Self(uuid)),
            _ => Err(ProtocolError::invalid(
                "applianceId",
                "expected a lowercase hyphenated UUID",
            )),
        }
    }
}

impl fmt::Display for ApplianceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// The first level of an appliance's namespace (`va` by default):
/// 1-32 characters of `a-z`, `0-9`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductKey(String);

impl ProductKey {
    /// The product key as it appears in topics.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ProductKey {
    fn default() -> Self {
        Self(crate::DEFAULT_PRODUCT_KEY.to_owned())
    }
}

impl FromStr for ProductKey {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ProtocolError::invalid(
                "productKey",
                "expected 1-32 characters of a-z, 0-9, '_' and '-'",
            ))
        }
    }
}

impl fmt::Display for ProductKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one task sent to one appliance: one attempt of one execution
/// (a UUID), or the appliance id itself for heartbeats. 1-64 characters of
/// ASCII letters, digits, `-` and `_`. The values `$next` and `$list` of
/// `job/get` are not task ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// A fresh random task id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4().hyphenated().to_string())
    }

    /// The task id of an appliance's heartbeat.
    pub fn heartbeat(appliance: &ApplianceId) -> Self {
        Self(appliance.to_string())
    }

    /// The task id as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TaskId {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ProtocolError::invalid(
                "taskId",
                "expected 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
            ))
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_serde!(ApplianceId, ProductKey, TaskId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliance_id_accepts_only_canonical_form() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            id.parse::<ApplianceId>().map(|a| a.to_string()),
            Ok(id.to_owned())
        );
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "0f8fad5b-d9cb-469f-a165-70867728950e/x",
            "",
            "+",
        ] {
            assert!(bad.parse::<ApplianceId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn task_and_product_key_charsets() {
        assert!("$next".parse::<TaskId>().is_err());
        assert!("a/b".parse::<TaskId>().is_err());
        assert!("x".repeat(65).parse::<TaskId>().is_err());
        assert!("task_1-A".parse::<TaskId>().is_ok());
        assert!("va".parse::<ProductKey>().is_ok());
        assert!("VA".parse::<ProductKey>().is_err());
        assert!("a+b".parse::<ProductKey>().is_err());
        assert!("".parse::<ProductKey>().is_err());
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: Result<TaskId, _> = serde_json::from_str("\"abc\"");
        assert!(ok.is_ok());
        let bad: Result<ApplianceId, _> = serde_json::from_str("\"nope\"");
        assert!(bad.is_err());
    }
}
