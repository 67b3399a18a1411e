//! The `executions` table: rows <-> [`ExecutionState`], device updates,
//! release, and the reads a device makes (`$next`, `$list`, one task).

use std::collections::hash_map::{Entry, HashMap};
use std::sync::LazyLock;

use protocol::message::{Task, TaskSummary, UpdateParams, UpdateReplyData};
use protocol::{
    ApplianceId, ExecutionStatus, JobDocument, ProductKey, ReportedStatus, TaskId, TaskType,
};
use rusqlite::{params, Connection, Row};

use super::links::Resolver;
use super::row::{self, get, int, int_opt, json_opt, parsed, sql_count};
use super::writer::WriteCtx;
use super::{outbox, schema, ExecutionView, OutboxMessage, StoreError, TaskLinks, UpdateResult};
use crate::engine::upgrade::{self, UpgradeRefusal};
use crate::engine::{self, ExecutionState, HubAction, UpdateOutcome};
use crate::model::JobId;

/// The columns [`decode`] reads, in order, from `executions e`.
pub(crate) const COLUMNS: &str =
    "e.rowid, e.task_id, e.job_id, e.appliance_id, e.execution_number, \
     e.status, e.version_number, e.progress, e.status_details, e.result, e.error_message, \
     e.client_tokens, e.queued_at, e.sent_at, e.started_at, e.finished_at, e.updated_at";
/// How many they are: the next column of a query is at this index.
pub(crate) const COLUMN_COUNT: usize = 17;

/// One execution row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecutionRecord {
    /// Where the row is, for writing it back in the same transaction.
    pub(crate) rowid: i64,
    pub(crate) task_id: TaskId,
    pub(crate) job_id: JobId,
    pub(crate) appliance_id: ApplianceId,
    pub(crate) state: ExecutionState,
}

/// Decodes the [`COLUMNS`] of a row.
pub(crate) fn decode(row: &Row<'_>) -> Result<ExecutionRecord, StoreError> {
    let task_id: TaskId = parsed(row, 1, "executions.task_id")?;
    let tokens: String = get(row, 11)?;
    let recent_tokens = decode_tokens(&tokens, &task_id)?;
    Ok(ExecutionRecord {
        rowid: get(row, 0)?,
        job_id: parsed(row, 2, "executions.job_id")?,
        appliance_id: parsed(row, 3, "executions.appliance_id")?,
        state: ExecutionState {
            execution_number: int(row, 4, "executions.execution_number")?,
            status: parsed(row, 5, "executions.status")?,
            version_number: int(row, 6, "executions.version_number")?,
            progress: int_opt(row, 7, "executions.progress")?,
            status_details: json_opt(row, 8, "executions.status_details")?,
            result: json_opt(row, 9, "executions.result")?,
            error_message: get(row, 10)?,
            recent_tokens,
            queued_at: get(row, 12)?,
            sent_at: get(row, 13)?,
            started_at: get(row, 14)?,
            finished_at: get(row, 15)?,
            updated_at: get(row, 16)?,
        },
        task_id,
    })
}

/// Client tokens are stored as `[[token, status, version], ...]`: the
/// reply's task id is the row's own.
fn decode_tokens(
    text: &str,
    task_id: &TaskId,
) -> Result<Vec<(String, UpdateReplyData)>, StoreError> {
    if text == "[]" {
        return Ok(Vec::new());
    }
    let tokens: Vec<(String, ExecutionStatus, u64)> =
        row::json_text(text, "executions.client_tokens")?;
    Ok(tokens
        .into_iter()
        .map(|(token, status, version_number)| {
            let reply = UpdateReplyData {
                task_id: task_id.clone(),
                status,
                version_number,
            };
            (token, reply)
        })
        .collect())
}

fn encode_tokens(tokens: &[(String, UpdateReplyData)]) -> Result<String, StoreError> {
    if tokens.is_empty() {
        return Ok("[]".to_owned());
    }
    let compact: Vec<(&str, ExecutionStatus, u64)> = tokens
        .iter()
        .map(|(token, reply)| (token.as_str(), reply.status, reply.version_number))
        .collect();
    Ok(serde_json::to_string(&compact)?)
}

fn encode_json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, StoreError> {
    value
        .map(|v| serde_json::to_string(v).map_err(StoreError::from))
        .transpose()
}

