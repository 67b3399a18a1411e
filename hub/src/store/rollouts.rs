//! The `job_rollouts` table: a job's policy and its rollout's progress, and
//! the one write that moves a rollout forward.
//!
//! [`Store::advance_rollout`] runs, inside one write transaction, every
//! duty of one job that is due: new targets of a continuous job
//! (`store/targets.rs`), overdue executions timed out
//! (`store/timeouts.rs`), failed ones retried (`store/retries.rs`), then
//! the rollout's [`decide`] and what it says: abort, or claim the due
//! executions (QUEUED -> SENT, notifies in the outbox). Deciding and
//! claiming in the same transaction is what keeps two hub replicas sharing
//! one database from releasing an execution twice.

use std::sync::LazyLock;

use protocol::{ExecutionStatus, TaskType};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::row::{get, int, json_text, parsed, sql_count};
use super::schema::counter_column;
use super::writer::WriteCtx;
use super::{jobs, release, rollout_view, JobCreated, NewJob, OutboxMessage, RolloutView};
use super::{Store, StoreError};
use crate::model::{ApplianceStatus, CustomerId, JobId, JobStatus, RolloutPhase, StatusCounts};
use crate::rollout::rate::{self, Batch};
use crate::rollout::{decide, JobPolicy, RolloutState, Targets};

/// How often a continuous job looks for appliances its target gained.
pub const TARGETS_INTERVAL_MS: i64 = 10_000;

/// A job's targets as kept with its rollout: appliance ids are counted
/// (the list itself is with the job's document), a customer or tag named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetSelector {
    /// That many appliances, listed when the job was created.
    ApplianceIds(u64),
    /// The customer's appliances.
    CustomerId(CustomerId),
    /// The tag's appliances.
    Tag(String),
}

/// What one [`Store::advance_rollout`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutStep {
    /// Notifies to publish (releases, cancels of an abort).
    pub messages: Vec<OutboxMessage>,
    /// Executions released.
    pub released: usize,
    /// More is due at once (the batch limit stopped the release).
    pub more_now: bool,
    /// When the job next needs a look without anything else happening.
    pub wake_at: Option<i64>,
    /// False once the job needs no more looks.
    pub active: bool,
}

/// What [`Store::open_next_group`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOpening {
    /// No such job.
    UnknownJob,
    /// The job is not waiting at a stage gate: nothing changed.
    NotGated(RolloutPhase),
    /// This group (0-based) is open.
    Opened(u32),
}

/// One job's rollout, loaded in the write transaction.
pub(crate) struct Rollout {
    pub(crate) job: JobId,
    pub(crate) status: JobStatus,
    pub(crate) task_type: TaskType,
    pub(crate) scheduler_completes: bool,
    /// The counters as written in the job's row.
    stored_counts: StatusCounts,
    pub(crate) policy: JobPolicy,
    pub(crate) selector: TargetSelector,
    pub(crate) state: RolloutState,
    pub(crate) retries: u64,
    pub(crate) timeouts_due_at: Option<i64>,
    pub(crate) retries_due_at: Option<i64>,
    pub(crate) retry_seen_failures: u64,
    pub(crate) targets_due_at: Option<i64>,
    /// The phase the last step left the rollout in.
    pub(crate) phase: RolloutPhase,
}

impl Rollout {
    /// The counters now: the row plus what this batch changed so far.
    pub(crate) fn counts(&self, ctx: &WriteCtx<'_>) -> StatusCounts {
        let pending = ctx.pending_counts(self.job);
        let mut counts = self.stored_counts;
        for (status, delta) in ExecutionStatus::ALL.into_iter().zip(pending) {
            let now = i64::try_from(counts.get(status)).unwrap_or(i64::MAX) + delta;
            counts.set(status, u64::try_from(now).unwrap_or(0));
        }
        counts
    }
}

