//! Heartbeats and liveness: the fleet-wide heartbeat round (one notify per
//! connected appliance, never queued, not an execution), the replies
//! (upserted into `heartbeats`, with the appliance's version and clock
//! check), and what an operator reads of an appliance's liveness.
//!
//! A round is claimed through its row in `scheduler_duties` and runs in
//! batches of appliances in id order; the row keeps the round's serverTime
//! and the last appliance reached, so a restarted hub (or another replica)
//! finishes the round instead of starting another.

use std::sync::LazyLock;

use protocol::message::{HeartbeatResult, Task};
use protocol::{ApplianceId, ExecutionStatus, JobDocument, ProductKey, TaskId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::row::{get, parsed, sql_count};
use super::writer::WriteCtx;
use super::{appliances, outbox, OutboxMessage, Store, StoreError};
use crate::model::ApplianceStatus;
use crate::presence::{ClockCheck, HeartbeatPolicy};

const DUTY: &str = "heartbeat";

/// What one batch of a heartbeat round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatBatch {
    /// Heartbeat notifies to publish.
    pub messages: Vec<OutboxMessage>,
    /// Appliances that became OFFLINE (two heartbeats unanswered).
    pub lost: usize,
    /// The round goes on: run the next batch at once.
    pub more_now: bool,
    /// When the next round is due.
    pub due_at: i64,
}

/// An appliance's liveness, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceLiveness {
    /// ONLINE, OFFLINE or REMOVED.
    #[schema(value_type = String)]
    pub status: ApplianceStatus,
    /// Connected at the device edge now.
    pub edge_connected: bool,
    /// Heartbeats sent since its last reply.
    pub heartbeats_unanswered: u32,
    /// Last connection, heartbeat reply or disconnection.
    pub last_seen: Option<i64>,
    /// Firmware version it last reported.
    pub version: Option<String>,
    /// Its clock minus the hub's at its last heartbeat reply, in ms.
    pub clock_skew_ms: Option<i64>,
    /// That difference was beyond the limit (5 minutes).
    pub clock_skewed: bool,
    /// When its token expires.
    pub token_expires_at: i64,
    /// When the token sent by a renewal not yet confirmed expires.
    pub next_token_expires_at: Option<i64>,
    /// The task carrying that token.
    #[schema(value_type = Option<String>)]
    pub token_renewal_task: Option<TaskId>,
}

impl Store {
    /// Runs the next batch (at most `batch` appliances) of the heartbeat
    /// round under way, or starts a round if one is due at `now`.
    pub async fn heartbeat_round(
        &self,
        policy: HeartbeatPolicy,
        batch: usize,
        now: i64,
    ) -> Result<HeartbeatBatch, StoreError> {
        self.write(move |ctx| round(ctx, policy, batch.max(1), now))
            .await
    }

    /// Records an appliance's heartbeat reply: the `heartbeats` row, its
    /// version, its clock check; it is ONLINE again with no heartbeat
    /// unanswered. None for an unknown appliance.
    pub async fn record_heartbeat_reply(
        &self,
        id: ApplianceId,
        result: HeartbeatResult,
        policy: HeartbeatPolicy,
        now: i64,
    ) -> Result<Option<ClockCheck>, StoreError> {
        self.write(move |ctx| reply(ctx.conn(), id, &result, policy, now))
            .await
    }

    /// An appliance's liveness; None when unknown.
    pub async fn appliance_liveness(
        &self,
        id: ApplianceId,
    ) -> Result<Option<ApplianceLiveness>, StoreError> {
        self.read(move |conn| liveness(conn, id)).await
    }
}

/// A row of `scheduler_duties`.
pub(crate) struct DutyRow {
    /// When the duty is next due.
    pub(crate) due_at: i64,
    /// A heartbeat round under way: its serverTime and the last appliance
    /// id it reached.
    pub(crate) round: Option<(i64, String)>,
}

/// A duty's row, if it ever ran.
pub(crate) fn load_duty(conn: &Connection, duty: &str) -> Result<Option<DutyRow>, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT due_at, round_at, cursor FROM scheduler_duties WHERE duty = ?1")?;
    Ok(statement
        .query_row([duty], |row| {
            let round_at: Option<i64> = row.get(1)?;
            let cursor: Option<String> = row.get(2)?;
            Ok(DutyRow {
                due_at: row.get(0)?,
                round: round_at.zip(cursor),
            })
        })
        .optional()?)
}

