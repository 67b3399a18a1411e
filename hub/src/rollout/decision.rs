//! What a rollout does now: the one decision the scheduler asks for on
//! every pass over a job, inside the transaction that then carries it out.
//!
//! Order: the start time; the abort criteria; the staged groups (the next
//! group opens once the released ones reached the success threshold);
//! the maintenance window; the rate. Queued retries of released executions
//! go first and pass the group gate (their group was released already);
//! they still wait for the start, the window and the rate.

use super::policy::JobPolicy;
use super::rate::{self, Batch};
use super::Millis;
use crate::model::{RolloutPhase, StatusCounts};
use protocol::ExecutionStatus;

/// A rollout's progress, kept in the database with the job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutState {
    /// The group being released (0-based).
    pub group: u32,
    /// First attempts released so far (retries not counted).
    pub released: u64,
    /// First attempts created: the targets (a continuous job's grow).
    pub first_total: u64,
    /// Release batches of the last minute, for the rate.
    pub recent: Vec<Batch>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The phase to show.
    pub phase: RolloutPhase,
    /// The group being released after this decision.
    pub group: u32,
    /// Queued retries to release now.
    pub release_retries: u64,
    /// Never-released executions to release now.
    pub release_first: u64,
    /// Abort the job, for this reason.
    pub abort: Option<String>,
    /// When the decision may change without any execution changing
    /// (start time, window, rate); None when only updates can change it.
    pub wake_at: Option<Millis>,
}

impl Decision {
    fn hold(phase: RolloutPhase, group: u32, wake_at: Option<Millis>) -> Self {
        Self {
            phase,
            group,
            release_retries: 0,
            release_first: 0,
            abort: None,
            wake_at,
        }
    }
}

/// The first-attempt count that ends group `g` (cumulative), over
/// `total` targets. Rounded up, so that no group is empty; the last group
/// ends at `total`.
pub fn group_end(groups: &[u8], g: usize, total: u64) -> u64 {
    if g + 1 >= groups.len() {
        return total;
    }
    let percent: u64 = groups[..=g].iter().map(|p| u64::from(*p)).sum();
    (total * percent).div_ceil(100).min(total)
}

/// SUCCEEDED executions a group ending at `end` needs before the next one
/// starts.
pub fn gate_needs(end: u64, threshold_percent: u8) -> u64 {
    (end * u64::from(threshold_percent)).div_ceil(100)
}

/// The first abort criterion met by `counts`, as a reason for people.
pub fn abort_reason(policy: &JobPolicy, counts: &StatusCounts) -> Option<String> {
    policy.abort.iter().find(|c| c.is_met(counts)).map(|c| {
        let executed = super::abort::executed(counts);
        format!(
            "abort criterion met: {} failures reached {}% of {} executed (minimum {})",
            c.failure_type.as_str(),
            c.threshold_percent,
            executed,
            c.min_executed
        )
    })
}

