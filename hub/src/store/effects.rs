//! Applies the domain effects of a finished task ([`crate::engine::effects`])
//! in the transaction of its transition: the execution's row and the
//! appliance's services, settings, storage or registration change together
//! or not at all.
//!
//! Device updates run without a savepoint of their own (one statement).
//! A transition with effects writes several, so it opens a savepoint of
//! its own around them: a failure rolls back the transition and its
//! effects, and nothing else of the batch.

use protocol::message::MetricsParams;
use protocol::{ApplianceId, ExecutionStatus, JobDocument, TaskType};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::executions::{save, ExecutionRecord};
use super::row;
use super::StoreError;
use crate::engine::effects::{self, Effect};
use crate::engine::ExecutionState;
use crate::model::{ApplianceStatus, ServiceStatus};

/// Saves `state` to the execution's row, with the effects it has when it
/// is a SUCCEEDED task that changes its appliance.
pub(crate) fn save_transition(
    conn: &Connection,
    record: &ExecutionRecord,
    state: &ExecutionState,
    now: i64,
) -> Result<(), StoreError> {
    // SUCCEEDED tasks change their appliance; a FAILED upgrade may have
    // rolled back.
    let effects = if matches!(
        state.status,
        ExecutionStatus::Succeeded | ExecutionStatus::Failed
    ) {
        decide(conn, record, state)?
    } else {
        Vec::new()
    };
    if effects.is_empty() {
        return save(conn, record.rowid, record.state.status, state);
    }
    conn.execute_batch("SAVEPOINT effects")?;
    let result = save(conn, record.rowid, record.state.status, state).and_then(|()| {
        effects
            .iter()
            .try_for_each(|e| apply(conn, record.appliance_id, e, now))
    });
    match result {
        Ok(()) => conn.execute_batch("RELEASE effects")?,
        Err(_) => conn.execute_batch("ROLLBACK TO effects; RELEASE effects")?,
    }
    result
}

fn decide(
    conn: &Connection,
    record: &ExecutionRecord,
    state: &ExecutionState,
) -> Result<Vec<Effect>, StoreError> {
    let job = record.job_id.to_string();
    let task_type: TaskType = conn
        .prepare_cached("SELECT task_type FROM jobs WHERE id = ?1")?
        .query_row([&job], |r| r.get::<_, String>(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("execution of missing job {job}")))?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("jobs.task_type: {e}")))?;
    if !effects::has_effects(task_type)
        || (state.status == ExecutionStatus::Failed && task_type != TaskType::UpgradeAppliance)
    {
        return Ok(Vec::new());
    }
    let document: JobDocument = super::jobs::document(conn, record.job_id)?;
    Ok(effects::decide(
        &document,
        state.status,
        state.result.as_ref(),
    ))
}

/// Applies one effect to the appliance's rows.
pub(crate) fn apply(
    conn: &Connection,
    appliance: ApplianceId,
    effect: &Effect,
    now: i64,
) -> Result<(), StoreError> {
    let id = appliance.to_string();
    match effect {
        Effect::ServiceInstalled {
            service_code,
            version,
            fresh,
        } => install(conn, &id, service_code, version, *fresh, now),
        Effect::ServiceRemoved { service_code } => {
            conn.prepare_cached(
                "DELETE FROM appliance_services WHERE appliance_id = ?1 AND service_code = ?2",
            )?
            .execute(params![id, service_code])?;
            Ok(())
        }
        Effect::ServiceToggled {
            service_code,
            status,
        } => {
            conn.prepare_cached(
                "UPDATE appliance_services SET status = ?3, updated_at = ?4 \
                 WHERE appliance_id = ?1 AND service_code = ?2",
            )?
            .execute(params![id, service_code, status.as_str(), now])?;
            Ok(())
        }
        Effect::ServiceConfigured {
            service_code,
            settings,
            setting_version,
        } => {
            conn.prepare_cached(
                "UPDATE appliance_services SET settings = ?3, setting_version = ?4, \
                 updated_at = ?5 WHERE appliance_id = ?1 AND service_code = ?2 \
                 AND setting_version <= ?4",
            )?
            .execute(params![
                id,
                service_code,
                serde_json::to_string(settings)?,
                i64::try_from(*setting_version).unwrap_or(i64::MAX),
                now
            ])?;
            Ok(())
        }
        Effect::StorageExtended { extend, reported } => {
            storage_extended(conn, &id, extend, reported.as_deref())
        }
        Effect::ApplianceConfigured { body } => configured(conn, &id, body),
        Effect::Unregistered => {
            conn.prepare_cached(
                "UPDATE appliances SET status = ?2, unregistered_at = coalesce(unregistered_at, ?3) \
                 WHERE id = ?1",
            )?
            .execute(params![id, ApplianceStatus::Removed.as_str(), now])?;
            Ok(())
        }
        Effect::FirmwareVersion { version } => {
            conn.prepare_cached(
                "UPDATE appliances SET version = ?2, rolled_back = 0 WHERE id = ?1",
            )?
            .execute(params![id, version])?;
            Ok(())
        }
        Effect::RolledBack { version } => {
            conn.prepare_cached(
                "UPDATE appliances SET version = ?2, rolled_back = 1 WHERE id = ?1",
            )?
            .execute(params![id, version])?;
            Ok(())
        }
    }
}