fn round(
    ctx: &mut WriteCtx<'_>,
    policy: HeartbeatPolicy,
    batch: usize,
    now: i64,
) -> Result<HeartbeatBatch, StoreError> {
    static SELECT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id, product_key, status, heartbeats_unanswered FROM appliances \
             WHERE edge_connected = 1 AND status <> '{}' AND id > ?1 ORDER BY id LIMIT ?2",
            ApplianceStatus::Removed.as_str()
        )
    });
    let conn = ctx.conn();
    let (server_time, cursor) = match load_duty(conn, DUTY)? {
        None => {
            let due_at = policy.next_round(now);
            conn.prepare_cached("INSERT INTO scheduler_duties (duty, due_at) VALUES (?1, ?2)")?
                .execute(params![DUTY, due_at])?;
            return Ok(HeartbeatBatch {
                due_at,
                ..HeartbeatBatch::default()
            });
        }
        Some(DutyRow {
            round: Some(round), ..
        }) => round,
        Some(DutyRow { due_at, .. }) if due_at <= now => (now, String::new()),
        Some(DutyRow { due_at, .. }) => {
            return Ok(HeartbeatBatch {
                due_at,
                ..HeartbeatBatch::default()
            })
        }
    };
    let mut statement = conn.prepare_cached(&SELECT)?;
    let mut rows = statement.query(params![cursor, sql_count(batch)])?;
    let mut targets: Vec<(ApplianceId, ProductKey, ApplianceStatus, u32)> = Vec::new();
    while let Some(row) = rows.next()? {
        let unanswered: i64 = get(row, 3)?;
        targets.push((
            parsed(row, 0, "appliances.id")?,
            parsed(row, 1, "appliances.product_key")?,
            parsed(row, 2, "appliances.status")?,
            u32::try_from(unanswered).unwrap_or(u32::MAX),
        ));
    }
    drop(rows);
    drop(statement);

    let mut result = HeartbeatBatch::default();
    let mut update = conn.prepare_cached(
        "UPDATE appliances SET heartbeats_unanswered = ?2, status = ?3 WHERE id = ?1",
    )?;
    for (id, product_key, status, unanswered) in &targets {
        let step = policy.round(*unanswered);
        let status = if step.lost && *status == ApplianceStatus::Online {
            result.lost += 1;
            ApplianceStatus::Offline
        } else {
            *status
        };
        update.execute(params![id.to_string(), step.unanswered, status.as_str()])?;
        let task = heartbeat_task(id, server_time);
        result.messages.push(outbox::push_notify(
            conn,
            *id,
            product_key.clone(),
            task,
            now,
        )?);
    }
    result.more_now = targets.len() == batch;
    let last = targets.last().map(|(id, ..)| id.to_string());
    if result.more_now {
        result.due_at = now;
        conn.prepare_cached(
            "UPDATE scheduler_duties SET round_at = ?2, cursor = ?3 WHERE duty = ?1",
        )?
        .execute(params![DUTY, server_time, last])?;
    } else {
        result.due_at = policy.next_round(server_time);
        conn.prepare_cached(
            "UPDATE scheduler_duties SET due_at = ?2, round_at = NULL, cursor = NULL WHERE duty = ?1",
        )?
        .execute(params![DUTY, result.due_at])?;
    }
    if result.lost > 0 {
        tracing::info!(
            lost = result.lost,
            "appliances missed two heartbeats: OFFLINE"
        );
    }
    Ok(result)
}

/// The heartbeat notify's task (topics.md 4.1): taskId = applianceId,
/// SENT, executionNumber and versionNumber 1, queuedAt = serverTime.
pub(crate) fn heartbeat_task(appliance: &ApplianceId, server_time: i64) -> Task {
    Task {
        task_id: TaskId::heartbeat(appliance),
        status: ExecutionStatus::Sent,
        execution_number: 1,
        version_number: 1,
        queued_at: server_time,
        progress: None,
        status_details: None,
        job_document: JobDocument::Heartbeat { server_time },
        job_file: None,
    }
}

fn reply(
    conn: &Connection,
    id: ApplianceId,
    result: &HeartbeatResult,
    policy: HeartbeatPolicy,
    now: i64,
) -> Result<Option<ClockCheck>, StoreError> {
    let serde_json::Value::Object(map) = serde_json::to_value(result)? else {
        return Err(StoreError::Corrupt(
            "a heartbeat result is an object".into(),
        ));
    };
    if !appliances::record_heartbeat(conn, id, Some(&map), now)? {
        return Ok(None);
    }
    let check = policy.check_clock(result.clock, now);
    conn.prepare_cached(
        "UPDATE appliances SET heartbeats_unanswered = 0, edge_connected = 1, version = ?2, \
         clock_skew_ms = ?3, clock_skewed = ?4, \
         status = CASE WHEN status = ?5 THEN status ELSE ?6 END WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        result.version,
        check.skew_ms,
        check.skewed,
        ApplianceStatus::Removed.as_str(),
        ApplianceStatus::Online.as_str(),
    ])?;
    Ok(Some(check))
}

fn liveness(conn: &Connection, id: ApplianceId) -> Result<Option<ApplianceLiveness>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT status, edge_connected, heartbeats_unanswered, last_seen, version, \
         clock_skew_ms, clock_skewed, token_expires_at, next_token_expires_at, \
         token_renewal_task FROM appliances WHERE id = ?1",
    )?;
    let mut rows = statement.query([id.to_string()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let connected: i64 = get(row, 1)?;
    let unanswered: i64 = get(row, 2)?;
    let skewed: i64 = get(row, 6)?;
    let task: Option<String> = get(row, 9)?;
    Ok(Some(ApplianceLiveness {
        status: parsed(row, 0, "appliances.status")?,
        edge_connected: connected == 1,
        heartbeats_unanswered: u32::try_from(unanswered).unwrap_or(u32::MAX),
        last_seen: get(row, 3)?,
        version: get(row, 4)?,
        clock_skew_ms: get(row, 5)?,
        clock_skewed: skewed == 1,
        token_expires_at: get(row, 7)?,
        next_token_expires_at: get(row, 8)?,
        token_renewal_task: task
            .map(|t| t.parse())
            .transpose()
            .map_err(|_| StoreError::Corrupt("appliances.token_renewal_task".into()))?,
    }))
}
