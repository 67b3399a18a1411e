//! What appliances report outside of tasks: metrics samples (the latest on
//! the appliance's row, the series in `appliance_metrics`), service
//! metrics and audit log entries. Retention is bounded: at most
//! [`MAX_SAMPLES`] per appliance (and per service) and nothing older than
//! [`RETENTION_MS`], trimmed on every insert.

use protocol::message::MetricsParams;
use protocol::ApplianceId;
use rusqlite::{params, Connection};
use serde_json::{Map, Value};

use super::{AuditEntry, Store, StoreError};

/// Samples kept per appliance: 7 days at one a minute, a little more.
pub const MAX_SAMPLES: i64 = 10_080;
/// Age beyond which samples are dropped: 7 days.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Audit entries kept per appliance.
pub const MAX_AUDIT_ENTRIES: i64 = 10_000;

fn appliance_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM appliances WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?)
}

impl Store {
    /// Records a metrics sample: the appliance's latest, and one more in
    /// its series (trimmed to the retention). False for an unknown
    /// appliance.
    pub async fn record_metrics(
        &self,
        appliance: ApplianceId,
        sample: MetricsParams,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let id = appliance.to_string();
            let text = serde_json::to_string(&sample)?;
            let changed = conn
                .prepare_cached(
                    "UPDATE appliances SET metrics = ?2, metrics_at = ?3, last_seen = ?3 \
                     WHERE id = ?1",
                )?
                .execute(params![id, text, now])?;
            if changed == 0 {
                return Ok(false);
            }
            conn.prepare_cached(
                "INSERT INTO appliance_metrics (appliance_id, sampled_at, received_at, sample) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, sample.time, now, text])?;
            conn.prepare_cached(
                "DELETE FROM appliance_metrics WHERE appliance_id = ?1 AND (received_at < ?2 \
                 OR id <= (SELECT id FROM appliance_metrics WHERE appliance_id = ?1 \
                 ORDER BY id DESC LIMIT 1 OFFSET ?3))",
            )?
            .execute(params![id, now - RETENTION_MS, MAX_SAMPLES])?;
            Ok(true)
        })
        .await
    }

    /// How many samples of an appliance are kept.
    pub async fn metrics_samples(&self, appliance: ApplianceId) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM appliance_metrics WHERE appliance_id = ?1")?
                .query_row([appliance.to_string()], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or_default())
        })
        .await
    }

    /// Records a sample a service reported. False for an unknown appliance.
    pub async fn record_service_metrics(
        &self,
        appliance: ApplianceId,
        service_code: String,
        sample: Map<String, Value>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let id = appliance.to_string();
            if !appliance_exists(conn, &id)? {
                return Ok(false);
            }
            conn.prepare_cached(
                "INSERT INTO service_metrics (appliance_id, service_code, received_at, sample) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                id,
                service_code,
                now,
                serde_json::to_string(&sample)?
            ])?;
            conn.prepare_cached(
                "DELETE FROM service_metrics WHERE appliance_id = ?1 AND service_code = ?2 \
                 AND (received_at < ?3 OR id <= (SELECT id FROM service_metrics \
                 WHERE appliance_id = ?1 AND service_code = ?2 ORDER BY id DESC \
                 LIMIT 1 OFFSET ?4))",
            )?
            .execute(params![id, service_code, now - RETENTION_MS, MAX_SAMPLES])?;
            Ok(true)
        })
        .await
    }

    /// Appends audit log entries. False for an unknown appliance.
    pub async fn append_audit_log(
        &self,
        appliance: ApplianceId,
        entries: Vec<AuditEntry>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let id = appliance.to_string();
            if !appliance_exists(conn, &id)? {
                return Ok(false);
            }
            let mut insert = conn.prepare_cached(
                "INSERT INTO audit_log (appliance_id, time, actor, action, detail, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for entry in &entries {
                insert.execute(params![
                    id,
                    entry.time,
                    entry.actor,
                    entry.action,
                    entry.detail,
                    now
                ])?;
            }
            conn.prepare_cached(
                "DELETE FROM audit_log WHERE appliance_id = ?1 AND id <= (SELECT id FROM \
                 audit_log WHERE appliance_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![id, MAX_AUDIT_ENTRIES])?;
            Ok(true)
        })
        .await
    }

    /// An appliance's audit log, newest first (at most `limit` entries).
    pub async fn audit_log(
        &self,
        appliance: ApplianceId,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT time, actor, action, detail FROM audit_log WHERE appliance_id = ?1 \
                 ORDER BY time DESC, id DESC LIMIT ?2",
            )?;
            let mut rows = statement.query(params![appliance.to_string(), limit])?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next()? {
                entries.push(AuditEntry {
                    time: row.get(0)?,
                    actor: row.get(1)?,
                    action: row.get(2)?,
                    detail: row.get(3)?,
                });
            }
            Ok(entries)
        })
        .await
    }

    /// How many appliances are in each status, and jobs in each status,
    /// as `(kind, status, count)` rows (for `GET /metrics`).
    pub async fn fleet_counts(&self) -> Result<Vec<(&'static str, String, u64)>, StoreError> {
        self.read(|conn| {
            let mut counts = Vec::new();
            for (kind, sql) in [
                (
                    "appliances",
                    "SELECT status, count(*) FROM appliances GROUP BY status",
                ),
                ("jobs", "SELECT status, count(*) FROM jobs GROUP BY status"),
            ] {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query([])?;
                while let Some(row) = rows.next()? {
                    let n: i64 = row.get(1)?;
                    counts.push((kind, row.get(0)?, u64::try_from(n).unwrap_or_default()));
                }
            }
            Ok(counts)
        })
        .await
    }

    /// A digest of every row of every table, for tests that check that a
    /// refused request changed nothing.
    pub async fn fingerprint(&self) -> Result<String, StoreError> {
        self.read(|conn| {
            use sha2::{Digest, Sha256};
            let tables: Vec<String> = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut hasher = Sha256::new();
            for table in tables {
                hasher.update(table.as_bytes());
                let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
                let columns = statement.column_count();
                let mut rows = statement.query([])?;
                let mut lines = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut line = String::new();
                    for i in 0..columns {
                        let value: rusqlite::types::Value = row.get(i)?;
                        line.push_str(&format!("{value:?}|"));
                    }
                    lines.push(line);
                }
                lines.sort();
                for line in lines {
                    hasher.update(line.as_bytes());
                }
            }
            Ok(hex::encode(hasher.finalize()))
        })
        .await
    }
}
