//! Execution states, and the subset of them a device may report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ProtocolError;

/// The state of one execution (one task on one appliance).
///
/// ```text
/// QUEUED -> SENT -> IN_PROGRESS -> SUCCEEDED | FAILED | REJECTED   (device)
///            SENT | IN_PROGRESS -> TIMED_OUT                       (hub: timeout)
/// QUEUED | SENT                 -> CANCELED                        (hub: cancel)
/// QUEUED | SENT | IN_PROGRESS   -> CANCELED                        (hub: force-cancel)
/// QUEUED | SENT | IN_PROGRESS   -> REMOVED                         (hub: appliance removed)
/// ```
/// A device may also go from SENT straight to a result. `topics.md`
/// section 7 has the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecutionStatus {
    /// Created, not yet released to the appliance.
    Queued,
    /// Released: notify published, waiting for the appliance.
    Sent,
    /// The appliance reported progress.
    InProgress,
    /// Terminal: the appliance finished the task.
    Succeeded,
    /// Terminal: the appliance tried and failed.
    Failed,
    /// Terminal: the appliance refused the task.
    Rejected,
    /// Terminal: no terminal report within the job's timeout.
    TimedOut,
    /// Terminal: canceled by an operator or an abort rule.
    Canceled,
    /// Terminal: the appliance was removed from the fleet.
    Removed,
}

impl ExecutionStatus {
    /// Every status, in the order of the diagram (and of job counters).
    pub const ALL: [ExecutionStatus; 9] = [
        Self::Queued,
        Self::Sent,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
        Self::TimedOut,
        Self::Canceled,
        Self::Removed,
    ];

    /// The wire and database spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::Canceled => "CANCELED",
            Self::Removed => "REMOVED",
        }
    }

    /// Position in [`Self::ALL`], for fixed-size per-status counters.
    pub const fn index(self) -> usize {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::InProgress => 2,
            Self::Succeeded => 3,
            Self::Failed => 4,
            Self::Rejected => 5,
            Self::TimedOut => 6,
            Self::Canceled => 7,
            Self::Removed => 8,
        }
    }

    /// True for states no update can leave.
    pub const fn is_terminal(self) -> bool {
        match self {
            Self::Queued | Self::Sent | Self::InProgress => false,
            Self::Succeeded
            | Self::Failed
            | Self::Rejected
            | Self::TimedOut
            | Self::Canceled
            | Self::Removed => true,
        }
    }
}

impl FromStr for ExecutionStatus {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ProtocolError::UnknownStatus(truncate(s)))
    }
}

/// A status an appliance may put in `job/update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportedStatus {
    /// Working on it; `progress` says how far.
    InProgress,
    /// Done.
    Succeeded,
    /// Tried and failed; `errorMessage` says why.
    Failed,
    /// Will not run it (unsupported, or not applicable).
    Rejected,
}

impl ReportedStatus {
    /// Every reportable status.
    pub const ALL: [ReportedStatus; 4] = [
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
    ];

    /// The execution status this report moves to.
    pub const fn execution_status(self) -> ExecutionStatus {
        match self {
            Self::InProgress => ExecutionStatus::InProgress,
            Self::Succeeded => ExecutionStatus::Succeeded,
            Self::Failed => ExecutionStatus::Failed,
            Self::Rejected => ExecutionStatus::Rejected,
        }
    }

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        self.execution_status().as_str()
    }
}

impl FromStr for ReportedStatus {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ProtocolError::UnknownStatus(truncate(s)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

macro_rules! status_serde {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
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

status_serde!(ExecutionStatus, ReportedStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_index_matches_all() {
        for (i, status) in ExecutionStatus::ALL.into_iter().enumerate() {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
            assert_eq!(status.index(), i);
        }
        assert_eq!(
            "DONE".parse::<ExecutionStatus>(),
            Err(ProtocolError::UnknownStatus("DONE".into()))
        );
    }

    #[test]
    fn devices_cannot_report_hub_decided_states() {
        for s in [
            "QUEUED",
            "SENT",
            "TIMED_OUT",
            "CANCELED",
            "REMOVED",
            "in_progress",
        ] {
            assert!(s.parse::<ReportedStatus>().is_err(), "{s}");
        }
        for status in ReportedStatus::ALL {
            assert_eq!(status.as_str().parse::<ReportedStatus>(), Ok(status));
        }
    }
}
