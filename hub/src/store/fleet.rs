//! A customer's appliances as the frontend sees them: the list and one
//! appliance with its installed services, its open tasks, the tasks
//! created for it, and the customer's view of one task.

use std::sync::LazyLock;

use protocol::{ApplianceId, ExecutionStatus, TaskId};
use rusqlite::{params, Connection, Row};

use super::row::{get, int, json_opt, parsed, parsed_opt};
use super::schema::status_one_of;
use super::{
    ApplianceFilter, ApplianceRecord, InstalledService, NewJob, OpenTask, Page, Paging, Store,
    StoreError, TaskCreated, TaskRequest, TaskView,
};
use crate::model::{ApplianceStatus, CustomerId, JobId};

const COLUMNS: &str = "a.id, a.customer_id, a.hostname, a.ipv4_address, a.status, a.version, \
     coalesce(a.registered_at, a.created_at), a.connected_at, a.last_seen, a.rolled_back, \
     a.unregistered_at, a.capacity, a.settings, a.metrics, a.metrics_at";

fn decode(row: &Row<'_>) -> Result<ApplianceRecord, StoreError> {
    Ok(ApplianceRecord {
        appliance_id: parsed(row, 0, "appliances.id")?,
        customer_id: parsed_opt(row, 1, "appliances.customer_id")?,
        hostname: get(row, 2)?,
        ipv4_address: get(row, 3)?,
        status: parsed(row, 4, "appliances.status")?,
        version: get(row, 5)?,
        registered_at: get(row, 6)?,
        connected_at: get(row, 7)?,
        last_seen: get(row, 8)?,
        rolled_back: get(row, 9)?,
        unregistered_at: get(row, 10)?,
        capacity: json_opt(row, 11, "appliances.capacity")?,
        settings: json_opt(row, 12, "appliances.settings")?,
        metrics: json_opt(row, 13, "appliances.metrics")?,
        metrics_at: get(row, 14)?,
        services: Vec::new(),
        open_tasks: Vec::new(),
    })
}

/// The services installed on an appliance, by code.
pub(crate) fn installed_services(
    conn: &Connection,
    appliance: ApplianceId,
) -> Result<Vec<InstalledService>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT service_code, version, status, health, request_cpu, request_memory, settings, \
         setting_version FROM appliance_services WHERE appliance_id = ?1 ORDER BY service_code",
    )?;
    let mut rows = statement.query([appliance.to_string()])?;
    let mut services = Vec::new();
    while let Some(row) = rows.next()? {
        services.push(InstalledService {
            service_code: get(row, 0)?,
            version: get(row, 1)?,
            status: parsed(row, 2, "appliance_services.status")?,
            health: get(row, 3)?,
            request_cpu: get(row, 4)?,
            request_memory: int(row, 5, "appliance_services.request_memory")?,
            settings: json_opt(row, 6, "appliance_services.settings")?,
            setting_version: int(row, 7, "appliance_services.setting_version")?,
        });
    }
    Ok(services)
}

/// One live (not REMOVED) appliance of the customer.
pub(crate) fn customer_appliance(
    conn: &Connection,
    customer: CustomerId,
    id: ApplianceId,
) -> Result<Option<ApplianceRecord>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM appliances a WHERE a.id = ?1 AND a.customer_id = ?2 \
             AND a.status <> '{}'",
            ApplianceStatus::Removed.as_str()
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query(params![id.to_string(), customer.to_string()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut record = decode(row)?;
    record.services = installed_services(conn, id)?;
    record.open_tasks = open_tasks(conn, id)?;
    Ok(Some(record))
}

/// The open executions of an appliance, oldest first.
pub(crate) fn open_tasks(
    conn: &Connection,
    appliance: ApplianceId,
) -> Result<Vec<OpenTask>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT j.task_type, e.task_id FROM executions e JOIN jobs j ON j.id = e.job_id \
             WHERE e.appliance_id = ?1 AND {} ORDER BY e.queued_at, e.rowid",
            status_one_of("e.status", |s| !s.is_terminal())
        )
    });
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([appliance.to_string()])?;
    let mut tasks = Vec::new();
    while let Some(row) = rows.next()? {
        tasks.push(OpenTask {
            task_type: parsed(row, 0, "jobs.task_type")?,
            task_id: parsed(row, 1, "executions.task_id")?,
        });
    }
    Ok(tasks)
}

