//! The execution state machine of Fleethub (topics.md, "Execution states").
//!
//! Pure: every function takes a state and the current time and returns a
//! new state (or a typed refusal). The engine reads no clock, opens no
//! socket and runs no SQL; the store calls it inside its writer, between
//! reading a row and writing it back, so that concurrent updates of one
//! execution are decided one after the other.
//!
//! Layout:
//! - [`execution`]: [`ExecutionState`] and [`apply_update`], what a device
//!   may report (versionNumber, expectedVersion, clientToken idempotency,
//!   terminal states).
//! - [`hub`]: the transitions the hub decides ([`release`], [`cancel`],
//!   [`time_out`], [`remove`]) and [`next_attempt`] for retries.
//! - [`effects`]: what a task that SUCCEEDED changes in the hub's picture
//!   of its appliance (installed services, settings, storage).
//! - [`upgrade`]: how the final report of an upgradeAppliance task is
//!   judged (on targetVersion, or rolled back).
//!
//! ```text
//! QUEUED --release--> SENT --device--> IN_PROGRESS --device--> SUCCEEDED | FAILED | REJECTED
//!                      |                   |  ^ progress
//!                      +--device-----------+--+--> SUCCEEDED | FAILED | REJECTED
//! QUEUED | SENT (| IN_PROGRESS with force) --cancel--> CANCELED
//! SENT | IN_PROGRESS --time_out--> TIMED_OUT
//! any non-terminal --remove--> REMOVED
//! FAILED | TIMED_OUT --next_attempt--> a new QUEUED attempt with a new taskId
//! ```

pub mod effects;
pub mod execution;
pub mod hub;
pub mod upgrade;

#[cfg(test)]
mod tests;

pub use execution::{
    apply_update, ExecutionState, Rejection, RejectionKind, UpdateOutcome, MAX_RECENT_TOKENS,
};
pub use hub::{
    apply_hub, cancel, next_attempt, release, remove, time_out, HubAction, HubOutcome, NextAttempt,
    RetryError, TransitionError,
};