impl TargetSelector {
    /// The selector kept for `targets`: a tag by its id, so that the job
    /// follows the tag, whatever name the request used.
    fn of(conn: &Connection, targets: &Targets, count: usize) -> Result<Self, StoreError> {
        Ok(match targets {
            Targets::ApplianceIds(_) => Self::ApplianceIds(count as u64),
            Targets::CustomerId(customer) => Self::CustomerId(*customer),
            Targets::Tag(tag) => Self::Tag(tag_id(conn, tag)?.unwrap_or_else(|| tag.clone())),
        })
    }
}

/// The id of the tag whose id or name is `tag`.
fn tag_id(conn: &Connection, tag: &str) -> Result<Option<String>, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT id FROM tags WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC")?;
    let mut rows = statement.query([tag])?;
    Ok(rows.next()?.map(|row| row.get(0)).transpose()?)
}

impl Store {
    /// Creates a job with its policy: its executions (QUEUED) for the
    /// targets as they are now, and its rollout row, in one transaction.
    /// A customer target becomes the job's owner and takes the customer's
    /// live appliances; a tag target, the live appliances carrying the tag
    /// (of the job's customer, when it has one). None, with nothing
    /// written, when the targets hold no appliance and the job is not
    /// continuous.
    pub async fn create_planned_job(
        &self,
        job: NewJob,
        targets: Targets,
        policy: JobPolicy,
    ) -> Result<Option<JobCreated>, StoreError> {
        self.write(move |ctx| create(ctx, job, &targets, &policy))
            .await
    }

    /// Opens the next staged group of a job waiting at its stage gate
    /// (phase STAGE_GATED), whatever the success of the released ones: the
    /// operator's decision to go on. The scheduler's next pass releases
    /// the group, at the job's rate and within its window; the gate of the
    /// group after it is checked as usual.
    pub async fn open_next_group(&self, job: JobId, now: i64) -> Result<GateOpening, StoreError> {
        self.write(move |ctx| open_next_group(ctx.conn(), job, now))
            .await
    }

    /// Jobs the scheduler has to look at.
    pub async fn active_rollouts(&self) -> Result<Vec<JobId>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT job_id FROM job_rollouts WHERE active = 1")?;
            let mut rows = statement.query([])?;
            let mut jobs = Vec::new();
            while let Some(row) = rows.next()? {
                jobs.push(parsed(row, 0, "job_rollouts.job_id")?);
            }
            Ok(jobs)
        })
        .await
    }

    /// Runs every due duty of one job's rollout at `now` in one write
    /// transaction, releasing at most `max_release` executions.
    pub async fn advance_rollout(
        &self,
        job: JobId,
        max_release: usize,
        now: i64,
    ) -> Result<RolloutStep, StoreError> {
        self.write(move |ctx| advance(ctx, job, max_release, now))
            .await
    }

    /// A job's rollout as the summary shows it. None for an unknown job.
    pub async fn rollout_view(&self, job: JobId) -> Result<Option<RolloutView>, StoreError> {
        self.read(move |conn| rollout_view::view(conn, job)).await
    }
}

/// The live appliances of a customer, oldest first.
pub(crate) fn customer_appliances(
    conn: &Connection,
    customer: CustomerId,
) -> Result<Vec<protocol::ApplianceId>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id FROM appliances WHERE customer_id = ?1 AND status <> '{}' ORDER BY rowid",
            ApplianceStatus::Removed.as_str()
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([customer.to_string()])?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next()? {
        ids.push(parsed(row, 0, "appliances.id")?);
    }
    Ok(ids)
}

