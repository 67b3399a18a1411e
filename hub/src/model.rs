//! Domain types shared by the engine, the store and the API: the ids that
//! exist only inside the hub ([`JobId`], [`CustomerId`]), the job and
//! appliance statuses, and per-execution-status counters.
//!
//! Wire types (appliance and task ids, execution statuses, job documents)
//! live in the `protocol` crate and are used as they are.
//!
//! Every enum here has exactly one `as_str` that gives its text form; the
//! store's SQL `CHECK` constraints and the API's JSON both come from it.

use std::fmt;
use std::str::FromStr;

use protocol::ExecutionStatus;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use uuid::Uuid;

/// Epoch milliseconds. Every instant in the hub is one of these, passed in
/// by the caller (the engine and the store read no clock).
pub type Millis = i64;

/// A text that is not the form of the value it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} `{value}`: {expected}")]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl ParseError {
    fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            what,
            value: value.chars().take(64).collect(),
            expected,
        }
    }
}

/// Serde as the `Display` / `FromStr` text form.
macro_rules! text_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                raw.parse().map_err(de::Error::custom)
            }
        }
    )*};
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
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

        impl FromStr for $name {
            type Err = ParseError;

            /// Accepts only the lowercase hyphenated form, so that an id has
            /// one spelling in URLs, JSON and rows.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_uuid(s)
                    .map(Self)
                    .ok_or_else(|| ParseError::new($what, s, "expected a lowercase hyphenated UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// A job: one job document sent to a set of appliances.
    JobId,
    "job id"
);
uuid_id!(
    /// A customer (tenant) owning appliances and jobs.
    CustomerId,
    "customer id"
);

fn parse_uuid(s: &str) -> Option<Uuid> {
    let canonical = s.len() == 36
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    Uuid::parse_str(s).ok().filter(|_| canonical)
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The one text form: JSON, SQL and logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| ParseError::new($what, s, concat!("expected one of:" $(, " ", $text)+)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a job stands as a whole.
    JobStatus, "job status" {
        /// Some executions are not terminal yet.
        InProgress => "IN_PROGRESS",
        /// Every execution reached a terminal state.
        Completed => "COMPLETED",
        /// An operator canceled it; executions that were not running (or,
        /// with force, all) were canceled.
        Canceled => "CANCELED",
        /// One of its abort criteria was met: executions that had not run
        /// were canceled, those running were left to finish.
        Aborted => "ABORTED",
    }
);

text_enum!(
    /// Where a job's rollout stands (`rollout.phase` of a job summary).
    RolloutPhase, "rollout phase" {
        /// The job's start time has not come yet.
        WaitingStart => "WAITING_START",
        /// Outside the job's maintenance window.
        WaitingWindow => "WAITING_WINDOW",
        /// Releasing executions, within the rate.
        Releasing => "RELEASING",
        /// A staged group was released; the next one waits for the success
        /// threshold.
        StageGated => "STAGE_GATED",
        /// Every execution ended (no retry left).
        Completed => "COMPLETED",
        /// An abort criterion was met.
        Aborted => "ABORTED",
        /// An operator canceled the job.
        Canceled => "CANCELED",
    }
);

text_enum!(
    /// An appliance's connection state as the hub knows it.
    ApplianceStatus, "appliance status" {
        /// Registered, not connected now.
        Offline => "OFFLINE",
        /// Connected to the device edge.
        Online => "ONLINE",
        /// Deleted by its customer; kept for the history of its
        /// executions, refused at authentication and as a job target.
        Removed => "REMOVED",
    }
);

text_serde!(JobId, CustomerId, JobStatus, ApplianceStatus, RolloutPhase);

/// How many executions of a job are in each [`ExecutionStatus`], indexed by
/// [`ExecutionStatus::index`]. Serialized as an object with all nine keys:
/// `{"QUEUED": 0, "SENT": 2, ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusCounts(pub [u64; 9]);

impl StatusCounts {
    /// The count of one status.
    pub fn get(&self, status: ExecutionStatus) -> u64 {
        self.0[status.index()]
    }

    /// Sets the count of one status.
    pub fn set(&mut self, status: ExecutionStatus, count: u64) {
        self.0[status.index()] = count;
    }

    /// Every execution, whatever its status.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Executions that are not terminal yet (QUEUED, SENT, IN_PROGRESS).
    pub fn open(&self) -> u64 {
        self.iter()
            .filter(|(status, _)| !status.is_terminal())
            .map(|(_, n)| n)
            .sum()
    }

    /// `(status, count)` for every status, in [`ExecutionStatus::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ExecutionStatus, u64)> + '_ {
        ExecutionStatus::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

impl Serialize for StatusCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(ExecutionStatus::ALL.len()))?;
        for (status, count) in self.iter() {
            map.serialize_entry(status.as_str(), &count)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StatusCounts {
    /// Unknown keys are an error; a missing key counts 0.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountsVisitor;

        impl<'de> Visitor<'de> for CountsVisitor {
            type Value = StatusCounts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of execution status -> count")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StatusCounts, A::Error> {
                let mut counts = StatusCounts::default();
                while let Some((key, count)) =
                    map.next_entry::<std::borrow::Cow<'de, str>, u64>()?
                {
                    let status: ExecutionStatus = key.parse().map_err(de::Error::custom)?;
                    counts.set(status, count);
                }
                Ok(counts)
            }
        }

        deserializer.deserialize_map(CountsVisitor)
    }
}

uuid_id!(
    /// A tag operators put on appliances.
    TagId,
    "tag id"
);

text_enum!(
    /// Whether an installed service runs.
    ServiceStatus, "service status" {
        /// Started and kept running.
        Enabled => "enabled",
        /// Stopped.
        Disabled => "disabled",
    }
);

text_serde!(TagId, ServiceStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_spelling() {
        let text = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let job: JobId = text.parse().expect("canonical id");
        assert_eq!(job.to_string(), text);
        assert_eq!(
            serde_json::to_string(&job).expect("serialize"),
            format!("\"{text}\"")
        );
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "",
        ] {
            assert!(bad.parse::<CustomerId>().is_err(), "{bad}");
            assert!(serde_json::from_str::<JobId>(&format!("\"{bad}\"")).is_err());
        }
        let random = CustomerId::new_random();
        assert_eq!(random.to_string().parse::<CustomerId>(), Ok(random));
    }

    #[test]
    fn statuses_round_trip_through_their_one_text_form() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(*status));
            let json = serde_json::to_string(status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for status in ApplianceStatus::ALL {
            assert_eq!(status.as_str().parse::<ApplianceStatus>(), Ok(*status));
        }
        for phase in RolloutPhase::ALL {
            assert_eq!(phase.as_str().parse::<RolloutPhase>(), Ok(*phase));
        }
        assert!("DONE".parse::<JobStatus>().is_err());
        assert!("online".parse::<ApplianceStatus>().is_err());
    }

    #[test]
    fn counts_serialize_with_all_nine_keys() {
        let mut counts = StatusCounts::default();
        counts.set(ExecutionStatus::Sent, 2);
        counts.set(ExecutionStatus::Succeeded, 5);
        let json = serde_json::to_value(counts).expect("serialize");
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), 9);
        assert_eq!(json["SENT"], 2);
        assert_eq!(json["QUEUED"], 0);
        assert_eq!(counts.total(), 7);
        assert_eq!(counts.open(), 2);
        let back: StatusCounts = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, counts);
        assert!(serde_json::from_str::<StatusCounts>(r#"{"DONE": 1}"#).is_err());
        assert!(serde_json::from_str::<StatusCounts>(r#"{"SENT": -1}"#).is_err());
    }
}
