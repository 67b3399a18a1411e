//! Customers and their credentials (`customers`, `api_keys`,
//! `register_tokens`), and appliance registration.

use protocol::ApplianceId;
use rusqlite::{params, Connection, OptionalExtension};

use super::appliances::customer_exists;
use super::row::{get, int, parsed, parsed_opt};
use super::{
    CustomerView, NewCustomer, NewRegistration, Page, Paging, Registered, Store, StoreError,
};
use crate::model::{ApplianceStatus, CustomerId};

impl Store {
    /// Creates a customer with its api key (hashed) and register token.
    pub async fn create_customer_with_credentials(
        &self,
        customer: NewCustomer,
    ) -> Result<(), StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let id = customer.customer_id.to_string();
            conn.prepare_cached(
                "INSERT INTO customers (id, name, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, customer.name, customer.now])?;
            conn.prepare_cached(
                "INSERT INTO api_keys (key_hash, customer_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![customer.api_key_hash, id, customer.now])?;
            let (token, expires_at) = &customer.register_token;
            conn.prepare_cached(
                "INSERT INTO register_tokens (customer_id, token, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, token, expires_at])?;
            Ok(())
        })
        .await
    }

    /// The customer an api key (given as its hash) belongs to.
    pub async fn customer_by_api_key(
        &self,
        key_hash: String,
    ) -> Result<Option<CustomerId>, StoreError> {
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT customer_id FROM api_keys WHERE key_hash = ?1")?;
            let mut rows = statement.query([key_hash])?;
            rows.next()?
                .map(|row| parsed(row, 0, "api_keys.customer_id"))
                .transpose()
        })
        .await
    }

    /// Whether the customer exists.
    pub async fn customer_exists(&self, id: CustomerId) -> Result<bool, StoreError> {
        self.read(move |conn| customer_exists(conn, id)).await
    }

    /// A page of customers, with their live appliance counts.
    pub async fn list_customers(&self, paging: Paging) -> Result<Page<CustomerView>, StoreError> {
        self.read(move |conn| {
            let total: i64 = conn.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?;
            let sql = format!(
                "SELECT c.id, c.name, c.created_at, (SELECT count(*) FROM appliances a \
                 WHERE a.customer_id = c.id AND a.status <> '{removed}') FROM customers c {page}",
                removed = ApplianceStatus::Removed.as_str(),
                page = paging.clause("c.id"),
            );
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                items.push(CustomerView {
                    customer_id: parsed(row, 0, "customers.id")?,
                    name: get(row, 1)?,
                    created_at: get(row, 2)?,
                    appliances: int(row, 3, "appliance count")?,
                });
            }
            Ok(Page {
                total: u64::try_from(total).unwrap_or_default(),
                items,
            })
        })
        .await
    }

    /// The register token handed out to a customer, with its expiry.
    pub async fn register_token(
        &self,
        customer: CustomerId,
    ) -> Result<Option<(String, i64)>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token, expires_at FROM register_tokens WHERE customer_id = ?1",
                )?
                .query_row([customer.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
        .await
    }

    /// Replaces a customer's register token.
    pub async fn replace_register_token(
        &self,
        customer: CustomerId,
        token: String,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.write_single(move |ctx| {
            ctx.conn()
                .prepare_cached(
                    "INSERT INTO register_tokens (customer_id, token, expires_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (customer_id) DO UPDATE SET \
                     token = excluded.token, expires_at = excluded.expires_at",
                )?
                .execute(params![customer.to_string(), token, expires_at])?;
            Ok(())
        })
        .await
    }

    /// Records a registration: a known appliance of the same customer
    /// (`known_id`) gets its facts refreshed and its token rotated (and
    /// comes back if it was removed); anything else is a new appliance
    /// with `fresh_id`.
    pub async fn register_appliance(
        &self,
        registration: NewRegistration,
    ) -> Result<Registered, StoreError> {
        self.write(move |ctx| register(ctx.conn(), &registration))
            .await
    }
}

fn owner_of(conn: &Connection, id: ApplianceId) -> Result<Option<CustomerId>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT customer_id FROM appliances WHERE id = ?1")?;
    let mut rows = statement.query([id.to_string()])?;
    match rows.next()? {
        Some(row) => parsed_opt(row, 0, "appliances.customer_id"),
        None => Ok(None),
    }
}

fn register(conn: &Connection, r: &NewRegistration) -> Result<Registered, StoreError> {
    if !customer_exists(conn, r.customer_id)? {
        return Err(StoreError::UnknownCustomer(r.customer_id));
    }
    let capacity = serde_json::to_string(&r.capacity)?;
    let known = match r.known_id {
        Some(id) => owner_of(conn, id)?
            .filter(|owner| *owner == r.customer_id)
            .map(|_| id),
        None => None,
    };
    if let Some(id) = known {
        conn.prepare_cached(
            "UPDATE appliances SET hostname = ?2, ipv4_address = ?3, version = ?4, \
             capacity = ?5, token_hash = ?6, token_expires_at = ?7, registered_at = ?8, \
             unregistered_at = NULL, next_token_hash = NULL, next_token_expires_at = NULL, \
             token_renewal_task = NULL, token_renew_after = NULL, \
             status = CASE WHEN status = ?9 THEN ?10 ELSE status END WHERE id = ?1",
        )?
        .execute(params![
            id.to_string(),
            r.hostname,
            r.ipv4_address,
            r.version,
            capacity,
            r.token_hash,
            r.token_expires_at,
            r.now,
            ApplianceStatus::Removed.as_str(),
            ApplianceStatus::Offline.as_str(),
        ])?;
        return Ok(Registered::Rotated(id));
    }
    conn.prepare_cached(
        "INSERT INTO appliances (id, customer_id, product_key, status, version, token_hash, \
         token_expires_at, capacity, created_at, hostname, ipv4_address, registered_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?9)",
    )?
    .execute(params![
        r.fresh_id.to_string(),
        r.customer_id.to_string(),
        r.product_key.as_str(),
        ApplianceStatus::Offline.as_str(),
        r.version,
        r.token_hash,
        r.token_expires_at,
        capacity,
        r.now,
        r.hostname,
        r.ipv4_address,
    ])?;
    Ok(Registered::Created(r.fresh_id))
}
