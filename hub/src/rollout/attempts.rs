//! What happens to a released attempt that takes too long or fails: the
//! in-progress and step timeouts that end it TIMED_OUT, and the retries
//! that give a FAILED or TIMED_OUT one a new attempt after a back-off.

use protocol::ExecutionStatus;
use serde::{Deserialize, Serialize};

use super::Millis;

/// The `timeouts` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// A released execution must end within this time of its release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_seconds: Option<u32>,
    /// ...and within this time of its last change (release or update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<u32>,
}

impl Timeouts {
    /// Whether any timeout is set.
    pub fn is_set(&self) -> bool {
        self.in_progress_seconds.is_some() || self.step_seconds.is_some()
    }

    /// The shortest timeout, in ms.
    pub fn shortest_ms(&self) -> Option<Millis> {
        [self.in_progress_seconds, self.step_seconds]
            .into_iter()
            .flatten()
            .min()
            .map(|s| i64::from(s) * 1000)
    }

    /// When an execution released at `sent_at` and last changed at
    /// `updated_at` times out; None without timeouts.
    pub fn deadline(&self, sent_at: Millis, updated_at: Millis) -> Option<Millis> {
        let in_progress = self
            .in_progress_seconds
            .map(|s| sent_at + i64::from(s) * 1000);
        let step = self.step_seconds.map(|s| updated_at + i64::from(s) * 1000);
        in_progress.into_iter().chain(step).min()
    }
}

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryOn {
    /// FAILED only.
    Failed,
    /// TIMED_OUT only.
    TimedOut,
    /// Both.
    #[default]
    All,
}

/// The `retry` object: a FAILED or TIMED_OUT attempt gets a new attempt
/// (new taskId, executionNumber + 1) after a back-off doubling from
/// `backoff_seconds` up to `max_backoff_seconds`, until `max_attempts`.
/// REJECTED, CANCELED and rolled-back upgrades are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Which failures are retried.
    #[serde(default)]
    pub failure_type: RetryOn,
    /// Back-off before the first retry.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u32,
    /// Longest back-off.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u32,
}

fn default_backoff() -> u32 {
    60
}

fn default_max_backoff() -> u32 {
    3600
}

impl Retry {
    /// Whether an attempt that ended in `status` is retried.
    pub fn applies_to(&self, status: ExecutionStatus) -> bool {
        matches!(
            (self.failure_type, status),
            (RetryOn::Failed | RetryOn::All, ExecutionStatus::Failed)
                | (RetryOn::TimedOut | RetryOn::All, ExecutionStatus::TimedOut)
        )
    }

    /// When the attempt after `attempt` (which ended at `finished_at`) is
    /// due; None when `attempt` was the last one allowed.
    pub fn next_at(&self, attempt: u32, finished_at: Millis) -> Option<Millis> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let backoff = u64::from(self.backoff_seconds)
            .saturating_mul(1 << doublings)
            .min(u64::from(self.max_backoff_seconds));
        let backoff_ms = i64::try_from(backoff * 1000).unwrap_or(i64::MAX);
        Some(finished_at.saturating_add(backoff_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let retry = Retry {
            max_attempts: 5,
            failure_type: RetryOn::Failed,
            backoff_seconds: 60,
            max_backoff_seconds: 150,
        };
        assert_eq!(retry.next_at(1, 0), Some(60_000));
        assert_eq!(retry.next_at(2, 0), Some(120_000));
        assert_eq!(retry.next_at(3, 0), Some(150_000));
        assert_eq!(retry.next_at(5, 0), None);
        assert!(retry.applies_to(ExecutionStatus::Failed));
        assert!(!retry.applies_to(ExecutionStatus::TimedOut));
        assert!(!retry.applies_to(ExecutionStatus::Rejected));
    }

    #[test]
    fn timeouts_count_from_release_and_from_the_last_change() {
        let t = Timeouts {
            in_progress_seconds: Some(100),
            step_seconds: Some(30),
        };
        assert_eq!(t.deadline(0, 0), Some(30_000));
        assert_eq!(t.deadline(0, 80_000), Some(100_000));
        assert_eq!(t.shortest_ms(), Some(30_000));
        assert_eq!(Timeouts::default().deadline(0, 0), None);
    }
}