fn version(state: &ExecutionState) -> Result<i64, StoreError> {
    i64::try_from(state.version_number)
        .map_err(|_| StoreError::Corrupt("executions.version_number overflow".into()))
}

/// Inserts a new attempt.
pub(crate) fn insert(
    conn: &Connection,
    task_id: &TaskId,
    job_id: &str,
    appliance: &str,
    state: &ExecutionState,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO executions (task_id, job_id, appliance_id, execution_number, status, \
         version_number, queued_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    statement.execute(params![
        task_id.as_str(),
        job_id,
        appliance,
        state.execution_number,
        state.status.as_str(),
        version(state)?,
        state.queued_at,
        state.updated_at,
    ])?;
    Ok(())
}

/// Writes a state back to its row (by rowid, read in this transaction:
/// one index descent less than by task id). When the status did not change
/// (progress reports), the status column is left out of the UPDATE, so
/// SQLite neither re-checks it nor rewrites the partial indexes that
/// depend on it.
pub(crate) fn save(
    conn: &Connection,
    rowid: i64,
    from: ExecutionStatus,
    state: &ExecutionState,
) -> Result<(), StoreError> {
    const FIELDS: &str = "version_number = ?2, progress = ?3, status_details = ?4, \
         result = ?5, error_message = ?6, client_tokens = ?7, sent_at = ?8, started_at = ?9, \
         finished_at = ?10, updated_at = ?11";
    static SAME_STATUS: LazyLock<String> =
        LazyLock::new(|| format!("UPDATE executions SET {FIELDS} WHERE rowid = ?1"));
    static NEW_STATUS: LazyLock<String> =
        LazyLock::new(|| format!("UPDATE executions SET {FIELDS}, status = ?12 WHERE rowid = ?1"));
    let version = version(state)?;
    let details = encode_json(state.status_details.as_ref())?;
    let result = encode_json(state.result.as_ref())?;
    let tokens = encode_tokens(&state.recent_tokens)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &rowid,
        &version,
        &state.progress,
        &details,
        &result,
        &state.error_message,
        &tokens,
        &state.sent_at,
        &state.started_at,
        &state.finished_at,
        &state.updated_at,
    ];
    let status = state.status.as_str();
    let sql = if from == state.status {
        &SAME_STATUS
    } else {
        values.push(&status);
        &NEW_STATUS
    };
    conn.prepare_cached(sql)?.execute(values.as_slice())?;
    Ok(())
}

/// One execution by task id.
pub(crate) fn load(
    conn: &Connection,
    task_id: &TaskId,
) -> Result<Option<ExecutionRecord>, StoreError> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {COLUMNS} FROM executions e WHERE e.task_id = ?1"));
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([task_id.as_str()])?;
    rows.next()?.map(decode).transpose()
}

/// Applies a device's update in the writer: read, decide, write. Writes
/// one statement, last: the store runs it without a savepoint.
pub(crate) fn record_update(
    ctx: &mut WriteCtx<'_>,
    appliance: ApplianceId,
    update: &UpdateParams,
    now: i64,
) -> Result<UpdateResult, StoreError> {
    let conn = ctx.conn();
    let Some(record) = load(conn, &update.task_id)? else {
        return Ok(UpdateResult::NotFound);
    };
    if record.appliance_id != appliance {
        return Ok(UpdateResult::NotFound);
    }
    // A final report of an upgradeAppliance is judged on its version
    // (topics.md 7.3): only those read the job's document.
    let target = match update.status {
        ReportedStatus::Succeeded | ReportedStatus::Failed => upgrade_target(conn, record.job_id)?,
        ReportedStatus::InProgress | ReportedStatus::Rejected => None,
    };
    let outcome = match &target {
        Some(target) => {
            upgrade::apply_upgrade_update(&record.state, &record.task_id, update, target, now)
        }
        None => engine::apply_update(&record.state, &record.task_id, update, now)
            .map_err(UpgradeRefusal::Rejected),
    };
    match outcome {
        Err(UpgradeRefusal::Rejected(rejection)) => Ok(UpdateResult::Rejected(rejection)),
        Err(UpgradeRefusal::MissingVersion) => Ok(UpdateResult::Invalid(
            "upgradeAppliance: SUCCEEDED needs result.version",
        )),
        Ok(UpdateOutcome::Duplicate { reply }) => Ok(UpdateResult::Duplicate(reply)),
        Ok(UpdateOutcome::Applied { state, reply }) => {
            // With the task's domain effects, when it SUCCEEDED.
            super::effects::save_transition(conn, &record, &state, now)?;
            ctx.moved(record.job_id, Some(record.state.status), state.status, now);
            Ok(UpdateResult::Accepted(reply))
        }
    }
}

