//! Retries of a job's failed executions: the latest attempt of an
//! appliance that ended FAILED or TIMED_OUT (as the job's retry policy
//! says) gets a new attempt once its back-off has passed: a new taskId,
//! executionNumber + 1, QUEUED, released like any other. The counters move
//! the appliance from the old attempt's status to QUEUED, so that a job
//! summary counts the latest attempt of each appliance.
//!
//! REJECTED and CANCELED attempts are never retried, nor is an
//! upgradeAppliance whose appliance rolled back.
//!
//! Runs inside [`super::Store::advance_rollout`]'s transaction; it scans
//! the job only when the count of retryable failures changed since the
//! last scan, or when the earliest back-off it saw has passed.

use std::sync::LazyLock;

use protocol::{ExecutionStatus, TaskType};

use super::executions::{self, COLUMNS, COLUMN_COUNT};
use super::rollouts::Rollout;
use super::row::get;
use super::writer::WriteCtx;
use super::StoreError;
use crate::engine;
use crate::engine::upgrade;
use crate::rollout::Retry;

/// Creates the due retries; returns how many. Sets the rollout's next
/// retry due time (None when no failure waits for a retry).
pub(crate) fn retry_failed(
    ctx: &mut WriteCtx<'_>,
    rollout: &mut Rollout,
    retry: &Retry,
    now: i64,
) -> Result<usize, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, a.rolled_back FROM executions e \
             JOIN appliances a ON a.id = e.appliance_id \
             WHERE e.job_id = ?1 AND (e.status = '{failed}' OR e.status = '{timed_out}') \
             AND NOT EXISTS (SELECT 1 FROM executions n WHERE n.job_id = e.job_id \
             AND n.appliance_id = e.appliance_id AND n.execution_number > e.execution_number)",
            failed = ExecutionStatus::Failed.as_str(),
            timed_out = ExecutionStatus::TimedOut.as_str(),
        )
    });
    let failures = |rollout: &Rollout, ctx: &WriteCtx<'_>| -> u64 {
        rollout
            .counts(ctx)
            .iter()
            .filter(|(status, _)| retry.applies_to(*status))
            .map(|(_, n)| n)
            .sum()
    };
    let seen_changed = failures(rollout, ctx) != rollout.retry_seen_failures;
    let due = rollout.retries_due_at.is_some_and(|due| due <= now);
    if !seen_changed && !due {
        return Ok(0);
    }
    let conn = ctx.conn();
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([rollout.job.to_string()])?;
    let mut candidates = Vec::new();
    while let Some(row) = rows.next()? {
        let rolled_back: i64 = get(row, COLUMN_COUNT)?;
        candidates.push((executions::decode(row)?, rolled_back == 1));
    }
    drop(rows);
    drop(statement);

    let upgrade = rollout.task_type == TaskType::UpgradeAppliance;
    let mut next_due: Option<i64> = None;
    let mut created = 0;
    for (record, rolled_back) in candidates {
        let previous = &record.state;
        let rolled_back =
            rolled_back || previous.error_message.as_deref() == Some(upgrade::ROLLED_BACK);
        if !retry.applies_to(previous.status) || (upgrade && rolled_back) {
            continue;
        }
        let finished = previous.finished_at.unwrap_or(previous.updated_at);
        let Some(at) = retry.next_at(previous.execution_number, finished) else {
            continue;
        };
        if at > now {
            next_due = Some(next_due.map_or(at, |d| d.min(at)));
            continue;
        }
        let Ok(next) = engine::next_attempt(previous, now) else {
            continue;
        };
        executions::insert(
            conn,
            &next.task_id,
            &record.job_id.to_string(),
            &record.appliance_id.to_string(),
            &next.state,
        )?;
        ctx.moved(
            record.job_id,
            Some(previous.status),
            ExecutionStatus::Queued,
            now,
        );
        created += 1;
    }
    rollout.retries += created as u64;
    rollout.retries_due_at = next_due;
    rollout.retry_seen_failures = failures(rollout, ctx);
    if created > 0 {
        tracing::info!(job = %rollout.job, created, "failed executions retried");
    }
    Ok(created)
}
