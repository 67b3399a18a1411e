//! Abort criteria: a job is aborted once enough of its executed
//! executions failed (AWS IoT Jobs' abort config, hawkBit's error
//! threshold). "Executed" counts the latest attempt of each appliance that
//! ended SUCCEEDED, FAILED, REJECTED or TIMED_OUT.

use protocol::ExecutionStatus;
use serde::{Deserialize, Serialize};

use crate::model::StatusCounts;

/// Which terminal states count as failures for an abort criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    /// FAILED.
    Failed,
    /// REJECTED.
    Rejected,
    /// TIMED_OUT.
    TimedOut,
    /// Any of the three.
    All,
}

impl FailureType {
    /// The JSON spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }

    /// Whether an execution ending in `status` counts.
    pub fn counts(self, status: ExecutionStatus) -> bool {
        match self {
            Self::Failed => status == ExecutionStatus::Failed,
            Self::Rejected => status == ExecutionStatus::Rejected,
            Self::TimedOut => status == ExecutionStatus::TimedOut,
            Self::All => matches!(
                status,
                ExecutionStatus::Failed | ExecutionStatus::Rejected | ExecutionStatus::TimedOut
            ),
        }
    }
}

/// Abort the job when, among at least `min_executed` executions that
/// ended (SUCCEEDED, FAILED, REJECTED or TIMED_OUT), `threshold_percent` or
/// more ended as `failure_type`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortCriterion {
    /// What counts as a failure.
    pub failure_type: FailureType,
    /// Share of failures, in percent (0 < x <= 100).
    pub threshold_percent: f64,
    /// Executions that must have ended before the criterion applies.
    #[serde(default = "one")]
    pub min_executed: u32,
}

fn one() -> u32 {
    1
}

/// Executions counted as executed by abort criteria.
pub fn executed(counts: &StatusCounts) -> u64 {
    counts
        .iter()
        .filter(|(status, _)| {
            FailureType::All.counts(*status) || *status == ExecutionStatus::Succeeded
        })
        .map(|(_, n)| n)
        .sum()
}

impl AbortCriterion {
    /// Whether the criterion is met by `counts`.
    pub fn is_met(&self, counts: &StatusCounts) -> bool {
        let executed = executed(counts);
        let failures: u64 = counts
            .iter()
            .filter(|(status, _)| self.failure_type.counts(*status))
            .map(|(_, n)| n)
            .sum();
        executed > 0
            && executed >= u64::from(self.min_executed)
            && failures as f64 * 100.0 >= self.threshold_percent * executed as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_criteria_need_their_minimum_and_threshold() {
        let criterion = AbortCriterion {
            failure_type: FailureType::All,
            threshold_percent: 50.0,
            min_executed: 4,
        };
        let mut counts = StatusCounts::default();
        counts.set(ExecutionStatus::Failed, 2);
        counts.set(ExecutionStatus::Queued, 10);
        assert!(!criterion.is_met(&counts), "only 2 executed");
        counts.set(ExecutionStatus::Succeeded, 1);
        counts.set(ExecutionStatus::TimedOut, 1);
        assert!(criterion.is_met(&counts), "3 of 4 failed");
        counts.set(ExecutionStatus::Succeeded, 3);
        assert!(criterion.is_met(&counts), "3 of 6 is 50%");
        counts.set(ExecutionStatus::Succeeded, 4);
        assert!(!criterion.is_met(&counts), "3 of 7 is below 50%");
    }
}
