//! One execution's state and the updates a device may apply to it.
//!
//! Order of the checks in [`apply_update`], each answered as topics.md says:
//! 1. `clientToken` seen before: the reply it got then, nothing changes
//!    (so a device that lost an `update_reply` can repeat its update, even
//!    one that ended the task).
//! 2. Terminal state: 409 "terminal state reached" with the current state.
//!    It comes before the version check because no version would make the
//!    update acceptable; a device told "version mismatch" would re-read the
//!    task only to be told this.
//! 3. `expectedVersion` different from `versionNumber`: 409 "version mismatch".
//! 4. The transition itself: 409 "invalid state transition" when not allowed.

use std::collections::BTreeMap;

use protocol::message::{UpdateParams, UpdateReplyData, MAX_PROGRESS};
use protocol::{ExecutionStatus, ReplyCode, ReportedStatus, TaskId};
use serde_json::{Map, Value};

/// How many accepted client tokens an execution remembers (with the reply
/// each got). A device repeats a request a few times at most, so the last
/// eight cover every retry of every update still in flight.
pub const MAX_RECENT_TOKENS: usize = 8;

/// Everything the engine needs to know about one execution attempt. The
/// identity (task id, job, appliance) is kept by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionState {
    /// Current status.
    pub status: ExecutionStatus,
    /// Bumped by every accepted update and every hub transition.
    pub version_number: u64,
    /// Attempt number, from 1.
    pub execution_number: u32,
    /// Last reported progress, 0-100; 100 once SUCCEEDED.
    pub progress: Option<u8>,
    /// Last reported status details.
    pub status_details: Option<BTreeMap<String, String>>,
    /// The task's result, as reported.
    pub result: Option<Map<String, Value>>,
    /// Why it failed or was rejected, as reported.
    pub error_message: Option<String>,
    /// The last [`MAX_RECENT_TOKENS`] accepted client tokens, oldest first,
    /// with the reply each got.
    pub recent_tokens: Vec<(String, UpdateReplyData)>,
    /// When the attempt was created.
    pub queued_at: i64,
    /// When it was released (QUEUED -> SENT).
    pub sent_at: Option<i64>,
    /// When the device first reported IN_PROGRESS.
    pub started_at: Option<i64>,
    /// When it reached a terminal state.
    pub finished_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

impl ExecutionState {
    /// The version of a freshly queued attempt.
    pub const INITIAL_VERSION: u64 = 1;

    /// A new attempt, QUEUED at `now`.
    pub fn queued(execution_number: u32, now: i64) -> Self {
        Self {
            status: ExecutionStatus::Queued,
            version_number: Self::INITIAL_VERSION,
            execution_number,
            progress: None,
            status_details: None,
            result: None,
            error_message: None,
            recent_tokens: Vec::new(),
            queued_at: now,
            sent_at: None,
            started_at: None,
            finished_at: None,
            updated_at: now,
        }
    }

    /// The state as an update reply (also the `data` of a 409).
    pub fn reply(&self, task_id: &TaskId) -> UpdateReplyData {
        UpdateReplyData {
            task_id: task_id.clone(),
            status: self.status,
            version_number: self.version_number,
        }
    }

    /// A copy moved to `status` at `now`: version bumped, timestamps set.
    pub(crate) fn moved_to(&self, status: ExecutionStatus, now: i64) -> Self {
        let mut next = self.clone();
        next.status = status;
        next.version_number = self.version_number.saturating_add(1);
        next.updated_at = now;
        match status {
            ExecutionStatus::Sent => next.sent_at = Some(now),
            ExecutionStatus::InProgress => {
                next.started_at.get_or_insert(now);
            }
            _ => {}
        }
        if status.is_terminal() {
            next.finished_at = Some(now);
        }
        next
    }
}

/// What an accepted (or repeated) update did.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// The update was applied: store `state`, answer `reply` (code 200).
    Applied {
        /// The new state.
        state: ExecutionState,
        /// The reply to send once `state` is committed.
        reply: UpdateReplyData,
    },
    /// The client token was accepted before: answer `reply` again, store
    /// nothing.
    Duplicate {
        /// The reply the first update got.
        reply: UpdateReplyData,
    },
}

/// Why an update was refused. All kinds answer 409 with the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The reported status cannot follow the current one (or the task is
    /// still QUEUED, i.e. not released).
    InvalidTransition,
    /// `expectedVersion` is not the current `versionNumber`.
    VersionMismatch,
    /// The execution already ended.
    TerminalState,
}

