//! Transitions the hub decides: release, cancel, time out, remove, and the
//! next attempt of a failed execution.
//!
//! Each bumps `versionNumber` (a device holding an older version learns of
//! the change through `expectedVersion`) and says whether the device must be
//! told with a `job/notify` ([`HubOutcome::notify`]): on release, and on
//! cancel of a task the device already had.

use std::fmt;

use protocol::{ExecutionStatus, TaskId};

use super::ExecutionState;

/// A transition decided by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubAction {
    /// QUEUED -> SENT (the rollout lets it go).
    Release,
    /// QUEUED | SENT -> CANCELED.
    Cancel,
    /// QUEUED | SENT | IN_PROGRESS -> CANCELED.
    ForceCancel,
    /// SENT | IN_PROGRESS -> TIMED_OUT (no terminal report in time).
    TimeOut,
    /// any non-terminal -> REMOVED (the appliance left the fleet).
    Remove,
}

impl HubAction {
    /// Every action.
    pub const ALL: [HubAction; 5] = [
        Self::Release,
        Self::Cancel,
        Self::ForceCancel,
        Self::TimeOut,
        Self::Remove,
    ];

    /// The cancel action, forced or not.
    pub const fn cancel(force: bool) -> Self {
        if force {
            Self::ForceCancel
        } else {
            Self::Cancel
        }
    }

    /// The status the action moves to.
    pub const fn target(self) -> ExecutionStatus {
        match self {
            Self::Release => ExecutionStatus::Sent,
            Self::Cancel | Self::ForceCancel => ExecutionStatus::Canceled,
            Self::TimeOut => ExecutionStatus::TimedOut,
            Self::Remove => ExecutionStatus::Removed,
        }
    }

    /// Whether the action may start from `from`. Exhaustive on purpose.
    pub const fn allowed_from(self, from: ExecutionStatus) -> bool {
        use ExecutionStatus as S;
        match from {
            S::Queued => matches!(
                self,
                Self::Release | Self::Cancel | Self::ForceCancel | Self::Remove
            ),
            S::Sent => matches!(
                self,
                Self::Cancel | Self::ForceCancel | Self::TimeOut | Self::Remove
            ),
            S::InProgress => matches!(self, Self::ForceCancel | Self::TimeOut | Self::Remove),
            S::Succeeded | S::Failed | S::Rejected | S::TimedOut | S::Canceled | S::Removed => {
                false
            }
        }
    }

    const fn verb(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Cancel => "cancel",
            Self::ForceCancel => "force-cancel",
            Self::TimeOut => "time out",
            Self::Remove => "remove",
        }
    }
}

impl fmt::Display for HubAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// The result of a hub transition.
#[derive(Debug, Clone, PartialEq)]
pub struct HubOutcome {
    /// The new state.
    pub state: ExecutionState,
    /// True when the device must get a `job/notify` with the new state:
    /// a release, or a cancel of a task it had been sent.
    pub notify: bool,
}

/// A hub transition that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an execution that is {from}")]
pub struct TransitionError {
    /// What was attempted.
    pub action: HubAction,
    /// The state it was attempted from.
    pub from: ExecutionStatus,
}

/// Applies a hub transition at `now`.
pub fn apply_hub(
    state: &ExecutionState,
    action: HubAction,
    now: i64,
) -> Result<HubOutcome, TransitionError> {
    let from = state.status;
    if !action.allowed_from(from) {
        return Err(TransitionError { action, from });
    }
    let notify = match action {
        HubAction::Release => true,
        HubAction::Cancel | HubAction::ForceCancel => {
            matches!(from, ExecutionStatus::Sent | ExecutionStatus::InProgress)
        }
        HubAction::TimeOut | HubAction::Remove => false,
    };
    Ok(HubOutcome {
        state: state.moved_to(action.target(), now),
        notify,
    })
}

/// QUEUED -> SENT; the device is notified.
pub fn release(state: &ExecutionState, now: i64) -> Result<HubOutcome, TransitionError> {
    apply_hub(state, HubAction::Release, now)
}

/// QUEUED | SENT -> CANCELED, and IN_PROGRESS too when `force`. The device
/// is notified when it had the task (SENT or IN_PROGRESS).
pub fn cancel(
    state: &ExecutionState,
    force: bool,
    now: i64,
) -> Result<HubOutcome, TransitionError> {
    apply_hub(state, HubAction::cancel(force), now)
}

/// SENT | IN_PROGRESS -> TIMED_OUT.
pub fn time_out(state: &ExecutionState, now: i64) -> Result<HubOutcome, TransitionError> {
    apply_hub(state, HubAction::TimeOut, now)
}

/// Any non-terminal state -> REMOVED.
pub fn remove(state: &ExecutionState, now: i64) -> Result<HubOutcome, TransitionError> {
    apply_hub(state, HubAction::Remove, now)
}

/// A new attempt of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct NextAttempt {
    /// The attempt's own task id. A device never runs the same task id
    /// twice (it remembers the ones it executed), so a retry under the old
    /// id would be ignored: every attempt gets a fresh one.
    pub task_id: TaskId,
    /// QUEUED, `execution_number` one more than the previous attempt,
    /// version and reported fields fresh.
    pub state: ExecutionState,
}

/// Why an execution cannot be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    /// Only FAILED and TIMED_OUT attempts are retried: a SUCCEEDED one is
    /// done, a REJECTED one would be refused again, CANCELED and REMOVED
    /// were ended on purpose, and a non-terminal one is still running.
    #[error("an execution that is {0} is not retried")]
    NotRetryable(ExecutionStatus),
    /// The attempt number cannot grow any more.
    #[error("no attempt number after {0}")]
    Exhausted(u32),
}

/// Builds the attempt that follows `previous` (FAILED or TIMED_OUT), queued
/// at `now` under a new task id. The previous attempt stays as it is.
pub fn next_attempt(previous: &ExecutionState, now: i64) -> Result<NextAttempt, RetryError> {
    match previous.status {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut => {}
        other => return Err(RetryError::NotRetryable(other)),
    }
    let number = previous
        .execution_number
        .checked_add(1)
        .ok_or(RetryError::Exhausted(previous.execution_number))?;
    Ok(NextAttempt {
        task_id: TaskId::new_random(),
        state: ExecutionState::queued(number, now),
    })
}
