//! Connection settings and the schema migrations embedded in the binary.
//!
//! Migrations are `migrations/NNN_name.sql`, applied in order at open
//! inside one transaction and tracked with `PRAGMA user_version`. Their
//! `{{NAME}}` placeholders are filled in from the Rust enums' `as_str`, the
//! one place a status gets its text form. A migration, once released, is
//! never edited: adding a status means a new migration that rebuilds the
//! table's CHECK.

use std::time::Duration;

use protocol::{ExecutionStatus, MessageKind, TaskType};
use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, StoreOptions};
use crate::model::{ApplianceStatus, JobStatus};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "001_initial",
    sql: include_str!("migrations/001_initial.sql"),
}];

/// The kinds of message the outbox holds (hub -> device only).
pub(crate) const OUTBOX_KINDS: [MessageKind; 1] = [MessageKind::JobNotify];

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The newest schema version this binary knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The counter column of a status in `jobs`: `queued`, `in_progress`, ...
pub(crate) fn counter_column(status: ExecutionStatus) -> String {
    status.as_str().to_ascii_lowercase()
}

fn quoted<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The quoted text forms of the execution statuses that match `keep`, in
/// `ExecutionStatus::ALL` order, for `status IN (...)`.
pub(crate) fn status_list(keep: impl Fn(&ExecutionStatus) -> bool) -> String {
    quoted(
        ExecutionStatus::ALL
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.as_str()),
    )
}

fn placeholders() -> Vec<(&'static str, String)> {
    let counters = ExecutionStatus::ALL
        .iter()
        .map(|s| {
            let column = counter_column(*s);
            format!("{column} INTEGER NOT NULL DEFAULT 0 CHECK ({column} >= 0)")
        })
        .collect::<Vec<_>>()
        .join(",\n    ");
    vec![
        ("EXECUTION_STATUSES", status_list(|_| true)),
        ("OPEN_STATUSES", status_list(|s| !s.is_terminal())),
        ("QUEUED", status_list(|s| *s == ExecutionStatus::Queued)),
        (
            "JOB_STATUSES",
            quoted(JobStatus::ALL.iter().map(|s| s.as_str())),
        ),
        (
            "APPLIANCE_STATUSES",
            quoted(ApplianceStatus::ALL.iter().map(|s| s.as_str())),
        ),
        (
            "TASK_TYPES",
            quoted(TaskType::ALL.iter().map(|t| t.as_str())),
        ),
        (
            "OUTBOX_KINDS",
            quoted(OUTBOX_KINDS.iter().map(|k| k.suffix())),
        ),
        ("EXECUTION_COUNTERS", counters),
    ]
}

/// A migration's SQL with its placeholders filled in.
fn render(migration: &Migration) -> Result<String, StoreError> {
    let mut sql = migration.sql.to_owned();
    for (name, value) in placeholders() {
        sql = sql.replace(&format!("{{{{{name}}}}}"), &value);
    }
    if sql.contains("{{") {
        return Err(StoreError::Corrupt(format!(
            "migration {} has an unknown placeholder",
            migration.name
        )));
    }
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
    conn.set_prepared_statement_cache_capacity(64);
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
        assert!(sql.contains("'IN_PROGRESS'"));
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
