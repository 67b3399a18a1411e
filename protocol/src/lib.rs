//! The device <-> hub wire contract of Fleethub, version 1.
//!
//! `topics.md` at the repository root is the human-readable form of this
//! crate; a test reads every JSON example out of it and round-trips it
//! through these types, so the document and the code cannot drift apart.
//!
//! Layout:
//! - [`ids`]: newtypes for the identifiers that travel on the wire.
//! - [`topic`]: topic builders, subscription filters and the topic parser.
//! - [`status`]: execution states and the statuses a device may report.
//! - [`document`]: the job document of every task type and the job file.
//! - [`message`]: request/reply envelopes and every payload, with decoders
//!   that return typed [`ProtocolError`]s instead of panicking.
//!
//! The crate does no I/O: it only builds, parses and validates.

pub mod document;
pub mod error;
pub mod ids;
pub mod message;
pub mod status;
pub mod topic;

pub use document::{JobDocument, JobFile, TaskType};
pub use error::ProtocolError;
pub use ids::{ApplianceId, ProductKey, TaskId};
pub use message::ReplyCode;
pub use status::{ExecutionStatus, ReportedStatus};
pub use topic::{MessageKind, Topic};

/// The only protocol version this crate speaks, carried in every envelope.
pub const PROTOCOL_VERSION: &str = "1.0";

/// Product key used when none is configured.
pub const DEFAULT_PRODUCT_KEY: &str = "va";
