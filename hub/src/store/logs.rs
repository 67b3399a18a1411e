//! The `log_uploads` table: the log archive an appliance uploaded for a
//! collectLog execution, and the reads the log service makes (one task, an
//! appliance's latest collectLog task).

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, TaskId, TaskType};
use rusqlite::{params, Connection, Row};
use serde::{Deserialize, Serialize};

use super::row::{get, int, parsed};
use super::{Store, StoreError};
use crate::artifacts::Sha256Digest;
use crate::model::JobId;

/// A log archive received for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogUpload {
    /// sha256 of the archive (also part of its file name).
    pub sha256: Sha256Digest,
    /// Bytes.
    pub size: u64,
    /// When it was received, epoch ms.
    pub uploaded_at: i64,
}

/// A collectLog execution and its upload, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTask {
    /// The execution's task id.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// The appliance asked for its logs.
    pub appliance_id: ApplianceId,
    /// Where the execution stands.
    pub status: ExecutionStatus,
    /// The archive, once uploaded.
    pub upload: Option<LogUpload>,
}

/// What became of an upload's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecorded {
    /// Saved; `replaced` is the digest of the archive it replaces, if any.
    Recorded {
        /// The previous upload's digest.
        replaced: Option<Sha256Digest>,
    },
    /// No collectLog execution has this task id.
    NotFound,
    /// The execution is in a state that takes no upload (QUEUED: not
    /// released; CANCELED, REMOVED: nobody wants it any more).
    Refused(ExecutionStatus),
}

/// Whether an execution in `status` takes a log upload.
pub fn accepts_upload(status: ExecutionStatus) -> bool {
    !matches!(
        status,
        ExecutionStatus::Queued | ExecutionStatus::Canceled | ExecutionStatus::Removed
    )
}

static SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.task_id, e.job_id, e.appliance_id, e.status, l.sha256, l.size, l.uploaded_at \
         FROM executions e JOIN jobs j ON j.id = e.job_id \
         LEFT JOIN log_uploads l ON l.task_id = e.task_id \
         WHERE j.task_type = '{collect_log}'",
        collect_log = TaskType::CollectLog.as_str(),
    )
});

fn decode(row: &Row<'_>) -> Result<LogTask, StoreError> {
    let sha256: Option<String> = get(row, 4)?;
    let upload = match sha256 {
        None => None,
        Some(sha256) => Some(LogUpload {
            sha256: sha256
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("log_uploads.sha256: {e}")))?,
            size: int(row, 5, "log_uploads.size")?,
            uploaded_at: get(row, 6)?,
        }),
    };
    Ok(LogTask {
        task_id: parsed(row, 0, "executions.task_id")?,
        job_id: parsed(row, 1, "executions.job_id")?,
        appliance_id: parsed(row, 2, "executions.appliance_id")?,
        status: parsed(row, 3, "executions.status")?,
        upload,
    })
}

fn one(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<LogTask>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(decode).transpose()
}

fn log_task(conn: &Connection, task_id: &TaskId) -> Result<Option<LogTask>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("{} AND e.task_id = ?1", *SELECT));
    one(conn, &SQL, [task_id.as_str()])
}

/// An appliance's newest collectLog execution (index
/// `executions_by_appliance`).
pub(crate) static LATEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} AND e.appliance_id = ?1 ORDER BY e.queued_at DESC, e.rowid DESC LIMIT 1",
        *SELECT
    )
});

fn latest(conn: &Connection, appliance: ApplianceId) -> Result<Option<LogTask>, StoreError> {
    one(conn, &LATEST, [appliance.to_string()])
}

fn record(
    conn: &Connection,
    task_id: &TaskId,
    upload: &LogUpload,
) -> Result<LogRecorded, StoreError> {
    let Some(task) = log_task(conn, task_id)? else {
        return Ok(LogRecorded::NotFound);
    };
    if !accepts_upload(task.status) {
        return Ok(LogRecorded::Refused(task.status));
    }
    let replaced = task.upload.map(|u| u.sha256);
    let size = i64::try_from(upload.size)
        .map_err(|_| StoreError::Corrupt("log size out of range".into()))?;
    conn.prepare_cached(
        "INSERT INTO log_uploads (task_id, sha256, size, uploaded_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (task_id) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, \
         uploaded_at = excluded.uploaded_at",
    )?
    .execute(params![
        task_id.as_str(),
        upload.sha256.as_str(),
        size,
        upload.uploaded_at
    ])?;
    Ok(LogRecorded::Recorded { replaced })
}

impl Store {
    /// A collectLog execution with its upload. None when no collectLog
    /// execution has this task id.
    pub async fn log_task(&self, task_id: &TaskId) -> Result<Option<LogTask>, StoreError> {
        let task_id = task_id.clone();
        self.read(move |conn| log_task(conn, &task_id)).await
    }

    /// The appliance's newest collectLog execution.
    pub async fn latest_log_task(
        &self,
        appliance: ApplianceId,
    ) -> Result<Option<LogTask>, StoreError> {
        self.read(move |conn| latest(conn, appliance)).await
    }

    /// Records (or replaces) the archive of a collectLog execution, checked
    /// against the execution's state in the same transaction.
    pub async fn record_log_upload(
        &self,
        task_id: &TaskId,
        upload: LogUpload,
    ) -> Result<LogRecorded, StoreError> {
        let task_id = task_id.clone();
        self.write(move |ctx| record(ctx.conn(), &task_id, &upload))
            .await
    }
}
