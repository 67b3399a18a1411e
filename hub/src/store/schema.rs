//! Connection settings and the schema migrations embedded in the binary.
//!
//! Migrations are `migrations/NNN_name.sql`, applied in order at open
//! inside one transaction and tracked with `PRAGMA user_version`. Their
//! placeholders (`{{column IN LIST}}`, `{{NAME}}`) are filled in from the
//! Rust enums' `as_str`, the one place a status gets its text form. A
//! migration, once released, is never edited: adding a status means a new
//! migration that rebuilds the table's CHECK.

use std::time::Duration;

use protocol::{ExecutionStatus, MessageKind, TaskType};
use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, StoreOptions};
use crate::model::{ApplianceStatus, JobStatus, RolloutPhase, ServiceStatus};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_initial",
        sql: include_str!("migrations/001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "002_rest_surface",
        sql: include_str!("migrations/002_rest_surface.sql"),
    },
    Migration {
        version: 3,
        name: "003_artifacts",
        sql: include_str!("migrations/003_artifacts.sql"),
    },
    Migration {
        version: 4,
        name: "004_fleet_operations",
        sql: include_str!("migrations/004_fleet_operations.sql"),
    },
    Migration {
        version: 5,
        name: "005_appliance_list",
        sql: include_str!("migrations/005_appliance_list.sql"),
    },
];

/// The kinds of message the outbox holds (hub -> device only).
pub(crate) const OUTBOX_KINDS: [MessageKind; 1] = [MessageKind::JobNotify];

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of the writer, in KiB (negative = KiB for `cache_size`).
const WRITER_CACHE_KIB: i64 = -65_536;

/// WAL pages at which the writer checkpoints by itself, a fallback for a
/// checkpointer that falls behind (SQLite's default is 1,000; the
/// checkpointer normally keeps the WAL a few batches long).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8_000;

/// The newest schema version this binary knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The counter column of a status in `jobs`: `queued`, `in_progress`, ...
pub(crate) fn counter_column(status: ExecutionStatus) -> String {
    status.as_str().to_ascii_lowercase()
}

fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `(column = 'a' OR column = 'b' ...)`: membership written without `IN`,
/// because SQLite evaluates `x IN (list)` by building an ephemeral b-tree
/// each time, and these conditions are evaluated on every transition (the
/// status CHECK, the partial index of open executions).
pub(crate) fn one_of<'a>(column: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    let terms: Vec<String> = values
        .into_iter()
        .map(|v| format!("{column} = {}", quoted(v)))
        .collect();
    if terms.is_empty() {
        return "0".to_owned();
    }
    format!("({})", terms.join(" OR "))
}

/// [`one_of`] the execution statuses that match `keep`, in
/// `ExecutionStatus::ALL` order.
pub(crate) fn status_one_of(column: &str, keep: impl Fn(&ExecutionStatus) -> bool) -> String {
    one_of(
        column,
        ExecutionStatus::ALL
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.as_str()),
    )
}

/// The lists a migration can test membership in: `{{column IN NAME}}`.
fn value_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    let statuses = |keep: fn(&ExecutionStatus) -> bool| {
        ExecutionStatus::ALL
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.as_str())
            .collect()
    };
    vec![
        ("EXECUTION_STATUSES", statuses(|_| true)),
        ("OPEN_STATUSES", statuses(|s| !s.is_terminal())),
        ("QUEUED", statuses(|s| *s == ExecutionStatus::Queued)),
        (
            "JOB_STATUSES",
            JobStatus::ALL.iter().map(|s| s.as_str()).collect(),
        ),
        (
            "ROLLOUT_PHASES",
            RolloutPhase::ALL.iter().map(|s| s.as_str()).collect(),
        ),
        (
            "APPLIANCE_STATUSES",
            ApplianceStatus::ALL.iter().map(|s| s.as_str()).collect(),
        ),
        (
            "TASK_TYPES",
            TaskType::ALL.iter().map(|t| t.as_str()).collect(),
        ),
        (
            "SERVICE_STATUSES",
            ServiceStatus::ALL.iter().map(|s| s.as_str()).collect(),
        ),
        (
            "OUTBOX_KINDS",
            OUTBOX_KINDS.iter().map(|k| k.suffix()).collect(),
        ),
    ]
}

/// Plain text placeholders: `{{NAME}}`.
fn fragments() -> Vec<(&'static str, String)> {
    let counters = ExecutionStatus::ALL
        .iter()
        .map(|s| {
            let column = counter_column(*s);
            format!("{column} INTEGER NOT NULL DEFAULT 0 CHECK ({column} >= 0)")
        })
        .collect::<Vec<_>>()
        .join(",\n    ");
    let columns = ExecutionStatus::ALL
        .iter()
        .map(|s| counter_column(*s))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        ("EXECUTION_COUNTERS", counters),
        ("EXECUTION_COUNTER_COLUMNS", columns),
    ]
}

/// What a placeholder's text (between the braces) stands for.
fn expand(inner: &str) -> Option<String> {
    if let Some((column, list)) = inner.split_once(" IN ") {
        let (_, values) = value_lists().into_iter().find(|(name, _)| *name == list)?;
        return Some(one_of(column.trim(), values));
    }
    fragments()
        .into_iter()
        .find(|(name, _)| *name == inner)
        .map(|(_, text)| text)
}

/// A migration's SQL with its placeholders filled in.
fn render(migration: &Migration) -> Result<String, StoreError> {
    let unknown = || {
        StoreError::Corrupt(format!(
            "migration {} has an unknown placeholder",
            migration.name
        ))
    };
    let mut sql = String::with_capacity(migration.sql.len() * 2);
    let mut rest = migration.sql;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").ok_or_else(unknown)? + start;
        sql.push_str(&rest[..start]);
        sql.push_str(&expand(&rest[start + 2..end]).ok_or_else(unknown)?);
        rest = &rest[end + 2..];
    }
    sql.push_str(rest);
    Ok(sql)
}