fn install(
    conn: &Connection,
    id: &str,
    code: &str,
    version: &str,
    fresh: bool,
    now: i64,
) -> Result<(), StoreError> {
    // A job created by an operator may name a service nobody published:
    // it still gets a row, so that the appliance's picture is true.
    conn.prepare_cached(
        "INSERT OR IGNORE INTO services (code, name, created_at) VALUES (?1, ?1, ?2)",
    )?
    .execute(params![code, now])?;
    let request: Option<(f64, i64)> = conn
        .prepare_cached(
            "SELECT request_cpu, request_memory FROM service_versions \
             WHERE service_code = ?1 AND version = ?2",
        )?
        .query_row(params![code, version], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (cpu, memory) = request.unwrap_or((0.0, 0));
    conn.prepare_cached(
        "INSERT INTO appliance_services (appliance_id, service_code, version, status, \
         request_cpu, request_memory, installed_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
         ON CONFLICT (appliance_id, service_code) DO UPDATE SET version = excluded.version, \
         request_cpu = excluded.request_cpu, request_memory = excluded.request_memory, \
         status = CASE WHEN ?8 THEN excluded.status ELSE status END, \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        id,
        code,
        version,
        ServiceStatus::Enabled.as_str(),
        cpu,
        memory,
        now,
        fresh
    ])?;
    Ok(())
}

fn latest_metrics(conn: &Connection, id: &str) -> Result<Option<MetricsParams>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT metrics FROM appliances WHERE id = ?1")?;
    let mut rows = statement.query([id])?;
    match rows.next()? {
        Some(row) => row::json_opt(row, 0, "appliances.metrics"),
        None => Ok(None),
    }
}

fn storage_extended(
    conn: &Connection,
    id: &str,
    extend: &[protocol::document::VolumeExtension],
    reported: Option<&[protocol::message::VolumeMetrics]>,
) -> Result<(), StoreError> {
    let Some(mut metrics) = latest_metrics(conn, id)? else {
        // No figures yet: the next metrics post brings them.
        return Ok(());
    };
    match reported {
        Some(volumes) => metrics.storage = volumes.to_vec(),
        None => {
            for grow in extend {
                if let Some(volume) = metrics
                    .storage
                    .iter_mut()
                    .find(|v| v.volume == grow.target_volume)
                {
                    volume.total_bytes = volume.total_bytes.saturating_add(grow.size);
                }
            }
        }
    }
    conn.prepare_cached("UPDATE appliances SET metrics = ?2 WHERE id = ?1")?
        .execute(params![id, serde_json::to_string(&metrics)?])?;
    Ok(())
}

fn configured(conn: &Connection, id: &str, body: &Map<String, Value>) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached("SELECT settings FROM appliances WHERE id = ?1")?;
    let mut rows = statement.query([id])?;
    let mut settings: Map<String, Value> = match rows.next()? {
        Some(row) => row::json_opt(row, 0, "appliances.settings")?.unwrap_or_default(),
        None => return Ok(()),
    };
    drop(rows);
    for (key, value) in body {
        settings.insert(key.clone(), value.clone());
    }
    let hostname = body.get("hostname").and_then(Value::as_str);
    conn.prepare_cached(
        "UPDATE appliances SET settings = ?2, hostname = coalesce(?3, hostname) WHERE id = ?1",
    )?
    .execute(params![id, serde_json::to_string(&settings)?, hostname])?;
    Ok(())
}
