//! Rollout policies and the pure decisions taken from them.
//!
//! A job carries a [`JobPolicy`] set when it is created (the `rollout`,
//! `abort`, `timeouts`, `retry` and `continuous` fields of
//! `POST /api/v1/jobs`) and [`Targets`] saying which appliances it runs on.
//! The scheduler keeps each job's progress in the database
//! ([`RolloutState`]) and, on every pass, asks [`decide`] what to do now.
//!
//! Like the engine, this module is pure: every function takes the time it
//! needs as an argument; nothing here reads a clock, opens a socket or runs
//! SQL.
//!
//! Layout:
//! - [`policy`]: the policy, its JSON form and its validation;
//!   [`abort`] and [`attempts`]: abort criteria, timeouts and retries.
//! - [`targets`]: which appliances a job runs on.
//! - [`window`]: the daily maintenance window.
//! - [`rate`]: the releases-per-minute limiter.
//! - [`auto_upgrade`]: whether an appliance's update schedule comes
//!   within the next hour (the auto-upgrade duty's selection).
//! - [`decision`]: given policy, progress, counters and now: how many to
//!   release, whether to abort, the phase, and when to look again.

pub mod abort;
pub mod attempts;
pub mod auto_upgrade;
pub mod decision;
pub mod policy;
pub mod rate;
pub mod targets;
pub mod window;

pub use abort::{AbortCriterion, FailureType};
pub use attempts::{Retry, RetryOn, Timeouts};
pub use decision::{abort_reason, decide, Decision, RolloutState};
pub use policy::{JobPolicy, PolicyError, Rollout};
pub use targets::Targets;
pub use window::{TimeOfDay, UtcOffset, Window};

/// Epoch milliseconds.
pub type Millis = i64;

/// One minute in milliseconds.
pub const MINUTE_MS: Millis = 60_000;
