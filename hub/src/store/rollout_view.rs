//! A job's rollout as the job summary shows it.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::rollouts::{ended_phase, TargetSelector};
use super::row::json_text;
use super::StoreError;
use crate::model::{JobId, JobStatus, RolloutPhase};
use crate::rollout::JobPolicy;

/// A job's rollout, as the job summary shows it (`rollout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// Where the rollout stands: WAITING_START, WAITING_WINDOW, RELEASING,
    /// STAGE_GATED, COMPLETED, ABORTED or CANCELED.
    #[schema(value_type = String)]
    pub phase: RolloutPhase,
    /// The group being released, from 0.
    pub group: u32,
    /// How many groups (1 without staging).
    pub groups: u32,
    /// Executions released (first attempts; retries are counted apart).
    pub released: u64,
    /// Executions the job has (one per target appliance).
    pub target_count: u64,
    /// Retry attempts created.
    pub retries: u64,
    /// When more executions will be released, when that depends on time
    /// (start time, window, rate).
    pub next_release_at: Option<i64>,
    /// Why the job was aborted.
    pub abort_reason: Option<String>,
    /// What the job targets: `{"applianceIds": <count>}`,
    /// `{"customerId": "..."}` or `{"tag": "..."}`.
    #[schema(value_type = Object)]
    pub targets: TargetSelector,
    /// The job's policy as set at creation.
    pub policy: JobPolicy,
}

pub(crate) fn view(conn: &Connection, job: JobId) -> Result<Option<RolloutView>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT j.status, r.phase, r.group_index, r.released, r.first_total, r.retries, \
         r.wake_at, r.abort_reason, r.targets, r.policy \
         FROM jobs j JOIN job_rollouts r ON r.job_id = j.id WHERE j.id = ?1",
    )?;
    let row = statement
        .query_row([job.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, Option<i64>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, String>(8)?,
                row.get::<_, String>(9)?,
            ))
        })
        .optional()?;
    let Some((status, phase, group, released, total, retries, wake_at, reason, targets, policy)) =
        row
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("job_rollouts.{what}"));
    let status: JobStatus = status.parse().map_err(|_| corrupt("status"))?;
    let stored: RolloutPhase = phase.parse().map_err(|_| corrupt("phase"))?;
    let policy: JobPolicy = json_text(&policy, "job_rollouts.policy")?;
    let phase = ended_phase(status).unwrap_or(stored);
    let waiting = matches!(
        phase,
        RolloutPhase::WaitingStart | RolloutPhase::WaitingWindow | RolloutPhase::Releasing
    );
    let count = |v: i64, what: &str| u64::try_from(v).map_err(|_| corrupt(what));
    Ok(Some(RolloutView {
        phase,
        group: u32::try_from(group).map_err(|_| corrupt("group_index"))?,
        groups: u32::try_from(policy.rollout.groups.len().max(1)).unwrap_or(u32::MAX),
        released: count(released, "released")?,
        target_count: count(total, "first_total")?,
        retries: count(retries, "retries")?,
        next_release_at: wake_at.filter(|_| waiting),
        abort_reason: reason,
        targets: json_text(&targets, "job_rollouts.targets")?,
        policy,
    }))
}
