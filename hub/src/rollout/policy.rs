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

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{AbortCriterion, Millis, Retry, Targets, Timeouts, Window};

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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
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
}
