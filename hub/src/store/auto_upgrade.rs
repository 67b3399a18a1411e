//! The auto-upgrade duty's queries: which appliances may be upgraded
//! automatically now, and the one job per customer that upgrades them.
//!
//! The time of day is not decided here (an appliance's schedule is in its
//! own zone, see [`crate::rollout::auto_upgrade`]): the store answers every
//! candidate with its schedule and the duty keeps the due ones.

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, JobDocument, TaskId, TaskType};
use rusqlite::{params, Connection, OptionalExtension};

use super::catalog::latest_version;
use super::row::{parsed, parsed_opt};
use super::schema::status_one_of;
use super::writer::WriteCtx;
use super::{rollouts, ApplianceVersionView, JobCreated, NewJob, Store, StoreError};
use crate::model::{ApplianceStatus, CustomerId, JobId};
use crate::rollout::{JobPolicy, Rollout, Targets};

/// The staged groups of an auto-upgrade: half first, the rest once the
/// first half succeeded.
pub const AUTO_UPGRADE_GROUPS: [u8; 2] = [50, 50];

/// An appliance the auto-upgrade may take, with its update schedule as its
/// settings spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoUpgradeCandidate {
    /// The appliance.
    pub appliance: ApplianceId,
    /// Its customer (None: not provisioned to one).
    pub customer: Option<CustomerId>,
    /// `scheduleUpdateDay`.
    pub day: Option<String>,
    /// `scheduleUpdateTime`.
    pub time: Option<String>,
    /// `timeZone`.
    pub zone: Option<String>,
}

/// The conditions of a candidate, on appliance `a`, with `?1` the latest
/// display version: ONLINE, an update day set, not marked rolled back, not
/// on the latest version nor on a published version above it, no
/// upgradeAppliance execution open, and no upgrade to that same version
/// that already ended FAILED, REJECTED or TIMED_OUT on it (the hub does not
/// retry a failed upgrade on its own; an operator can, from `/ui/`).
static ELIGIBLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "a.status = '{online}' AND a.rolled_back = 0 \
         AND json_extract(a.settings, '$.scheduleUpdateDay') IS NOT NULL \
         AND (a.version IS NULL OR a.version <> ?1) \
         AND NOT EXISTS (SELECT 1 FROM appliance_versions v, appliance_versions l \
             WHERE v.display_version = a.version AND l.display_version = ?1 AND l.enabled = 1 \
             AND (v.major, v.minor, v.revision, v.build) > (l.major, l.minor, l.revision, l.build)) \
         AND NOT EXISTS (SELECT 1 FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE e.appliance_id = a.id AND {open} AND j.task_type = '{upgrade}') \
         AND NOT EXISTS (SELECT 1 FROM executions e JOIN jobs j ON j.id = e.job_id \
             JOIN job_documents d ON d.job_id = e.job_id \
             WHERE e.appliance_id = a.id AND {failed} AND j.task_type = '{upgrade}' \
             AND json_extract(d.document, '$.targetVersion') = ?1)",
        online = ApplianceStatus::Online.as_str(),
        open = status_one_of("e.status", |s| !s.is_terminal()),
        failed = status_one_of("e.status", |s| matches!(
            s,
            ExecutionStatus::Failed | ExecutionStatus::Rejected | ExecutionStatus::TimedOut
        )),
        upgrade = TaskType::UpgradeAppliance.as_str(),
    )
});

impl Store {
    /// The latest enabled version and the appliances that may be upgraded
    /// to it automatically (see [`AutoUpgradeCandidate`]); None when no
    /// version is enabled.
    pub async fn auto_upgrade_candidates(
        &self,
    ) -> Result<Option<(ApplianceVersionView, Vec<AutoUpgradeCandidate>)>, StoreError> {
        self.read(|conn| {
            let Some(latest) = latest_version(conn)? else {
                return Ok(None);
            };
            let candidates = candidates(conn, &latest.display_version)?;
            Ok(Some((latest, candidates)))
        })
        .await
    }

