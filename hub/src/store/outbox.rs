//! The `outbox` table: MQTT messages written in the transaction of the
//! transition that causes them, deleted once published.

use protocol::message::{notify, Task};
use protocol::{ApplianceId, ProductKey};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::row::{get, parsed, sql_count};
use super::{OutboxMessage, StoreError};

/// Writes a notify carrying `task` for the appliance.
pub(crate) fn push_notify(
    conn: &Connection,
    appliance: ApplianceId,
    product_key: ProductKey,
    task: Task,
    now: i64,
) -> Result<OutboxMessage, StoreError> {
    let message = notify(Uuid::new_v4().simple().to_string(), task);
    let payload = serde_json::to_vec(&message)?;
    conn.prepare_cached(
        "INSERT INTO outbox (appliance_id, kind, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        appliance.to_string(),
        OutboxMessage::KIND.suffix(),
        payload,
        now
    ])?;
    Ok(OutboxMessage {
        id: conn.last_insert_rowid(),
        appliance_id: appliance,
        product_key,
        payload,
    })
}

/// The oldest `limit` messages.
pub(crate) fn pending(conn: &Connection, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT o.id, o.appliance_id, a.product_key, o.payload FROM outbox o \
         JOIN appliances a ON a.id = o.appliance_id ORDER BY o.id LIMIT ?1",
    )?;
    let mut rows = statement.query([sql_count(limit)])?;
    let mut messages = Vec::new();
    while let Some(row) = rows.next()? {
        messages.push(OutboxMessage {
            id: get(row, 0)?,
            appliance_id: parsed(row, 1, "outbox.appliance_id")?,
            product_key: parsed(row, 2, "appliances.product_key")?,
            payload: get(row, 3)?,
        });
    }
    Ok(messages)
}

/// Deletes published messages; returns how many existed.
pub(crate) fn ack(conn: &Connection, ids: &[i64]) -> Result<usize, StoreError> {
    let mut statement = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    let mut deleted = 0;
    for id in ids {
        deleted += statement.execute([id])?;
    }
    Ok(deleted)
}