pub(crate) fn create(
    ctx: &mut WriteCtx<'_>,
    mut job: NewJob,
    targets: &Targets,
    policy: &JobPolicy,
) -> Result<Option<JobCreated>, StoreError> {
    let conn = ctx.conn();
    match targets {
        Targets::ApplianceIds(ids) => job.targets.clone_from(ids),
        Targets::CustomerId(customer) => {
            if !super::appliances::customer_exists(conn, *customer)? {
                return Err(StoreError::UnknownCustomer(*customer));
            }
            job.customer_id = Some(*customer);
            job.targets = customer_appliances(conn, *customer)?;
        }
        Targets::Tag(tag) => {
            let tag = tag_id(conn, tag)?.ok_or_else(|| StoreError::UnknownTag(tag.clone()))?;
            job.targets = super::targets::tagged(conn, &tag, job.customer_id, None, usize::MAX)?;
        }
    }
    let listed = matches!(targets, Targets::ApplianceIds(_));
    if job.targets.is_empty() && !policy.continuous && !listed {
        return Ok(None);
    }
    let now = job.now;
    let created = jobs::create(conn, job)?;
    let id = created.job_id.to_string();
    let scheduler_completes = policy.completed_by_scheduler();
    if scheduler_completes {
        conn.prepare_cached("UPDATE jobs SET scheduler_completes = 1, status = ?2 WHERE id = ?1")?
            .execute(params![id, JobStatus::InProgress.as_str()])?;
    }
    // A listed job without targets is complete from the start.
    let empty = created.executions == 0 && !policy.continuous;
    let phase = match policy.rollout.start_at {
        _ if empty => RolloutPhase::Completed,
        Some(start) if start > now => RolloutPhase::WaitingStart,
        _ => RolloutPhase::Releasing,
    };
    let targets_due_at = policy.continuous.then_some(now + TARGETS_INTERVAL_MS);
    let wake_at = match phase {
        RolloutPhase::WaitingStart => policy.rollout.start_at,
        _ => None,
    };
    conn.prepare_cached(
        "UPDATE job_rollouts SET policy = ?2, targets = ?3, phase = ?4, active = ?5, \
         targets_due_at = ?6, wake_at = ?7 WHERE job_id = ?1",
    )?
    .execute(params![
        id,
        serde_json::to_string(policy)?,
        serde_json::to_string(&TargetSelector::of(conn, targets, created.executions)?)?,
        phase.as_str(),
        !empty,
        targets_due_at,
        wake_at,
    ])?;
    Ok(Some(created))
}

/// The rollout row of a job just created with `executions` executions:
/// an empty policy, every execution released at once.
pub(crate) fn insert_default(
    conn: &Connection,
    job: JobId,
    executions: usize,
    now: i64,
) -> Result<(), StoreError> {
    let phase = if executions == 0 {
        RolloutPhase::Completed
    } else {
        RolloutPhase::Releasing
    };
    conn.prepare_cached(
        "INSERT INTO job_rollouts (job_id, policy, targets, phase, active, first_total, \
         updated_at) VALUES (?1, '{}', ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        job.to_string(),
        serde_json::to_string(&TargetSelector::ApplianceIds(executions as u64))?,
        phase.as_str(),
        executions > 0,
        sql_count(executions),
        now,
    ])?;
    Ok(())
}

static LOAD_SQL: LazyLock<String> = LazyLock::new(|| {
    let counters: Vec<String> = ExecutionStatus::ALL
        .iter()
        .map(|s| format!("j.{}", counter_column(*s)))
        .collect();
    format!(
        "SELECT j.status, j.task_type, j.scheduler_completes, r.policy, \
         r.targets, r.group_index, r.first_total, r.released, r.retries, r.recent_releases, \
         r.timeouts_due_at, r.retries_due_at, r.retry_seen_failures, r.targets_due_at, r.phase, {} \
         FROM jobs j JOIN job_rollouts r ON r.job_id = j.id WHERE j.id = ?1",
        counters.join(", ")
    )
});