/// The targetVersion of the job when it is an upgradeAppliance.
fn upgrade_target(conn: &Connection, job: JobId) -> Result<Option<String>, StoreError> {
    let task_type: String = conn
        .prepare_cached("SELECT task_type FROM jobs WHERE id = ?1")?
        .query_row([job.to_string()], |r| r.get(0))?;
    if task_type != TaskType::UpgradeAppliance.as_str() {
        return Ok(None);
    }
    match super::jobs::document(conn, job)? {
        JobDocument::UpgradeAppliance { target_version, .. } => Ok(Some(target_version)),
        _ => Ok(None),
    }
}

/// The task a device sees.
pub(crate) fn to_task(record: ExecutionRecord, document: JobDocument) -> Task {
    Task {
        task_id: record.task_id,
        status: record.state.status,
        execution_number: record.state.execution_number,
        version_number: record.state.version_number,
        queued_at: record.state.queued_at,
        progress: record.state.progress,
        status_details: record.state.status_details,
        job_document: document,
        job_file: None,
    }
}

/// Executions with their appliance's product key, from a query selecting
/// [`COLUMNS`] then `a.product_key`.
pub(crate) fn with_product_keys(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(ExecutionRecord, ProductKey)>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let key = parsed(row, COLUMN_COUNT, "appliances.product_key")?;
        records.push((decode(row)?, key));
    }
    Ok(records)
}

/// QUEUED -> SENT for the oldest `limit` queued executions, with a notify
/// each in the outbox.
pub(crate) fn release(
    ctx: &mut WriteCtx<'_>,
    job: Option<JobId>,
    limit: usize,
    now: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let conn = ctx.conn();
    let limit = sql_count(limit);
    let records = match job {
        None => with_product_keys(conn, &RELEASE_ANY, params![limit])?,
        Some(job) => with_product_keys(conn, &RELEASE_ONE, params![limit, job.to_string()])?,
    };
    apply_hub_all(ctx, records, HubAction::Release, now)
}

/// Applies a hub transition to each execution: saves it, counts it, and
/// writes a notify to the outbox when the engine says the device must know.
pub(crate) fn apply_hub_all(
    ctx: &mut WriteCtx<'_>,
    records: Vec<(ExecutionRecord, ProductKey)>,
    action: HubAction,
    now: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let conn = ctx.conn();
    let mut documents: HashMap<JobId, JobDocument> = HashMap::new();
    let mut resolver = Resolver::new(conn, ctx.links());
    let mut messages = Vec::new();
    for (record, product_key) in records {
        let outcome = engine::apply_hub(&record.state, action, now)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", record.task_id)))?;
        save(conn, record.rowid, record.state.status, &outcome.state)?;
        let (from, to) = (record.state.status, outcome.state.status);
        ctx.moved(record.job_id, Some(from), to, now);
        if !outcome.notify {
            continue;
        }
        let document = match documents.entry(record.job_id) {
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => entry
                .insert(super::jobs::document(conn, record.job_id)?)
                .clone(),
        };
        let appliance = record.appliance_id;
        let state = outcome.state;
        let mut task = to_task(ExecutionRecord { state, ..record }, document);
        resolver.attach(&mut task)?;
        messages.push(outbox::push_notify(
            conn,
            appliance,
            product_key,
            task,
            now,
        )?);
    }
    Ok(messages)
}

/// The oldest queued executions of any job (index `executions_queued`).
pub(crate) static RELEASE_ANY: LazyLock<String> = LazyLock::new(|| release_sql(""));
/// The oldest queued executions of one job (`executions_queued_by_job`).
pub(crate) static RELEASE_ONE: LazyLock<String> =
    LazyLock::new(|| release_sql("AND e.job_id = ?2"));

