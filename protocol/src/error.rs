//! Typed errors for everything that can be wrong with a message or topic.

use thiserror::Error;

/// Why a topic or a payload was refused. Every variant maps onto reply
/// code 400 except where the caller decides otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The payload is not JSON, or a field has the wrong JSON type.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field is present but its value is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The field's name as it appears on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `progress` outside 0-100.
    #[error("progress {0} is outside 0-100")]
    ProgressOutOfRange(i64),
    /// A status string that is not one of the protocol's statuses.
    #[error("unknown status `{0}`")]
    UnknownStatus(String),
    /// A `taskType` that is not one of the protocol's task types.
    #[error("unknown task type `{0}`")]
    UnknownTaskType(String),
    /// An envelope `version` other than [`crate::PROTOCOL_VERSION`].
    #[error("unsupported protocol version `{0}`")]
    UnsupportedVersion(String),
    /// A topic outside the Fleethub namespace or of an unknown kind.
    #[error("invalid topic `{topic}`: {reason}")]
    Topic {
        /// The topic as received (truncated to 256 bytes).
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ProtocolError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

impl From<serde_json::Error> for ProtocolError {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(err.to_string())
    }
}
