//! Appliance token renewal, and the due times of the fleet-wide duties.
//!
//! Some days before an appliance's token expires the hub sends it an
//! updateApplianceConfig task whose `body.applianceToken` is a new token;
//! the appliance table keeps that token's hash and expiry as the *next*
//! token (the device edge accepts both) and the task's id. Once the task
//! SUCCEEDED the next token becomes the token; a task that ended otherwise
//! drops it, and a new renewal is tried a day later. Either way the token
//! is then blanked out of the job's document.

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, JobDocument, TaskId};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::row::{parsed, sql_count};
use super::writer::WriteCtx;
use super::{rollouts, NewJob, Store, StoreError};
use crate::credentials::TokenPolicy;
use crate::model::{ApplianceStatus, CustomerId, JobId};
use crate::rollout::{JobPolicy, Targets};

/// How long after a renewal that did not succeed the next one starts.
pub const RENEWAL_RETRY_MS: i64 = 24 * 3600 * 1000;

/// The field of the updateApplianceConfig body carrying the new token.
pub const TOKEN_FIELD: &str = "applianceToken";

/// What settling the renewals under way did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalsSettled {
    /// Appliances whose new token became their token.
    pub confirmed: usize,
    /// Renewals that ended without success (tried again later).
    pub failed: usize,
}

impl Store {
    /// Claims a fleet-wide duty due at `now` (or never run): moves its due
    /// time to `next_due` and answers true, or answers false and leaves it
    /// (another replica took it, or it is not due). Also returns the due
    /// time now in the row.
    pub async fn claim_duty(
        &self,
        duty: &'static str,
        now: i64,
        next_due: i64,
    ) -> Result<(bool, i64), StoreError> {
        self.write(move |ctx| claim_duty(ctx.conn(), duty, now, next_due))
            .await
    }

    /// Appliances whose token is due for renewal and has none under way.
    pub async fn token_renewals_due(
        &self,
        policy: TokenPolicy,
        now: i64,
        limit: usize,
    ) -> Result<Vec<ApplianceId>, StoreError> {
        self.read(move |conn| renewals_due(conn, policy, now, limit))
            .await
    }

    /// Starts a renewal: a job sending `token` to the appliance, the
    /// token's hash and expiry kept as its next token. None when the
    /// appliance is no longer due (checked again in the transaction).
    pub async fn start_token_renewal(
        &self,
        id: ApplianceId,
        token: String,
        token_hash: String,
        policy: TokenPolicy,
        now: i64,
    ) -> Result<Option<(JobId, TaskId)>, StoreError> {
        self.write(move |ctx| start(ctx, id, token, &token_hash, policy, now))
            .await
    }

    /// Promotes the next token of appliances whose renewal task SUCCEEDED,
    /// and drops those whose task ended otherwise.
    pub async fn settle_token_renewals(&self, now: i64) -> Result<RenewalsSettled, StoreError> {
        self.write(move |ctx| settle(ctx.conn(), now)).await
    }
}

fn claim_duty(
    conn: &Connection,
    duty: &str,
    now: i64,
    next_due: i64,
) -> Result<(bool, i64), StoreError> {
    let claimed = conn
        .prepare_cached(
            "INSERT INTO scheduler_duties (duty, due_at) VALUES (?1, ?3) \
             ON CONFLICT (duty) DO UPDATE SET due_at = excluded.due_at \
             WHERE scheduler_duties.due_at <= ?2",
        )?
        .execute(params![duty, now, next_due])?;
    let due_at = super::heartbeats::load_duty(conn, duty)?.map_or(next_due, |row| row.due_at);
    Ok((claimed == 1, due_at))
}

fn renewals_due(
    conn: &Connection,
    policy: TokenPolicy,
    now: i64,
    limit: usize,
) -> Result<Vec<ApplianceId>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id FROM appliances WHERE status <> '{}' AND token_renewal_task IS NULL \
             AND token_expires_at > ?1 AND token_expires_at <= ?2 \
             AND (token_renew_after IS NULL OR token_renew_after <= ?1) LIMIT ?3",
            ApplianceStatus::Removed.as_str()
        )
    });
    let horizon = now.saturating_add(policy.renew_before_ms);
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query(params![now, horizon, sql_count(limit)])?;
    let mut due = Vec::new();
    while let Some(row) = rows.next()? {
        due.push(parsed(row, 0, "appliances.id")?);
    }
    Ok(due)
}

