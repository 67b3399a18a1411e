//! A job's policy: how fast and in which groups it is released, when it is
//! aborted, when an execution times out, and how failed ones are retried.
//! This is also its JSON form, in requests and in the database.
//!
//! ```json
//! {
//!   "rollout": {"maxPerMinute": 120, "groups": [50, 50], "successThresholdPercent": 90,
//!               "startAt": 1795000000000,
//!               "window": {"start": "02:00", "end": "04:00", "utcOffset": "+01:00"}},
//!   "abort": [{"failureType": "FAILED", "thresholdPercent": 20, "minExecuted": 10}],
//!   "timeouts": {"inProgressSeconds": 3600, "stepSeconds": 600},
//!   "retry": {"maxAttempts": 3, "failureType": "ALL", "backoffSeconds": 60},
//!   "continuous": false
//! }
//! ```
//! Every part is optional; an empty policy releases everything at once and
//! never times out, retries or aborts.

use protocol::ExecutionStatus;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Millis, Targets, Window};
use crate::model::StatusCounts;

/// Most releases per minute a rollout may ask for.
pub const MAX_PER_MINUTE: u32 = 100_000;
/// Most staged groups.
pub const MAX_GROUPS: usize = 20;
/// Most abort criteria.
pub const MAX_ABORT_CRITERIA: usize = 10;
/// Longest timeout: 30 days.
pub const MAX_TIMEOUT_SECONDS: u32 = 30 * 24 * 3600;
/// Most attempts of one execution.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest back-off before a retry: 7 days.
pub const MAX_BACKOFF_SECONDS: u32 = 7 * 24 * 3600;
/// The latest start time accepted (year 3000).
pub const MAX_START_AT: Millis = 32_503_680_000_000;

/// Why a policy was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// The JSON path of the field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        reason: reason.into(),
    }
}

/// Everything that governs a job's executions besides its document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobPolicy {
    /// Pace, groups, start time and window of the releases.
    #[serde(default)]
    pub rollout: Rollout,
    /// Any one of these met aborts the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort: Vec<AbortCriterion>,
    /// When a released execution ends TIMED_OUT.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retries of FAILED and TIMED_OUT executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Appliances that join the targets later receive the task too; the
    /// job runs until it is canceled.
    #[serde(default)]
    pub continuous: bool,
}

/// The `rollout` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// At most this many releases in any minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    /// Staged groups in percent of the targets (`[50, 50]`), summing to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u8>,
    /// Percent of the released executions that must have SUCCEEDED before
    /// the next group starts (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold_percent: Option<u8>,
    /// Nothing is released before this time (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Millis>,
    /// Releases happen only inside this daily window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

impl Rollout {
    /// The success threshold of a group gate, in percent.
    pub fn success_threshold(&self) -> u8 {
        self.success_threshold_percent.unwrap_or(100)
    }
}

/// Which terminal states count as failures for an abort criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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