fn load(conn: &Connection, job: JobId) -> Result<Option<Rollout>, StoreError> {
    let mut statement = conn.prepare_cached(&LOAD_SQL)?;
    let mut rows = statement.query([job.to_string()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut counts = StatusCounts::default();
    for (i, status) in ExecutionStatus::ALL.into_iter().enumerate() {
        counts.set(status, int(row, 15 + i, "jobs counter")?);
    }
    let policy: String = get(row, 3)?;
    let selector: String = get(row, 4)?;
    let recent: String = get(row, 9)?;
    let completes: i64 = get(row, 2)?;
    Ok(Some(Rollout {
        job,
        status: parsed(row, 0, "jobs.status")?,
        task_type: parsed(row, 1, "jobs.task_type")?,
        scheduler_completes: completes == 1,
        stored_counts: counts,
        policy: json_text(&policy, "job_rollouts.policy")?,
        selector: json_text(&selector, "job_rollouts.targets")?,
        state: RolloutState {
            group: int(row, 5, "job_rollouts.group_index")?,
            first_total: int(row, 6, "job_rollouts.first_total")?,
            released: int(row, 7, "job_rollouts.released")?,
            recent: json_text::<Vec<Batch>>(&recent, "job_rollouts.recent_releases")?,
        },
        retries: int(row, 8, "job_rollouts.retries")?,
        timeouts_due_at: get(row, 10)?,
        retries_due_at: get(row, 11)?,
        retry_seen_failures: int(row, 12, "job_rollouts.retry_seen_failures")?,
        targets_due_at: get(row, 13)?,
        phase: parsed(row, 14, "job_rollouts.phase")?,
    }))
}

/// How the rollout row is left after a step.
struct Outcome<'a> {
    phase: RolloutPhase,
    active: bool,
    wake_at: Option<i64>,
    abort_reason: Option<&'a str>,
}

fn save(conn: &Connection, r: &Rollout, outcome: &Outcome<'_>, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE job_rollouts SET phase = ?2, active = ?3, group_index = ?4, first_total = ?5, \
         released = ?6, retries = ?7, recent_releases = ?8, wake_at = ?9, timeouts_due_at = ?10, \
         retries_due_at = ?11, retry_seen_failures = ?12, targets_due_at = ?13, \
         abort_reason = coalesce(?14, abort_reason), updated_at = ?15 WHERE job_id = ?1",
    )?
    .execute(params![
        r.job.to_string(),
        outcome.phase.as_str(),
        outcome.active,
        r.state.group,
        sql_count(usize::try_from(r.state.first_total).unwrap_or(usize::MAX)),
        sql_count(usize::try_from(r.state.released).unwrap_or(usize::MAX)),
        sql_count(usize::try_from(r.retries).unwrap_or(usize::MAX)),
        serde_json::to_string(&r.state.recent)?,
        outcome.wake_at,
        r.timeouts_due_at,
        r.retries_due_at,
        sql_count(usize::try_from(r.retry_seen_failures).unwrap_or(usize::MAX)),
        r.targets_due_at,
        outcome.abort_reason,
        now,
    ])?;
    Ok(())
}

/// The rollout phase matching a job status that is no longer IN_PROGRESS.
pub(crate) fn ended_phase(status: JobStatus) -> Option<RolloutPhase> {
    match status {
        JobStatus::InProgress => None,
        JobStatus::Completed => Some(RolloutPhase::Completed),
        JobStatus::Canceled => Some(RolloutPhase::Canceled),
        JobStatus::Aborted => Some(RolloutPhase::Aborted),
    }
}

