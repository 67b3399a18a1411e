//! The `customers`, `appliances` and `heartbeats` tables.

use protocol::{ApplianceId, ProductKey};
use rusqlite::{params, Connection};
use serde_json::{Map, Value};

use super::row::{get, parsed, parsed_opt};
use super::{ApplianceCredentials, StoreError};
use crate::model::{ApplianceStatus, CustomerId};

/// Creates a customer.
pub(crate) fn create_customer(
    conn: &Connection,
    name: &str,
    now: i64,
) -> Result<CustomerId, StoreError> {
    let id = CustomerId::new_random();
    conn.prepare_cached("INSERT INTO customers (id, name, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![id.to_string(), name, now])?;
    Ok(id)
}

/// Whether the customer exists.
pub(crate) fn customer_exists(conn: &Connection, id: CustomerId) -> Result<bool, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM customers WHERE id = ?1)")?;
    Ok(statement.query_row([id.to_string()], |row| row.get(0))?)
}

/// Inserts appliances, OFFLINE.
pub(crate) fn create_appliances(
    conn: &Connection,
    customer: Option<CustomerId>,
    product_key: &ProductKey,
    tokens: &[(ApplianceId, String, i64)],
    now: i64,
) -> Result<usize, StoreError> {
    if let Some(customer) = customer {
        if !customer_exists(conn, customer)? {
            return Err(StoreError::UnknownCustomer(customer));
        }
    }
    let customer = customer.map(|c| c.to_string());
    let mut statement = conn.prepare_cached(
        "INSERT INTO appliances (id, customer_id, product_key, status, token_hash, \
         token_expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (id, token_hash, expires_at) in tokens {
        statement.execute(params![
            id.to_string(),
            customer,
            product_key.as_str(),
            ApplianceStatus::Offline.as_str(),
            token_hash,
            expires_at,
            now
        ])?;
    }
    Ok(tokens.len())
}

/// The targets that are not live appliances of `customer` (of anyone when
/// None), in the order given.
pub(crate) fn unknown_targets(
    conn: &Connection,
    customer: Option<CustomerId>,
    targets: &[ApplianceId],
) -> Result<Vec<ApplianceId>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT customer_id, status FROM appliances WHERE id = ?1")?;
    let mut unknown = Vec::new();
    for target in targets {
        let mut rows = statement.query([target.to_string()])?;
        let usable = match rows.next()? {
            None => false,
            Some(row) => {
                let owner: Option<CustomerId> = parsed_opt(row, 0, "appliances.customer_id")?;
                let status: ApplianceStatus = parsed(row, 1, "appliances.status")?;
                status != ApplianceStatus::Removed && customer.is_none_or(|c| owner == Some(c))
            }
        };
        if !usable {
            unknown.push(*target);
        }
    }
    Ok(unknown)
}

/// What authentication needs.
pub(crate) fn credentials(
    conn: &Connection,
    id: ApplianceId,
) -> Result<Option<ApplianceCredentials>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT token_hash, token_expires_at, status, product_key, next_token_hash, \
         next_token_expires_at FROM appliances WHERE id = ?1",
    )?;
    let mut rows = statement.query([id.to_string()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(ApplianceCredentials {
        token_hash: get(row, 0)?,
        expires_at: get(row, 1)?,
        status: parsed(row, 2, "appliances.status")?,
        product_key: parsed(row, 3, "appliances.product_key")?,
        next_token_hash: get(row, 4)?,
        next_token_expires_at: get(row, 5)?,
    }))
}

/// Whether the appliance exists.
pub(crate) fn exists(conn: &Connection, id: ApplianceId) -> Result<bool, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM appliances WHERE id = ?1)")?;
    Ok(statement.query_row([id.to_string()], |row| row.get(0))?)
}

/// Connection or disconnection of a live appliance at the device edge; a
/// connection also clears its unanswered heartbeats.
pub(crate) fn record_presence(
    conn: &Connection,
    id: ApplianceId,
    online: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let (status, sql) = if online {
        (
            ApplianceStatus::Online,
            "UPDATE appliances SET status = ?2, connected_at = ?3, last_seen = ?3, \
             edge_connected = 1, heartbeats_unanswered = 0 WHERE id = ?1 AND status <> ?4",
        )
    } else {
        (
            ApplianceStatus::Offline,
            "UPDATE appliances SET status = ?2, last_seen = ?3, edge_connected = 0 \
             WHERE id = ?1 AND status <> ?4",
        )
    };
    let changed = conn.prepare_cached(sql)?.execute(params![
        id.to_string(),
        status.as_str(),
        now,
        ApplianceStatus::Removed.as_str()
    ])?;
    Ok(changed == 1)
}

/// Upserts the heartbeat row and the appliance's last seen time.
pub(crate) fn record_heartbeat(
    conn: &Connection,
    id: ApplianceId,
    result: Option<&Map<String, Value>>,
    now: i64,
) -> Result<bool, StoreError> {
    let id = id.to_string();
    let seen = conn
        .prepare_cached("UPDATE appliances SET last_seen = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    if seen == 0 {
        return Ok(false);
    }
    let result = result.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(
        "INSERT INTO heartbeats (appliance_id, result, received_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (appliance_id) DO UPDATE SET result = excluded.result, \
         received_at = excluded.received_at",
    )?
    .execute(params![id, result, now])?;
    Ok(true)
}