/// The `timeouts` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl JobPolicy {
    /// Whether the scheduler must look at the job on every pass, not only
    /// while it has queued executions.
    pub fn needs_watch(&self) -> bool {
        !self.abort.is_empty()
            || self.timeouts.is_set()
            || self.retry.is_some()
            || !self.rollout.groups.is_empty()
            || self.continuous
    }

    /// Whether the scheduler, not the last terminal update, completes the
    /// job: one with retries may get new attempts after every execution
    /// ended, and a continuous one never completes on its own.
    pub fn completed_by_scheduler(&self) -> bool {
        self.retry.is_some() || self.continuous
    }

    /// Checks every field, and the policy against its targets.
    pub fn validate(&self, targets: &Targets) -> Result<(), PolicyError> {
        self.validate_rollout()?;
        if self.abort.len() > MAX_ABORT_CRITERIA {
            return Err(refuse(
                "abort",
                format!("at most {MAX_ABORT_CRITERIA} criteria"),
            ));
        }
        for criterion in &self.abort {
            let t = criterion.threshold_percent;
            if !(t.is_finite() && t > 0.0 && t <= 100.0) {
                return Err(refuse("abort.thresholdPercent", "expected 0 < x <= 100"));
            }
            if criterion.min_executed == 0 {
                return Err(refuse("abort.minExecuted", "expected at least 1"));
            }
        }
        for (field, value) in [
            (
                "timeouts.inProgressSeconds",
                self.timeouts.in_progress_seconds,
            ),
            ("timeouts.stepSeconds", self.timeouts.step_seconds),
        ] {
            if value.is_some_and(|s| !(1..=MAX_TIMEOUT_SECONDS).contains(&s)) {
                return Err(refuse(field, format!("expected 1-{MAX_TIMEOUT_SECONDS}")));
            }
        }
        if let Some(retry) = &self.retry {
            if !(1..=MAX_ATTEMPTS).contains(&retry.max_attempts) {
                return Err(refuse(
                    "retry.maxAttempts",
                    format!("expected 1-{MAX_ATTEMPTS}"),
                ));
            }
            if retry.max_backoff_seconds > MAX_BACKOFF_SECONDS {
                return Err(refuse(
                    "retry.maxBackoffSeconds",
                    format!("at most {MAX_BACKOFF_SECONDS}"),
                ));
            }
            if retry.backoff_seconds > retry.max_backoff_seconds {
                return Err(refuse(
                    "retry.backoffSeconds",
                    "more than maxBackoffSeconds",
                ));
            }
        }
        if self.continuous {
            if !targets.can_grow() {
                return Err(refuse(
                    "continuous",
                    "only a customer (or tag) target can gain appliances later",
                ));
            }
            if !self.rollout.groups.is_empty() {
                return Err(refuse(
                    "rollout.groups",
                    "a continuous job has no fixed target count to split into groups",
                ));
            }
        }
        Ok(())
    }

    fn validate_rollout(&self) -> Result<(), PolicyError> {
        let rollout = &self.rollout;
        if rollout
            .max_per_minute
            .is_some_and(|n| !(1..=MAX_PER_MINUTE).contains(&n))
        {
            return Err(refuse(
                "rollout.maxPerMinute",
                format!("expected 1-{MAX_PER_MINUTE}"),
            ));
        }
        if !rollout.groups.is_empty() {
            if rollout.groups.len() > MAX_GROUPS {
                return Err(refuse(
                    "rollout.groups",
                    format!("at most {MAX_GROUPS} groups"),
                ));
            }
            if rollout.groups.iter().any(|p| *p == 0 || *p > 100) {
                return Err(refuse("rollout.groups", "each group is 1-100 percent"));
            }
            let sum: u32 = rollout.groups.iter().map(|p| u32::from(*p)).sum();
            if sum != 100 {
                return Err(refuse(
                    "rollout.groups",
                    format!("the groups sum to {sum}, not 100"),
                ));
            }
        }
        match rollout.success_threshold_percent {
            Some(_) if rollout.groups.is_empty() => {
                return Err(refuse(
                    "rollout.successThresholdPercent",
                    "only with groups",
                ))
            }
            Some(p) if p > 100 => {
                return Err(refuse("rollout.successThresholdPercent", "expected 0-100"))
            }
            _ => {}
        }
        if rollout
            .start_at
            .is_some_and(|t| !(0..=MAX_START_AT).contains(&t))
        {
            return Err(refuse(
                "rollout.startAt",
                "expected epoch milliseconds before year 3000",
            ));
        }
        if rollout.window.is_some_and(|w| !w.is_valid()) {
            return Err(refuse("rollout.window", "start and end must differ"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::CustomerId;

    fn policy(value: serde_json::Value) -> Result<JobPolicy, String> {
        let policy: JobPolicy = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let targets = Targets::CustomerId(CustomerId::new_random());
        policy.validate(&targets).map_err(|e| e.to_string())?;
        Ok(policy)
    }

    #[test]
    fn an_empty_policy_is_valid_and_releases_everything() {
        let empty = policy(json!({})).expect("valid");
        assert_eq!(empty, JobPolicy::default());
        assert!(!empty.needs_watch());
        assert!(!empty.completed_by_scheduler());
    }

    #[test]
    fn a_full_policy_round_trips_through_json() {
        let value = json!({
            "rollout": {"maxPerMinute": 120, "groups": [50, 50], "successThresholdPercent": 90,
                        "startAt": 1_795_000_000_000_i64,
                        "window": {"start": "02:00", "end": "04:00", "utcOffset": "+01:00"}},
            "abort": [{"failureType": "FAILED", "thresholdPercent": 20.0, "minExecuted": 10}],
            "timeouts": {"inProgressSeconds": 3600, "stepSeconds": 600},
            "retry": {"maxAttempts": 3, "failureType": "ALL", "backoffSeconds": 60,
                      "maxBackoffSeconds": 3600},
            "continuous": false
        });
        let parsed = policy(value.clone()).expect("valid");
        assert_eq!(serde_json::to_value(&parsed).expect("json"), value);
        assert!(parsed.needs_watch() && parsed.completed_by_scheduler());
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (value, field) in [
            (
                json!({"rollout": {"maxPerMinute": 0}}),
                "rollout.maxPerMinute",
            ),
            (json!({"rollout": {"groups": [50, 40]}}), "rollout.groups"),
            (json!({"rollout": {"groups": [0, 100]}}), "rollout.groups"),
            (
                json!({"rollout": {"successThresholdPercent": 50}}),
                "rollout.successThresholdPercent",
            ),
            (
                json!({"rollout": {"groups": [100], "successThresholdPercent": 101}}),
                "rollout.successThresholdPercent",
            ),
            (json!({"rollout": {"startAt": -1}}), "rollout.startAt"),
            (
                json!({"rollout": {"window": {"start": "02:00", "end": "02:00"}}}),
                "rollout.window",
            ),
            (
                json!({"abort": [{"failureType": "FAILED", "thresholdPercent": 0}]}),
                "abort.thresholdPercent",
            ),
            (
                json!({"abort": [{"failureType": "ALL", "thresholdPercent": 5, "minExecuted": 0}]}),
                "abort.minExecuted",
            ),
            (
                json!({"timeouts": {"stepSeconds": 0}}),
                "timeouts.stepSeconds",
            ),
            (json!({"retry": {"maxAttempts": 11}}), "retry.maxAttempts"),
            (
                json!({"retry": {"maxAttempts": 2, "backoffSeconds": 10, "maxBackoffSeconds": 5}}),
                "retry.backoffSeconds",
            ),
            (
                json!({"continuous": true, "rollout": {"groups": [50, 50]}}),
                "rollout.groups",
            ),
        ] {
            let err = policy(value.clone()).expect_err("refused");
            assert!(err.starts_with(field), "{value}: {err}");
        }
        for malformed in [
            json!({"rollout": {"maxPerMinute": -5}}),
            json!({"rollout": {"speed": 1}}),
            json!({"abort": [{"failureType": "CANCELED", "thresholdPercent": 5}]}),
            json!({"retry": {"failureType": "REJECTED", "maxAttempts": 2}}),
            json!({"rollout": {"window": {"start": "2am", "end": "04:00"}}}),
        ] {
            assert!(
                serde_json::from_value::<JobPolicy>(malformed.clone()).is_err(),
                "{malformed}"
            );
        }
        let continuous: JobPolicy =
            serde_json::from_value(json!({"continuous": true})).expect("json");
        let ids = Targets::ApplianceIds(Vec::new());
        assert_eq!(
            continuous.validate(&ids).map_err(|e| e.field),
            Err("continuous")
        );
    }

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
