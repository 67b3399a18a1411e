//! Releasing a job's due executions, and ending a rollout: the statements
//! [`super::Store::advance_rollout`] runs once the rollout's decision is
//! taken, in the same transaction.

use std::sync::LazyLock;

use protocol::ExecutionStatus;
use rusqlite::{params, Connection};

use super::executions::{self, COLUMNS};
use super::row::sql_count;
use super::schema::status_one_of;
use super::writer::WriteCtx;
use super::{OutboxMessage, StoreError};
use crate::engine::HubAction;
use crate::model::{JobId, JobStatus};

/// Completes a job the scheduler completes.
pub(crate) fn complete(conn: &Connection, job: JobId, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobs SET status = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1 AND status = ?4",
    )?
    .execute(params![
        job.to_string(),
        JobStatus::Completed.as_str(),
        now,
        JobStatus::InProgress.as_str()
    ])?;
    Ok(())
}

/// How many retries of a job are queued (index `executions_retries_queued`).
pub(crate) static QUEUED_RETRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT count(*) FROM executions WHERE job_id = ?1 AND status = '{}' \
         AND execution_number > 1",
        ExecutionStatus::Queued.as_str()
    )
});

pub(crate) fn count_queued_retries(conn: &Connection, job: JobId) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached(&QUEUED_RETRIES)?
        .query_row([job.to_string()], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The oldest queued first attempts of a job (index
/// `executions_queued_by_job`), and its oldest queued retries (index
/// `executions_retries_queued`).
pub(crate) static CLAIM: LazyLock<[String; 2]> = LazyLock::new(|| {
    ["= 1", "> 1"].map(|attempts| {
        format!(
            "SELECT {COLUMNS}, a.product_key FROM executions e \
             JOIN appliances a ON a.id = e.appliance_id \
             WHERE e.job_id = ?1 AND e.status = '{queued}' AND e.execution_number {attempts} \
             ORDER BY e.queued_at, e.rowid LIMIT ?2",
            queued = ExecutionStatus::Queued.as_str(),
        )
    })
});

/// QUEUED -> SENT for up to `limit` of the job's oldest queued retries
/// (`retries`) or first attempts, with their notifies in the outbox.
pub(crate) fn claim_due_executions(
    ctx: &mut WriteCtx<'_>,
    job: JobId,
    retries: bool,
    limit: usize,
    now: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let sql = &CLAIM[usize::from(retries)];
    let records =
        executions::with_product_keys(ctx.conn(), sql, params![job.to_string(), sql_count(limit)])?;
    executions::apply_hub_all(ctx, records, HubAction::Release, now)
}

/// Cancels what has not run (QUEUED, SENT; notifies for SENT) and marks
/// the job ABORTED.
pub(crate) fn abort(
    ctx: &mut WriteCtx<'_>,
    job: JobId,
    now: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, a.product_key FROM executions e \
             JOIN appliances a ON a.id = e.appliance_id WHERE e.job_id = ?1 AND {} \
             ORDER BY e.appliance_id, e.execution_number",
            status_one_of("e.status", |s| HubAction::Cancel.allowed_from(*s))
        )
    });
    let id = job.to_string();
    let records = executions::with_product_keys(ctx.conn(), &SQL, [&id])?;
    let messages = executions::apply_hub_all(ctx, records, HubAction::Cancel, now)?;
    ctx.conn()
        .prepare_cached(
            "UPDATE jobs SET status = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1",
        )?
        .execute(params![id, JobStatus::Aborted.as_str(), now])?;
    Ok(messages)
}