/// The count and the page of `list_customer_appliances`: `?1` the
/// customer, `?2` registered since (or NULL), `?3` one appliance id (or
/// NULL). Indexes of migration 005 serve both (see its comment).
pub(super) fn customer_appliances_sql(paging: &Paging) -> (String, String) {
    let condition = format!(
        "WHERE a.customer_id = ?1 AND a.status <> '{}' \
         AND (?2 IS NULL OR coalesce(a.registered_at, a.created_at) >= ?2) \
         AND (?3 IS NULL OR a.id = ?3)",
        ApplianceStatus::Removed.as_str()
    );
    (
        format!("SELECT count(*) FROM appliances a {condition}"),
        format!(
            "SELECT {COLUMNS} FROM appliances a {condition} {}",
            paging.clause("a.id")
        ),
    )
}

impl Store {
    /// A page of the customer's live appliances.
    pub async fn list_customer_appliances(
        &self,
        customer: CustomerId,
        filter: ApplianceFilter,
        paging: Paging,
    ) -> Result<Page<ApplianceRecord>, StoreError> {
        self.read(move |conn| {
            let args = params![
                customer.to_string(),
                filter.registered_since,
                filter.appliance_id.map(|a| a.to_string())
            ];
            let (count_sql, page_sql) = customer_appliances_sql(&paging);
            let total: i64 = conn.prepare(&count_sql)?.query_row(args, |r| r.get(0))?;
            let mut statement = conn.prepare(&page_sql)?;
            let mut items = statement
                .query_and_then(args, decode)?
                .collect::<Result<Vec<_>, StoreError>>()?;
            for item in &mut items {
                item.services = installed_services(conn, item.appliance_id)?;
                item.open_tasks = open_tasks(conn, item.appliance_id)?;
            }
            Ok(Page {
                total: u64::try_from(total).unwrap_or_default(),
                items,
            })
        })
        .await
    }

    /// One live appliance of the customer, with its services. None for an
    /// unknown, removed or another customer's appliance.
    pub async fn customer_appliance(
        &self,
        customer: CustomerId,
        id: ApplianceId,
    ) -> Result<Option<ApplianceRecord>, StoreError> {
        self.read(move |conn| customer_appliance(conn, customer, id))
            .await
    }

    /// The open (non-terminal) tasks of an appliance.
    pub async fn open_tasks(&self, appliance: ApplianceId) -> Result<Vec<OpenTask>, StoreError> {
        self.read(move |conn| open_tasks(conn, appliance)).await
    }

    /// A task as the customer sees it; None when unknown or another
    /// customer's.
    pub async fn customer_task(
        &self,
        customer: CustomerId,
        task_id: TaskId,
    ) -> Result<Option<TaskView>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT e.status, e.result, e.error_message FROM executions e \
                 JOIN appliances a ON a.id = e.appliance_id \
                 WHERE e.task_id = ?1 AND a.customer_id = ?2",
            )?;
            let mut rows = statement.query(params![task_id.as_str(), customer.to_string()])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let status: ExecutionStatus = parsed(row, 0, "executions.status")?;
            Ok(Some(TaskView {
                delivered: status != ExecutionStatus::Queued,
                status,
                result: json_opt(row, 1, "executions.result")?,
                error_message: get(row, 2)?,
            }))
        })
        .await
    }

    /// Creates a one-target job of the customer and returns its task id,
    /// refusing ([`StoreError::Conflict`]) while a task of
    /// `request.unless_open` is open on the appliance, and marking the
    /// appliance unregistered when asked, all in one transaction.
    pub async fn create_task(&self, request: TaskRequest) -> Result<TaskCreated, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let appliance = request.appliance_id;
            if customer_appliance(conn, request.customer_id, appliance)?.is_none() {
                return Err(StoreError::UnknownAppliances(vec![appliance]));
            }
            if !request.unless_open.is_empty() {
                let open = open_tasks(conn, appliance)?;
                let busy = open
                    .iter()
                    .find(|t| request.unless_open.contains(&t.task_type));
                if let Some(task) = busy {
                    return Err(StoreError::Conflict(format!(
                        "a {} task is already open ({})",
                        task.task_type, task.task_id
                    )));
                }
            }
            let job_id = JobId::new_random();
            super::jobs::create(
                conn,
                NewJob {
                    job_id,
                    customer_id: Some(request.customer_id),
                    document: request.document,
                    targets: vec![appliance],
                    now: request.now,
                },
            )?;
            let task_id: String = conn
                .prepare_cached(
                    "SELECT task_id FROM executions WHERE job_id = ?1 AND appliance_id = ?2",
                )?
                .query_row(params![job_id.to_string(), appliance.to_string()], |r| {
                    r.get(0)
                })?;
            if request.unregister {
                conn.prepare_cached(
                    "UPDATE appliances SET unregistered_at = ?2 WHERE id = ?1 \
                     AND unregistered_at IS NULL",
                )?
                .execute(params![appliance.to_string(), request.now])?;
            }
            let task_id = task_id
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("executions.task_id: {e}")))?;
            Ok(TaskCreated { job_id, task_id })
        })
        .await
    }
}
