//! Timeouts of a job's released executions: SENT or IN_PROGRESS ones past
//! their deadline (the job's in-progress timeout counted from release, or
//! its step timeout counted from the last change) end TIMED_OUT. Nothing is
//! published: the appliance learns it from the 409 its next update gets.
//!
//! Runs inside [`super::Store::advance_rollout`]'s transaction, only once
//! the rollout's `timeouts_due_at` has come: the earliest deadline seen at
//! the last scan, lowered by every release.

use std::sync::LazyLock;

use protocol::ExecutionStatus;

use super::executions::{self, COLUMNS};
use super::rollouts::Rollout;
use super::writer::WriteCtx;
use super::StoreError;
use crate::engine::HubAction;

/// Times out the job's overdue executions; sets the rollout's next
/// timeout due time (None when nothing released is open).
pub(crate) fn time_out_overdue(
    ctx: &mut WriteCtx<'_>,
    rollout: &mut Rollout,
    now: i64,
) -> Result<usize, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, a.product_key FROM executions e \
             JOIN appliances a ON a.id = e.appliance_id \
             WHERE e.job_id = ?1 AND (e.status = '{sent}' OR e.status = '{running}')",
            sent = ExecutionStatus::Sent.as_str(),
            running = ExecutionStatus::InProgress.as_str(),
        )
    });
    let open = executions::with_product_keys(ctx.conn(), &SQL, [rollout.job.to_string()])?;
    let timeouts = rollout.policy.timeouts;
    let mut next_due: Option<i64> = None;
    let mut overdue = Vec::new();
    for (record, key) in open {
        let sent_at = record.state.sent_at.unwrap_or(record.state.updated_at);
        match timeouts.deadline(sent_at, record.state.updated_at) {
            Some(deadline) if deadline <= now => overdue.push((record, key)),
            Some(deadline) => next_due = Some(next_due.map_or(deadline, |d| d.min(deadline))),
            None => {}
        }
    }
    let timed_out = overdue.len();
    if timed_out > 0 {
        tracing::info!(job = %rollout.job, timed_out, "executions timed out");
    }
    // TIMED_OUT publishes nothing (HubOutcome::notify is false).
    executions::apply_hub_all(ctx, overdue, HubAction::TimeOut, now)?;
    rollout.timeouts_due_at = next_due;
    Ok(timed_out)
}
