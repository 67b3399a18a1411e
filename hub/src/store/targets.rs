//! New targets of a continuous job: appliances its customer (or its tag)
//! gained after
//! the job was created (provisioned or registered later) get a QUEUED
//! execution, released like the others. Runs inside
//! [`super::Store::advance_rollout`]'s transaction every
//! [`super::rollouts::TARGETS_INTERVAL_MS`]. A tag target takes the
//! appliances tagged since (of the job's customer, when it has one).

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, TaskId};
use rusqlite::{params, Connection};

use super::executions;
use super::rollouts::{Rollout, TargetSelector, TARGETS_INTERVAL_MS};
use super::row::{parsed, sql_count};
use super::writer::WriteCtx;
use super::StoreError;
use crate::engine::ExecutionState;
use crate::model::{ApplianceStatus, CustomerId};

/// Most executions added to one job in one pass.
const MAX_NEW_TARGETS: usize = 10_000;

/// Adds an execution for every live appliance of the job's customer (or
/// carrying the job's tag) that has none; returns how many.
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
    let job = rollout.job.to_string();
    let conn = ctx.conn();
    let added: Vec<ApplianceId> = match &rollout.selector {
        TargetSelector::CustomerId(customer) => {
            let mut statement = conn.prepare_cached(&SQL)?;
            let mut rows = statement.query(params![
                customer.to_string(),
                job,
                sql_count(MAX_NEW_TARGETS)
            ])?;
            let mut added = Vec::new();
            while let Some(row) = rows.next()? {
                added.push(parsed(row, 0, "appliances.id")?);
            }
            added
        }
        TargetSelector::Tag(tag) => {
            let customer = job_customer(conn, &job)?;
            tagged(conn, tag, customer, Some(&job), MAX_NEW_TARGETS)?
        }
        TargetSelector::ApplianceIds(_) => return Ok(0),
    };
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

/// The live appliances carrying tag `tag` (an id), oldest first: only the
/// customer's when `customer` is set, only those without an execution of
/// `job` when it is set; at most `limit`.
pub(crate) fn tagged(
    conn: &Connection,
    tag: &str,
    customer: Option<CustomerId>,
    job: Option<&str>,
    limit: usize,
) -> Result<Vec<ApplianceId>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT a.id FROM appliance_tags t JOIN appliances a ON a.id = t.appliance_id \
             WHERE t.tag_id = ?1 AND a.status <> '{removed}' \
             AND (?2 IS NULL OR a.customer_id = ?2) \
             AND (?3 IS NULL OR NOT EXISTS (SELECT 1 FROM executions e \
             WHERE e.job_id = ?3 AND e.appliance_id = a.id)) \
             ORDER BY a.rowid LIMIT ?4",
            removed = ApplianceStatus::Removed.as_str(),
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query(params![
        tag,
        customer.map(|c| c.to_string()),
        job,
        sql_count(limit)
    ])?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next()? {
        ids.push(parsed(row, 0, "appliances.id")?);
    }
    Ok(ids)
}

fn job_customer(conn: &Connection, job: &str) -> Result<Option<CustomerId>, StoreError> {
    let customer: Option<String> = conn
        .prepare_cached("SELECT customer_id FROM jobs WHERE id = ?1")?
        .query_row([job], |r| r.get(0))?;
    customer
        .map(|c| {
            c.parse()
                .map_err(|_| StoreError::Corrupt(format!("jobs.customer_id {c}")))
        })
        .transpose()
}