    /// Creates one customer's auto-upgrade job: upgradeAppliance to
    /// `version` for those of `appliances` still eligible (checked again in
    /// the transaction, so that two hub replicas do not both upgrade one
    /// appliance), in the staged groups [`AUTO_UPGRADE_GROUPS`]. None when
    /// none is left, `version` is no longer the latest, or its firmware
    /// artifact is not in the artifact store.
    pub async fn create_auto_upgrade(
        &self,
        customer: Option<CustomerId>,
        appliances: Vec<ApplianceId>,
        version: ApplianceVersionView,
        now: i64,
    ) -> Result<Option<JobCreated>, StoreError> {
        self.write(move |ctx| create(ctx, customer, appliances, version, now))
            .await
    }
}

fn candidates(conn: &Connection, latest: &str) -> Result<Vec<AutoUpgradeCandidate>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT a.id, a.customer_id, \
             CAST(json_extract(a.settings, '$.scheduleUpdateDay') AS TEXT), \
             CAST(json_extract(a.settings, '$.scheduleUpdateTime') AS TEXT), \
             CAST(json_extract(a.settings, '$.timeZone') AS TEXT) \
             FROM appliances a WHERE {eligible} ORDER BY a.id",
            eligible = *ELIGIBLE
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([latest])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(AutoUpgradeCandidate {
            appliance: parsed(row, 0, "appliances.id")?,
            customer: parsed_opt(row, 1, "appliances.customer_id")?,
            day: row.get(2)?,
            time: row.get(3)?,
            zone: row.get(4)?,
        });
    }
    Ok(found)
}

fn still_eligible(conn: &Connection, id: ApplianceId, latest: &str) -> Result<bool, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT 1 FROM appliances a WHERE a.id = ?2 AND {eligible}",
            eligible = *ELIGIBLE
        )
    });
    let found = conn
        .prepare_cached(&SQL)?
        .query_row(params![latest, id.to_string()], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

fn create(
    ctx: &mut WriteCtx<'_>,
    customer: Option<CustomerId>,
    appliances: Vec<ApplianceId>,
    version: ApplianceVersionView,
    now: i64,
) -> Result<Option<JobCreated>, StoreError> {
    let conn = ctx.conn();
    let latest = latest_version(conn)?;
    if latest.as_ref().map(|l| &l.version) != Some(&version.version) {
        return Ok(None);
    }
    let artifact_known = conn
        .prepare_cached("SELECT 1 FROM artifacts WHERE sha256 = ?1")?
        .query_row([&version.firmware_sha256], |_| Ok(()))
        .optional()?
        .is_some();
    if !artifact_known {
        return Ok(None);
    }
    let mut targets = Vec::with_capacity(appliances.len());
    for id in appliances {
        if still_eligible(conn, id, &version.display_version)? {
            targets.push(id);
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    targets.sort_unstable();
    targets.dedup();
    let job = NewJob {
        job_id: JobId::new_random(),
        customer_id: customer,
        document: JobDocument::UpgradeAppliance {
            target_version: version.display_version,
            firmware_path: version.firmware_path,
            firmware_sha256: version.firmware_sha256,
        },
        targets: Vec::new(),
        now,
    };
    let policy = JobPolicy {
        rollout: Rollout {
            groups: AUTO_UPGRADE_GROUPS.to_vec(),
            ..Rollout::default()
        },
        ..JobPolicy::default()
    };
    rollouts::create(ctx, job, &Targets::ApplianceIds(targets), &policy)
}

impl Store {
    /// The job a task belongs to (to follow an auto-upgrade, which the
    /// hub started on its own, from the tasks its appliances got).
    pub async fn job_of_task(&self, task: &TaskId) -> Result<Option<JobId>, StoreError> {
        let task = task.to_string();
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT job_id FROM executions WHERE task_id = ?1")?;
            let mut rows = statement.query([task])?;
            rows.next()?
                .map(|row| parsed(row, 0, "executions.job_id"))
                .transpose()
        })
        .await
    }
}