/// Decides what the rollout does at `now`. `queued_retries` is how many of
/// the job's QUEUED executions are retries (the rest are first attempts).
pub fn decide(
    policy: &JobPolicy,
    state: &RolloutState,
    counts: &StatusCounts,
    queued_retries: u64,
    now: Millis,
) -> Decision {
    let rollout = &policy.rollout;
    if let Some(start) = rollout.start_at.filter(|start| now < *start) {
        return Decision::hold(RolloutPhase::WaitingStart, state.group, Some(start));
    }
    if let Some(reason) = abort_reason(policy, counts) {
        let mut decision = Decision::hold(RolloutPhase::Aborted, state.group, None);
        decision.abort = Some(reason);
        return decision;
    }
    let queued = counts.get(ExecutionStatus::Queued);
    let queued_retries = queued_retries.min(queued);
    let queued_first = queued - queued_retries;

    // Open the next groups whose predecessors reached the threshold.
    let groups = &rollout.groups;
    let mut group = state.group;
    let mut gated = false;
    if !groups.is_empty() {
        let last = u32::try_from(groups.len() - 1).unwrap_or(u32::MAX);
        group = group.min(last);
        let succeeded = counts.get(ExecutionStatus::Succeeded);
        while group < last {
            let end = group_end(groups, group as usize, state.first_total);
            if state.released < end && queued_first > 0 {
                break;
            }
            if succeeded < gate_needs(end, rollout.success_threshold()) {
                gated = true;
                break;
            }
            group += 1;
        }
    }
    let end = if groups.is_empty() {
        state.first_total
    } else {
        group_end(groups, group as usize, state.first_total)
    };
    let first_allowed = end.saturating_sub(state.released).min(queued_first);
    let demand = queued_retries + first_allowed;
    let waiting_phase = if gated && first_allowed == 0 && queued_first > 0 {
        RolloutPhase::StageGated
    } else {
        RolloutPhase::Releasing
    };
    if demand == 0 {
        return Decision::hold(waiting_phase, group, None);
    }
    if let Some(window) = rollout.window.filter(|w| !w.is_open(now)) {
        return Decision::hold(
            RolloutPhase::WaitingWindow,
            group,
            Some(window.next_open(now)),
        );
    }
    let (budget, next_at) = match rollout.max_per_minute {
        None => (u64::MAX, now),
        Some(limit) => {
            let allowance = rate::allowance(limit, &state.recent, now);
            (allowance.now, allowance.next_at)
        }
    };
    let release_retries = queued_retries.min(budget);
    let release_first = first_allowed.min(budget - release_retries);
    let left = demand - release_retries - release_first;
    Decision {
        phase: waiting_phase,
        group,
        release_retries,
        release_first,
        abort: None,
        wake_at: (left > 0).then_some(next_at),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rollout::MINUTE_MS;

    const T0: Millis = 1_704_067_200_000;

    fn policy(value: serde_json::Value) -> JobPolicy {
        serde_json::from_value(value).expect("policy")
    }

    fn counts(pairs: &[(ExecutionStatus, u64)]) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for (status, n) in pairs {
            counts.set(*status, *n);
        }
        counts
    }

    fn state(released: u64, total: u64) -> RolloutState {
        RolloutState {
            released,
            first_total: total,
            ..RolloutState::default()
        }
    }

    use ExecutionStatus as S;

    #[test]
    fn without_a_policy_everything_goes_at_once() {
        let d = decide(
            &JobPolicy::default(),
            &state(0, 5),
            &counts(&[(S::Queued, 5)]),
            0,
            T0,
        );
        assert_eq!(
            (d.release_first, d.release_retries, d.wake_at),
            (5, 0, None)
        );
        assert_eq!(d.phase, RolloutPhase::Releasing);
    }

    #[test]
    fn groups_open_one_after_the_other_at_the_threshold() {
        let p = policy(json!({"rollout": {"groups": [50, 50], "successThresholdPercent": 60}}));
        assert_eq!(group_end(&p.rollout.groups, 0, 5), 3);
        let d = decide(&p, &state(0, 5), &counts(&[(S::Queued, 5)]), 0, T0);
        assert_eq!((d.group, d.release_first), (0, 3));
        // All three released, one succeeded: 60% of 3 needs 2.
        let s = state(3, 5);
        let running = counts(&[(S::Queued, 2), (S::Sent, 2), (S::Succeeded, 1)]);
        let d = decide(&p, &s, &running, 0, T0);
        assert_eq!(
            (d.phase, d.release_first, d.group),
            (RolloutPhase::StageGated, 0, 0)
        );
        let passed = counts(&[(S::Queued, 2), (S::Sent, 1), (S::Succeeded, 2)]);
        let d = decide(&p, &s, &passed, 0, T0);
        assert_eq!(
            (d.phase, d.release_first, d.group),
            (RolloutPhase::Releasing, 2, 1)
        );
    }

    #[test]
    fn a_gated_job_still_releases_its_retries() {
        let p = policy(json!({"rollout": {"groups": [50, 50]}, "retry": {"maxAttempts": 2}}));
        let s = state(2, 4);
        let c = counts(&[(S::Queued, 3), (S::Succeeded, 1)]);
        let d = decide(&p, &s, &c, 1, T0);
        assert_eq!(
            (d.phase, d.release_retries, d.release_first),
            (RolloutPhase::StageGated, 1, 0)
        );
    }

    #[test]
    fn the_rate_spreads_releases_and_names_the_next_slot() {
        let p = policy(json!({"rollout": {"maxPerMinute": 120}}));
        let mut s = state(0, 10);
        let c = counts(&[(S::Queued, 10)]);
        let d = decide(&p, &s, &c, 0, T0);
        assert_eq!((d.release_first, d.wake_at), (2, Some(T0 + 1000)));
        s.recent.push((T0, 2));
        s.released = 2;
        let c = counts(&[(S::Queued, 8), (S::Sent, 2)]);
        let d = decide(&p, &s, &c, 0, T0 + 500);
        assert_eq!((d.release_first, d.wake_at), (0, Some(T0 + 1000)));
    }

    #[test]
    fn start_time_and_window_hold_releases() {
        let p = policy(json!({"rollout": {"startAt": T0 + MINUTE_MS,
            "window": {"start": "02:00", "end": "03:00"}}}));
        let c = counts(&[(S::Queued, 3)]);
        let d = decide(&p, &state(0, 3), &c, 0, T0);
        assert_eq!(
            (d.phase, d.wake_at),
            (RolloutPhase::WaitingStart, Some(T0 + MINUTE_MS))
        );
        // T0 is midnight UTC: the window opens at 02:00.
        let d = decide(&p, &state(0, 3), &c, 0, T0 + MINUTE_MS);
        assert_eq!(
            (d.phase, d.wake_at),
            (RolloutPhase::WaitingWindow, Some(T0 + 120 * MINUTE_MS))
        );
        let d = decide(&p, &state(0, 3), &c, 0, T0 + 120 * MINUTE_MS);
        assert_eq!(d.release_first, 3);
    }

    #[test]
    fn an_abort_criterion_met_stops_everything() {
        let p = policy(
            json!({"abort": [{"failureType": "REJECTED", "thresholdPercent": 50,
            "minExecuted": 2}]}),
        );
        let c = counts(&[(S::Queued, 8), (S::Rejected, 1), (S::Succeeded, 1)]);
        let d = decide(&p, &state(2, 10), &c, 0, T0);
        assert_eq!((d.phase, d.release_first), (RolloutPhase::Aborted, 0));
        assert!(d.abort.expect("a reason").contains("REJECTED failures"));
        let c = counts(&[(S::Queued, 8), (S::Rejected, 1), (S::Succeeded, 2)]);
        assert!(decide(&p, &state(2, 10), &c, 0, T0).abort.is_none());
    }
}
