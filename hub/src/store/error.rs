//! The store's one error type.

use std::sync::Arc;

use protocol::ApplianceId;

use crate::model::CustomerId;

/// Why a store call failed. Cheap to clone: when a batch fails to commit,
/// every caller whose command was in it gets the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed (I/O, constraint, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The database stayed locked by another connection beyond the busy
    /// timeout (another process writing the same file).
    #[error("database busy")]
    Busy,
    /// The writer's queue is full: the caller should shed the request
    /// (reply 429 / 503) rather than wait.
    #[error("store overloaded")]
    Overloaded,
    /// A file or thread could not be created at open.
    #[error("i/o: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The store was closed (or its writer stopped).
    #[error("store closed")]
    Closed,
    /// Job targets that are not appliances of the job's customer (or not
    /// appliances at all, or removed ones). Nothing was written.
    #[error("unknown appliances: {}", list(.0))]
    UnknownAppliances(Vec<ApplianceId>),
    /// A customer id that does not exist. Nothing was written.
    #[error("unknown customer {0}")]
    UnknownCustomer(CustomerId),
    /// A job targets a tag that does not exist (by id or name).
    #[error("unknown tag {0}")]
    UnknownTag(String),
    /// A row that does not decode (a value outside its type, bad JSON).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database was written by a newer hub (schema version too high).
    #[error("database schema version {found} is newer than this hub's {supported}")]
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest migration this binary knows.
        supported: i64,
    },
    /// The request conflicts with the current state (a duplicate, a task
    /// already running). Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The batch this command was part of did not commit; nothing of it
    /// was written.
    #[error("batch not committed: {0}")]
    NotCommitted(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            _ => Self::Sqlite(Arc::new(error)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(format!("JSON: {error}"))
    }
}

fn list(ids: &[ApplianceId]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = ids.iter().take(SHOWN).map(ToString::to_string).collect();
    if ids.len() > SHOWN {
        text.push(format!("and {} more", ids.len() - SHOWN));
    }
    text.join(", ")
}
