//! The `jobs` table: creation with its executions, cancel, and the reads
//! operators make (summary from the counters, pages of executions).

use std::collections::HashSet;
use std::sync::LazyLock;

use protocol::{ExecutionStatus, JobDocument, TaskId};
use rusqlite::{params, Connection, OptionalExtension};

use super::appliances;
use super::executions::{self, COLUMNS};
use super::row::{self, get, int, parsed, parsed_opt, sql_count};
use super::schema::{counter_column, status_one_of};
use super::writer::WriteCtx;
use super::{ExecutionView, JobCreated, JobSummary, NewJob, OutboxMessage, Page, StoreError};
use crate::engine::{self, ExecutionState};
use crate::model::{JobId, JobStatus, StatusCounts};

/// Creates the job and its QUEUED executions; the counters start at
/// `queued = n`. A job without targets is complete from the start. The job
/// gets its rollout row with an empty policy (everything released at once),
/// which [`super::rollouts::create`] then sets, so that every job, however
/// created, is released by the scheduler.
pub(crate) fn create(conn: &Connection, job: NewJob) -> Result<JobCreated, StoreError> {
    if let Some(customer) = job.customer_id {
        if !appliances::customer_exists(conn, customer)? {
            return Err(StoreError::UnknownCustomer(customer));
        }
    }
    let mut seen = HashSet::with_capacity(job.targets.len());
    let targets: Vec<_> = job
        .targets
        .into_iter()
        .filter(|t| seen.insert(*t))
        .collect();
    let unknown = appliances::unknown_targets(conn, job.customer_id, &targets)?;
    if !unknown.is_empty() {
        return Err(StoreError::UnknownAppliances(unknown));
    }

    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO jobs (id, customer_id, task_type, status, {queued}, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            queued = counter_column(ExecutionStatus::Queued),
        )
    });
    let status = if targets.is_empty() {
        JobStatus::Completed
    } else {
        JobStatus::InProgress
    };
    let job_id = job.job_id.to_string();
    conn.prepare_cached(&SQL)?.execute(params![
        job_id,
        job.customer_id.map(|c| c.to_string()),
        job.document.task_type().as_str(),
        status.as_str(),
        sql_count(targets.len()),
        job.now,
    ])?;
    conn.prepare_cached(
        "INSERT INTO job_documents (job_id, document, targets) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        job_id,
        serde_json::to_string(&job.document)?,
        serde_json::to_string(&targets)?,
    ])?;
    let state = ExecutionState::queued(1, job.now);
    for target in &targets {
        executions::insert(
            conn,
            &TaskId::new_random(),
            &job_id,
            &target.to_string(),
            &state,
        )?;
    }
    super::rollouts::insert_default(conn, job.job_id, targets.len(), job.now)?;
    Ok(JobCreated {
        job_id: job.job_id,
        executions: targets.len(),
    })
}

/// A job's document.
pub(crate) fn document(conn: &Connection, job: JobId) -> Result<JobDocument, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT document FROM job_documents WHERE job_id = ?1")?;
    let text: String = statement
        .query_row([job.to_string()], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("execution of missing job {job}")))?;
    row::json_text(&text, "job_documents.document")
}

fn status(conn: &Connection, job: JobId) -> Result<Option<JobStatus>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT status FROM jobs WHERE id = ?1")?;
    let mut rows = statement.query([job.to_string()])?;
    rows.next()?
        .map(|row| parsed(row, 0, "jobs.status"))
        .transpose()
}

/// Cancels a job's executions (QUEUED and SENT; IN_PROGRESS too with
/// `force`), with a CANCELED notify for each one the device had. The job
/// becomes CANCELED if it still had open executions.
pub(crate) fn cancel(
    ctx: &mut WriteCtx<'_>,
    job: JobId,
    force: bool,
    now: i64,
) -> Result<Option<Vec<OutboxMessage>>, StoreError> {
    static OPEN: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT EXISTS (SELECT 1 FROM executions WHERE job_id = ?1 AND {})",
            status_one_of("status", |s| !s.is_terminal())
        )
    });
    static CANCELABLE: LazyLock<[String; 2]> = LazyLock::new(|| {
        [false, true].map(|force| {
            format!(
                "SELECT {COLUMNS}, a.product_key FROM executions e \
                 JOIN appliances a ON a.id = e.appliance_id \
                 WHERE e.job_id = ?1 AND {} \
                 ORDER BY e.appliance_id, e.execution_number",
                status_one_of("e.status", |s| {
                    engine::HubAction::cancel(force).allowed_from(*s)
                })
            )
        })
    });
    let conn = ctx.conn();
    let Some(job_status) = status(conn, job)? else {
        return Ok(None);
    };
    let id = job.to_string();
    let had_open: bool = conn.prepare_cached(&OPEN)?.query_row([&id], |r| r.get(0))?;
    let records = executions::with_product_keys(conn, &CANCELABLE[usize::from(force)], [&id])?;
    let action = engine::HubAction::cancel(force);
    let messages = executions::apply_hub_all(ctx, records, action, now)?;
    // A job the scheduler completes may have nothing open and still be
    // running (retries to come, a continuous job): it is canceled too.
    let running = had_open || scheduler_completes(conn, &id)?;
    if running && job_status == JobStatus::InProgress {
        conn.prepare_cached(
            "UPDATE jobs SET status = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1",
        )?
        .execute(params![id, JobStatus::Canceled.as_str(), now])?;
    }
    Ok(Some(messages))
}