/// Settings of the writer connection: WAL, the chosen `synchronous`,
/// foreign keys, busy timeout, a statement cache sized for every query.
pub(crate) fn configure_writer(
    conn: &Connection,
    options: &StoreOptions,
) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "journal_mode is {mode}, expected wal"
        )));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.as_str())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoint sub-journals in memory, and a page cache that holds the
    // working set of a large rollout (the default 2 MiB spills to disk).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Settings of the checkpointer's connection: the writer's durability
/// (`synchronous` decides whether a checkpoint syncs the WAL and the
/// database file), no automatic checkpoint of its own.
pub(crate) fn configure_checkpointer(
    conn: &Connection,
    options: &StoreOptions,
) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", options.synchronous.as_str())?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

/// Settings of a reader connection: read-only, busy timeout.
pub(crate) fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", "ON")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Applies every migration newer than the file's `user_version`, in one
/// transaction. Returns the schema version now in the file.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = latest_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.execute_batch(&render(migration)?)?;
        tx.pragma_update(None, "user_version", migration.version)?;
    }
    tx.commit()?;
    Ok(supported.max(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_render_completely_and_in_order() {
        let mut previous = 0;
        for migration in MIGRATIONS {
            assert!(migration.version > previous, "{}", migration.name);
            previous = migration.version;
            let sql = render(migration).expect("renders");
            assert!(!sql.contains("{{"), "{}", migration.name);
        }
        let sql = render(&MIGRATIONS[0]).expect("renders");
        assert!(sql.contains("status = 'IN_PROGRESS'"));
        assert!(
            !sql.contains(" IN ("),
            "IN lists cost a temporary b-tree per write"
        );
        assert!(sql.contains("in_progress INTEGER NOT NULL DEFAULT 0"));
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut conn).expect("first"), latest_version());
        assert_eq!(migrate(&mut conn).expect("second"), latest_version());
        conn.pragma_update(None, "user_version", latest_version() + 1)
            .expect("bump");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn a_database_from_before_004_keeps_its_jobs_and_gains_aborted() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "foreign_keys", "ON").expect("fk");
        // 001 as it was rendered before JobStatus had ABORTED.
        let old = render(&MIGRATIONS[0])
            .expect("renders")
            .replace(" OR status = 'ABORTED'", "");
        assert!(!old.contains("ABORTED"));
        conn.execute_batch(&old).expect("001");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute_batch(
            "INSERT INTO appliances (id, product_key, status, token_hash, token_expires_at, created_at)
                 VALUES ('a', 'va', 'ONLINE', 'h', 0, 0);
             INSERT INTO jobs (id, task_type, status, queued, sent, created_at, updated_at)
                 VALUES ('j', 'collectMetrics', 'IN_PROGRESS', 1, 1, 5, 6);
             INSERT INTO job_documents (job_id, document, targets)
                 VALUES ('j', '{\"taskType\":\"collectMetrics\"}', '[\"a\"]');
             INSERT INTO executions (task_id, job_id, appliance_id, execution_number, status,
                 version_number, queued_at, updated_at) VALUES ('t', 'j', 'a', 1, 'SENT', 2, 5, 6);",
        )
        .expect("old rows");

        assert_eq!(migrate(&mut conn).expect("migrate"), latest_version());
        let row: (String, i64, i64, i64) = conn
            .query_row(
                "SELECT status, queued, sent, scheduler_completes FROM jobs WHERE id = 'j'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("job kept");
        assert_eq!(row, ("IN_PROGRESS".to_owned(), 1, 1, 0));
        let rollout: (String, i64, i64, i64, String) = conn
            .query_row(
                "SELECT phase, active, first_total, released, targets FROM job_rollouts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .expect("rollout row");
        assert_eq!(
            rollout,
            (
                "RELEASING".to_owned(),
                1,
                2,
                1,
                r#"{"applianceIds":1}"#.to_owned()
            )
        );
        let connected: i64 = conn
            .query_row("SELECT edge_connected FROM appliances", [], |r| r.get(0))
            .expect("appliance");
        assert_eq!(connected, 1);
        conn.execute("UPDATE jobs SET status = 'ABORTED' WHERE id = 'j'", [])
            .expect("ABORTED is a job status now");
        let orphans: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .expect("fk check");
        assert_eq!(orphans, 0);
        let orphan = conn.execute(
            "INSERT INTO executions (task_id, job_id, appliance_id, execution_number, status,
                 version_number, queued_at, updated_at) VALUES ('u', 'nope', 'a', 1, 'QUEUED', 1, 0, 0)",
            [],
        );
        assert!(orphan.is_err(), "executions still reference jobs");
    }

    #[test]
    fn check_constraints_accept_exactly_the_text_forms() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        conn.execute(
            "INSERT INTO customers (id, name, created_at) VALUES ('c', 'n', 0)",
            [],
        )
        .expect("customer");
        for status in ApplianceStatus::ALL {
            let inserted = conn.execute(
                "INSERT INTO appliances (id, product_key, status, token_hash, token_expires_at, created_at)
                 VALUES (?1, 'va', ?1, 'h', 0, 0)",
                [status.as_str()],
            );
            assert_eq!(inserted.ok(), Some(1), "{status}");
        }
        let refused = conn.execute(
            "INSERT INTO appliances (id, product_key, status, token_hash, token_expires_at, created_at)
             VALUES ('x', 'va', 'online', 'h', 0, 0)",
            [],
        );
        assert!(refused.is_err());
    }
}