fn release_sql(job_filter: &str) -> String {
    format!(
        "SELECT {COLUMNS}, a.product_key FROM executions e \
         JOIN appliances a ON a.id = e.appliance_id \
         WHERE e.status = '{queued}' {job_filter} ORDER BY e.queued_at, e.rowid LIMIT ?1",
        queued = ExecutionStatus::Queued.as_str(),
    )
}

/// The released, non-terminal statuses, written with the very condition of
/// the partial index `executions_open_by_appliance` so that it is used.
fn released_open_filter() -> String {
    format!(
        "{open} AND e.status <> '{queued}'",
        open = schema::status_one_of("e.status", |s| !s.is_terminal()),
        queued = ExecutionStatus::Queued.as_str(),
    )
}

/// `$next` (index `executions_open_by_appliance`).
pub(crate) static NEXT_TASK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS}, d.document FROM executions e \
         JOIN job_documents d ON d.job_id = e.job_id \
         WHERE e.appliance_id = ?1 AND {open} ORDER BY e.queued_at, e.rowid LIMIT 1",
        open = released_open_filter(),
    )
});

/// `$list` (index `executions_open_by_appliance`).
pub(crate) static LIST_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.task_id, j.task_type, e.status, e.execution_number, e.version_number, \
         e.queued_at FROM executions e JOIN jobs j ON j.id = e.job_id \
         WHERE e.appliance_id = ?1 AND {open} ORDER BY e.queued_at, e.rowid",
        open = schema::status_one_of("e.status", |s| !s.is_terminal()),
    )
});

/// `$next`.
pub(crate) fn next_task(
    conn: &Connection,
    links: Option<&dyn TaskLinks>,
    appliance: ApplianceId,
) -> Result<Option<Task>, StoreError> {
    let task = one_task(conn, &NEXT_TASK, params![appliance.to_string()])?;
    with_links(conn, links, task)
}

/// One of the appliance's own released tasks.
pub(crate) fn get_task(
    conn: &Connection,
    links: Option<&dyn TaskLinks>,
    appliance: ApplianceId,
    task_id: &TaskId,
) -> Result<Option<Task>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, d.document FROM executions e \
         JOIN job_documents d ON d.job_id = e.job_id \
             WHERE e.task_id = ?1 AND e.appliance_id = ?2"
        )
    });
    let task = one_task(conn, &SQL, params![task_id.as_str(), appliance.to_string()])?;
    with_links(conn, links, task)
}

/// A task as its appliance sees it, with freshly signed links.
fn with_links(
    conn: &Connection,
    links: Option<&dyn TaskLinks>,
    task: Option<Task>,
) -> Result<Option<Task>, StoreError> {
    let Some(mut task) = task else {
        return Ok(None);
    };
    Resolver::new(conn, links).attach(&mut task)?;
    Ok(Some(task))
}

fn one_task(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Task>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let document: String = get(row, COLUMN_COUNT)?;
    let document = row::json_text(&document, "job_documents.document")?;
    Ok(Some(to_task(decode(row)?, document)))
}

/// `$list`.
pub(crate) fn list_tasks(
    conn: &Connection,
    appliance: ApplianceId,
) -> Result<Vec<TaskSummary>, StoreError> {
    let mut statement = conn.prepare_cached(&LIST_TASKS)?;
    let mut rows = statement.query([appliance.to_string()])?;
    let mut tasks = Vec::new();
    while let Some(row) = rows.next()? {
        tasks.push(TaskSummary {
            task_id: parsed(row, 0, "executions.task_id")?,
            task_type: parsed(row, 1, "jobs.task_type")?,
            status: parsed(row, 2, "executions.status")?,
            execution_number: int(row, 3, "executions.execution_number")?,
            version_number: int(row, 4, "executions.version_number")?,
            queued_at: get(row, 5)?,
        });
    }
    Ok(tasks)
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(record: ExecutionRecord) -> Self {
        let state = record.state;
        ExecutionView {
            task_id: record.task_id,
            job_id: record.job_id,
            appliance_id: record.appliance_id,
            status: state.status,
            execution_number: state.execution_number,
            version_number: state.version_number,
            progress: state.progress,
            status_details: state.status_details,
            result: state.result,
            error_message: state.error_message,
            queued_at: state.queued_at,
            sent_at: state.sent_at,
            started_at: state.started_at,
            finished_at: state.finished_at,
            updated_at: state.updated_at,
        }
    }
}