fn scheduler_completes(conn: &Connection, job: &str) -> Result<bool, StoreError> {
    let flag: i64 = conn
        .prepare_cached("SELECT scheduler_completes FROM jobs WHERE id = ?1")?
        .query_row([job], |row| row.get(0))?;
    Ok(flag == 1)
}

/// The job's row, counters included.
pub(crate) fn summary(conn: &Connection, job: JobId) -> Result<Option<JobSummary>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let counters: Vec<String> = ExecutionStatus::ALL
            .iter()
            .map(|s| counter_column(*s))
            .collect();
        format!(
            "SELECT id, customer_id, task_type, status, created_at, updated_at, {} \
             FROM jobs WHERE id = ?1",
            counters.join(", ")
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([job.to_string()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut counts = StatusCounts::default();
    for (i, status) in ExecutionStatus::ALL.into_iter().enumerate() {
        counts.set(status, int(row, 6 + i, "jobs counter")?);
    }
    Ok(Some(JobSummary {
        job_id: parsed(row, 0, "jobs.id")?,
        customer_id: parsed_opt(row, 1, "jobs.customer_id")?,
        task_type: parsed(row, 2, "jobs.task_type")?,
        status: parsed(row, 3, "jobs.status")?,
        counts,
        created_at: get(row, 4)?,
        updated_at: get(row, 5)?,
    }))
}

/// A page of a job's executions, by appliance then attempt (the order of
/// the job's unique index: no sort, stable across pages): the latest
/// attempt of each appliance, whose total the job's counters give, or
/// with `all_attempts` every attempt, counted.
pub(crate) fn list_executions(
    conn: &Connection,
    job: JobId,
    status: Option<ExecutionStatus>,
    offset: usize,
    limit: usize,
    all_attempts: bool,
) -> Result<Option<Page<ExecutionView>>, StoreError> {
    static LATEST: LazyLock<[String; 2]> =
        LazyLock::new(|| ["", "AND e.status = ?4"].map(|f| page_sql(f, LATEST_ONLY)));
    static EVERY: LazyLock<[String; 2]> =
        LazyLock::new(|| ["", "AND e.status = ?4"].map(|f| page_sql(f, "")));
    let Some(summary) = summary(conn, job)? else {
        return Ok(None);
    };
    let id = job.to_string();
    let total = if all_attempts {
        count_attempts(conn, &id, status)?
    } else {
        status.map_or(summary.counts.total(), |s| summary.counts.get(s))
    };
    let (limit, offset) = (sql_count(limit), sql_count(offset));
    let sql = if all_attempts { &*EVERY } else { &*LATEST };
    let mut statement = conn.prepare_cached(&sql[usize::from(status.is_some())])?;
    let mut rows = match status {
        None => statement.query(params![id, limit, offset])?,
        Some(s) => statement.query(params![id, limit, offset, s.as_str()])?,
    };
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        items.push(ExecutionView::from(executions::decode(row)?));
    }
    Ok(Some(Page { total, items }))
}

/// Keeps only the latest attempt of each appliance.
const LATEST_ONLY: &str = "AND NOT EXISTS (SELECT 1 FROM executions n WHERE n.job_id = e.job_id \
     AND n.appliance_id = e.appliance_id AND n.execution_number > e.execution_number)";

fn count_attempts(
    conn: &Connection,
    job: &str,
    status: Option<ExecutionStatus>,
) -> Result<u64, StoreError> {
    let count: i64 = match status {
        None => conn
            .prepare_cached("SELECT count(*) FROM executions WHERE job_id = ?1")?
            .query_row([job], |row| row.get(0))?,
        Some(s) => conn
            .prepare_cached("SELECT count(*) FROM executions WHERE job_id = ?1 AND status = ?2")?
            .query_row([job, s.as_str()], |row| row.get(0))?,
    };
    Ok(u64::try_from(count).unwrap_or(0))
}

fn page_sql(status_filter: &str, attempts_filter: &str) -> String {
    format!(
        "SELECT {COLUMNS} FROM executions e WHERE e.job_id = ?1 {status_filter} {attempts_filter} \
         ORDER BY e.appliance_id, e.execution_number LIMIT ?2 OFFSET ?3"
    )
}