fn start(
    ctx: &mut WriteCtx<'_>,
    id: ApplianceId,
    token: String,
    token_hash: &str,
    policy: TokenPolicy,
    now: i64,
) -> Result<Option<(JobId, TaskId)>, StoreError> {
    let conn = ctx.conn();
    let row = conn
        .prepare_cached(
            "SELECT customer_id, status, token_expires_at, token_renewal_task, token_renew_after \
             FROM appliances WHERE id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })
        .optional()?;
    let Some((customer, status, expires_at, task, renew_after)) = row else {
        return Ok(None);
    };
    let due = status != ApplianceStatus::Removed.as_str()
        && task.is_none()
        && renew_after.is_none_or(|after| after <= now)
        && policy.renewal_due(expires_at, now);
    if !due {
        return Ok(None);
    }
    let customer: Option<CustomerId> = customer
        .map(|c| c.parse())
        .transpose()
        .map_err(|_| StoreError::Corrupt("appliances.customer_id".into()))?;
    let mut body = Map::new();
    body.insert(TOKEN_FIELD.into(), Value::String(token));
    let job = NewJob {
        job_id: JobId::new_random(),
        customer_id: customer,
        document: JobDocument::UpdateApplianceConfig { body },
        targets: vec![id],
        now,
    };
    let targets = Targets::ApplianceIds(vec![id]);
    let Some(created) = rollouts::create(ctx, job, &targets, &JobPolicy::default())? else {
        return Ok(None);
    };
    let conn = ctx.conn();
    let task: TaskId = conn
        .prepare_cached("SELECT task_id FROM executions WHERE job_id = ?1")?
        .query_row([created.job_id.to_string()], |row| row.get::<_, String>(0))?
        .parse()
        .map_err(|_| StoreError::Corrupt("executions.task_id".into()))?;
    conn.prepare_cached(
        "UPDATE appliances SET next_token_hash = ?2, next_token_expires_at = ?3, \
         token_renewal_task = ?4 WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        token_hash,
        policy.expiry(now),
        task.as_str()
    ])?;
    Ok(Some((created.job_id, task)))
}

fn settle(conn: &Connection, now: i64) -> Result<RenewalsSettled, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT a.id, e.status, e.job_id FROM appliances a \
         JOIN executions e ON e.task_id = a.token_renewal_task \
         WHERE a.token_renewal_task IS NOT NULL",
    )?;
    let mut rows = statement.query([])?;
    let mut ended: Vec<(ApplianceId, ExecutionStatus, JobId)> = Vec::new();
    while let Some(row) = rows.next()? {
        let status: ExecutionStatus = parsed(row, 1, "executions.status")?;
        if status.is_terminal() {
            ended.push((
                parsed(row, 0, "appliances.id")?,
                status,
                parsed(row, 2, "executions.job_id")?,
            ));
        }
    }
    drop(rows);
    drop(statement);
    let mut settled = RenewalsSettled::default();
    for (id, status, job) in ended {
        if status == ExecutionStatus::Succeeded {
            conn.prepare_cached(
                "UPDATE appliances SET token_hash = next_token_hash, \
                 token_expires_at = next_token_expires_at, next_token_hash = NULL, \
                 next_token_expires_at = NULL, token_renewal_task = NULL, \
                 token_renew_after = NULL WHERE id = ?1 AND next_token_hash IS NOT NULL",
            )?
            .execute([id.to_string()])?;
            settled.confirmed += 1;
        } else {
            conn.prepare_cached(
                "UPDATE appliances SET next_token_hash = NULL, next_token_expires_at = NULL, \
                 token_renewal_task = NULL, token_renew_after = ?2 WHERE id = ?1",
            )?
            .execute(params![
                id.to_string(),
                now.saturating_add(RENEWAL_RETRY_MS)
            ])?;
            settled.failed += 1;
        }
        // The token is in the hashed columns now (or dropped): blank the
        // clear copy the task carried.
        conn.prepare_cached(
            "UPDATE job_documents SET document = json_set(document, ?2, '') WHERE job_id = ?1",
        )?
        .execute(params![job.to_string(), format!("$.body.{TOKEN_FIELD}")])?;
    }
    Ok(settled)
}
