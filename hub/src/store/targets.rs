//! New targets of a continuous job: appliances its customer gained after
//! the job was created (provisioned or registered later) get a QUEUED
//! execution, released like the others. Runs inside
//! [`super::Store::advance_rollout`]'s transaction every
//! [`super::rollouts::TARGETS_INTERVAL_MS`]. Tag targets join here in
//! phase 2.

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, TaskId};
use rusqlite::params;

use super::executions;
use super::rollouts::{Rollout, TargetSelector, TARGETS_INTERVAL_MS};
use super::row::{parsed, sql_count};
use super::writer::WriteCtx;
use super::StoreError;
use crate::engine::ExecutionState;
use crate::model::ApplianceStatus;

/// Most executions added to one job in one pass.
const MAX_NEW_TARGETS: usize = 10_000;

/// Adds an execution for every live appliance of the job's customer that
/// has none; returns how many.
pub(crate) fn add_new_targets(
    ctx: &mut WriteCtx<'_>,
    rollout: &mut Rollout,
    now: i64,
) -> Result<usize, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT a.id FROM appliances a WHERE a.customer_id = ?1 AND a.status <> '{removed}' \
             AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.job_id = ?2 \
             AND e.appliance_id = a.id) ORDER BY a.rowid LIMIT ?3",
            removed = ApplianceStatus::Removed.as_str(),
        )
    });
    rollout.targets_due_at = Some(now + TARGETS_INTERVAL_MS);
    let TargetSelector::CustomerId(customer) = rollout.selector else {
        return Ok(0);
    };
    let job = rollout.job.to_string();
    let conn = ctx.conn();
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query(params![
        customer.to_string(),
        job,
        sql_count(MAX_NEW_TARGETS)
    ])?;
    let mut added: Vec<ApplianceId> = Vec::new();
    while let Some(row) = rows.next()? {
        added.push(parsed(row, 0, "appliances.id")?);
    }
    drop(rows);
    drop(statement);
    let state = ExecutionState::queued(1, now);
    for appliance in &added {
        executions::insert(
            conn,
            &TaskId::new_random(),
            &job,
            &appliance.to_string(),
            &state,
        )?;
        ctx.moved(rollout.job, None, ExecutionStatus::Queued, now);
    }
    rollout.state.first_total += added.len() as u64;
    if !added.is_empty() {
        tracing::info!(job = %rollout.job, added = added.len(), "continuous job: new targets");
    }
    Ok(added.len())
}