impl RejectionKind {
    /// Every kind.
    pub const ALL: [RejectionKind; 3] = [
        Self::InvalidTransition,
        Self::VersionMismatch,
        Self::TerminalState,
    ];

    /// The reply's `message`, naming which 409 this is.
    pub const fn message(self) -> &'static str {
        match self {
            Self::InvalidTransition => "invalid state transition",
            Self::VersionMismatch => "version mismatch",
            Self::TerminalState => "terminal state reached",
        }
    }

    /// The reply code.
    pub const fn code(self) -> ReplyCode {
        match self {
            Self::InvalidTransition | Self::VersionMismatch | Self::TerminalState => {
                ReplyCode::Conflict
            }
        }
    }
}

/// A refused update: the kind and the execution's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({} at version {})", kind.message(), current.status, current.version_number)]
pub struct Rejection {
    /// Which refusal.
    pub kind: RejectionKind,
    /// The state now, for the reply's `data`.
    pub current: UpdateReplyData,
}

impl Rejection {
    /// The reply code (409).
    pub const fn code(&self) -> ReplyCode {
        self.kind.code()
    }

    /// The reply's `message`.
    pub const fn message(&self) -> &'static str {
        self.kind.message()
    }
}

/// Whether a device may report `to` while the execution is `from`.
/// Exhaustive on purpose: a new status must be placed here.
pub(crate) const fn device_may_report(from: ExecutionStatus, to: ReportedStatus) -> bool {
    match from {
        // Not released yet: the device cannot know about it.
        ExecutionStatus::Queued => false,
        // From SENT and IN_PROGRESS the device may report anything: progress,
        // or straight to a result (a quick task needs no IN_PROGRESS).
        ExecutionStatus::Sent | ExecutionStatus::InProgress => match to {
            ReportedStatus::InProgress
            | ReportedStatus::Succeeded
            | ReportedStatus::Failed
            | ReportedStatus::Rejected => true,
        },
        ExecutionStatus::Succeeded
        | ExecutionStatus::Failed
        | ExecutionStatus::Rejected
        | ExecutionStatus::TimedOut
        | ExecutionStatus::Canceled
        | ExecutionStatus::Removed => false,
    }
}

/// Applies a device's `job/update` to `state` at `now`.
///
/// The update's `taskId` is assumed to be `task_id` (the caller looked the
/// execution up by it). See the module documentation for the order of the
/// checks. Accepted updates bump `versionNumber`; SUCCEEDED sets progress
/// to 100; fields the update leaves out keep their value.
pub fn apply_update(
    state: &ExecutionState,
    task_id: &TaskId,
    update: &UpdateParams,
    now: i64,
) -> Result<UpdateOutcome, Rejection> {
    if let Some(token) = &update.client_token {
        if let Some((_, reply)) = state.recent_tokens.iter().find(|(seen, _)| seen == token) {
            return Ok(UpdateOutcome::Duplicate {
                reply: reply.clone(),
            });
        }
    }
    let reject = |kind| Rejection {
        kind,
        current: state.reply(task_id),
    };
    if state.status.is_terminal() {
        return Err(reject(RejectionKind::TerminalState));
    }
    if update
        .expected_version
        .is_some_and(|expected| expected != state.version_number)
    {
        return Err(reject(RejectionKind::VersionMismatch));
    }
    if !device_may_report(state.status, update.status) {
        return Err(reject(RejectionKind::InvalidTransition));
    }

    let mut next = state.moved_to(update.status.execution_status(), now);
    if let Some(progress) = update.progress {
        next.progress = Some(progress.min(MAX_PROGRESS));
    }
    if update.status == ReportedStatus::Succeeded {
        next.progress = Some(MAX_PROGRESS);
    }
    if let Some(details) = &update.status_details {
        next.status_details = Some(details.clone());
    }
    if let Some(result) = &update.result {
        next.result = Some(result.clone());
    }
    if let Some(message) = &update.error_message {
        next.error_message = Some(message.clone());
    }
    let reply = next.reply(task_id);
    if let Some(token) = &update.client_token {
        if next.recent_tokens.len() >= MAX_RECENT_TOKENS {
            let excess = next.recent_tokens.len() + 1 - MAX_RECENT_TOKENS;
            next.recent_tokens.drain(..excess);
        }
        next.recent_tokens.push((token.clone(), reply.clone()));
    }
    Ok(UpdateOutcome::Applied { state: next, reply })
}