fn advance(
    ctx: &mut WriteCtx<'_>,
    job: JobId,
    max_release: usize,
    now: i64,
) -> Result<RolloutStep, StoreError> {
    let Some(mut r) = load(ctx.conn(), job)? else {
        return Ok(RolloutStep::default());
    };
    if let Some(phase) = ended_phase(r.status) {
        let outcome = Outcome {
            phase,
            active: false,
            wake_at: None,
            abort_reason: None,
        };
        save(ctx.conn(), &r, &outcome, now)?;
        return Ok(RolloutStep::default());
    }
    if r.policy.continuous && r.targets_due_at.is_none_or(|due| due <= now) {
        super::targets::add_new_targets(ctx, &mut r, now)?;
    }
    if r.policy.timeouts.is_set() && r.timeouts_due_at.is_some_and(|due| due <= now) {
        super::timeouts::time_out_overdue(ctx, &mut r, now)?;
    }
    if let Some(retry) = r.policy.retry {
        super::retries::retry_failed(ctx, &mut r, &retry, now)?;
    }
    let queued_retries = release::count_queued_retries(ctx.conn(), job)?;
    let decision = decide(&r.policy, &r.state, &r.counts(ctx), queued_retries, now);
    if let Some(reason) = &decision.abort {
        let messages = release::abort(ctx, r.job, now)?;
        let outcome = Outcome {
            phase: RolloutPhase::Aborted,
            active: false,
            wake_at: None,
            abort_reason: Some(reason),
        };
        save(ctx.conn(), &r, &outcome, now)?;
        return Ok(RolloutStep {
            messages,
            ..RolloutStep::default()
        });
    }

    let retries = usize::try_from(decision.release_retries)
        .unwrap_or(usize::MAX)
        .min(max_release);
    let first = usize::try_from(decision.release_first)
        .unwrap_or(usize::MAX)
        .min(max_release - retries);
    let mut messages = release::claim_due_executions(ctx, job, true, retries, now)?;
    let retried = messages.len();
    messages.extend(release::claim_due_executions(ctx, job, false, first, now)?);
    let released = messages.len();
    r.state.released += (released - retried) as u64;
    r.state.group = decision.group;
    if released > 0 {
        r.state.recent = rate::prune(&r.state.recent, now);
        r.state
            .recent
            .push((now, u32::try_from(released).unwrap_or(u32::MAX)));
        if let Some(shortest) = r.policy.timeouts.shortest_ms() {
            let due = now + shortest;
            r.timeouts_due_at = Some(r.timeouts_due_at.map_or(due, |d| d.min(due)));
        }
    }
    // Stopped by the batch limit, not by the decision: go on at once.
    let more_now = released == max_release
        && (released as u64) < decision.release_retries + decision.release_first;

    let counts = r.counts(ctx);
    let complete = r.scheduler_completes
        && !r.policy.continuous
        && counts.open() == 0
        && r.retries_due_at.is_none();
    if complete {
        release::complete(ctx.conn(), job, now)?;
    }
    let active = !complete && (r.policy.needs_watch() || counts.get(ExecutionStatus::Queued) > 0);
    let outcome = Outcome {
        phase: if complete {
            RolloutPhase::Completed
        } else {
            decision.phase
        },
        active,
        wake_at: decision.wake_at,
        abort_reason: None,
    };
    save(ctx.conn(), &r, &outcome, now)?;
    let wake_at = [
        decision.wake_at,
        r.timeouts_due_at,
        r.retries_due_at,
        r.targets_due_at,
    ]
    .into_iter()
    .flatten()
    .min();
    Ok(RolloutStep {
        messages,
        released,
        more_now,
        wake_at: if more_now { Some(now) } else { wake_at },
        active,
    })
}

fn open_next_group(conn: &Connection, job: JobId, now: i64) -> Result<GateOpening, StoreError> {
    let Some(mut r) = load(conn, job)? else {
        return Ok(GateOpening::UnknownJob);
    };
    let phase = r.phase;
    let last = u32::try_from(r.policy.rollout.groups.len().saturating_sub(1)).unwrap_or(u32::MAX);
    if r.status != JobStatus::InProgress
        || phase != RolloutPhase::StageGated
        || r.state.group >= last
    {
        return Ok(GateOpening::NotGated(phase));
    }
    r.state.group += 1;
    let outcome = Outcome {
        phase: RolloutPhase::Releasing,
        active: true,
        wake_at: Some(now),
        abort_reason: None,
    };
    save(conn, &r, &outcome, now)?;
    Ok(GateOpening::Opened(r.state.group))
}
