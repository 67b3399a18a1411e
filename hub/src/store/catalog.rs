//! What operators publish: firmware versions (`appliance_versions`),
//! services and their packages (`services`, `service_versions`), and tags
//! (`tags`, `appliance_tags`).

use protocol::ApplianceId;
use rusqlite::{params, Connection, Row};

use super::row::{get, int, parsed};
use super::{ApplianceVersionView, Page, Paging, ServiceVersionView, Store, StoreError, TagView};
use crate::model::TagId;

/// A firmware version to publish; `parts` are major, minor, revision, build.
#[derive(Debug, Clone)]
pub struct NewApplianceVersion {
    /// The version's numbers.
    pub parts: [u32; 4],
    /// What appliances report.
    pub display_version: String,
    /// The firmware artifact.
    pub firmware_path: String,
    /// Its sha256.
    pub firmware_sha256: String,
    /// Enabled from the start.
    pub enabled: bool,
}

/// A service package to publish; `parts` are the version's numbers.
#[derive(Debug, Clone)]
pub struct NewServiceVersion {
    /// The service.
    pub service_code: String,
    /// The service's name (kept from its first version when absent).
    pub service_name: Option<String>,
    /// Version text and numbers.
    pub version: String,
    /// Numbers of the version, padded with zeros.
    pub parts: [u32; 4],
    /// Release branch.
    pub branch: String,
    /// Image path.
    pub image_path: String,
    /// Image sha256.
    pub image_sha256: String,
    /// Cores needed.
    pub request_cpu: f64,
    /// Memory needed.
    pub request_memory: u64,
    /// Enabled from the start.
    pub enabled: bool,
}

const VERSION_COLUMNS: &str = "version, display_version, firmware_path, firmware_sha256, \
     enabled, published_at";

fn decode_version(row: &Row<'_>) -> Result<ApplianceVersionView, StoreError> {
    Ok(ApplianceVersionView {
        version: get(row, 0)?,
        display_version: get(row, 1)?,
        firmware_path: get(row, 2)?,
        firmware_sha256: get(row, 3)?,
        enabled: get(row, 4)?,
        published_at: get(row, 5)?,
    })
}

const SERVICE_VERSION_COLUMNS: &str = "v.service_code, s.name, v.version, v.branch, \
     v.image_path, v.image_sha256, v.request_cpu, v.request_memory, v.enabled, v.created_at";

fn decode_service_version(row: &Row<'_>) -> Result<ServiceVersionView, StoreError> {
    Ok(ServiceVersionView {
        service_code: get(row, 0)?,
        service_name: get(row, 1)?,
        version: get(row, 2)?,
        branch: get(row, 3)?,
        image_path: get(row, 4)?,
        image_sha256: get(row, 5)?,
        request_cpu: get(row, 6)?,
        request_memory: int(row, 7, "service_versions.request_memory")?,
        enabled: get(row, 8)?,
        created_at: get(row, 9)?,
    })
}

fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64, StoreError> {
    let total: i64 = conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))?;
    Ok(u64::try_from(total).unwrap_or_default())
}

/// The newest enabled version, by major.minor.revision.build.
pub(crate) fn latest_version(
    conn: &Connection,
) -> Result<Option<ApplianceVersionView>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM appliance_versions WHERE enabled = 1 \
         ORDER BY major DESC, minor DESC, revision DESC, build DESC LIMIT 1"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([])?;
    rows.next()?.map(decode_version).transpose()
}

/// One service package; the newest enabled one when `version` is None.
pub(crate) fn service_version(
    conn: &Connection,
    code: &str,
    version: Option<&str>,
) -> Result<Option<ServiceVersionView>, StoreError> {
    let sql = format!(
        "SELECT {SERVICE_VERSION_COLUMNS} FROM service_versions v \
         JOIN services s ON s.code = v.service_code WHERE v.service_code = ?1 \
         AND (?2 IS NULL OR v.version = ?2) AND v.enabled = 1 \
         ORDER BY v.v1 DESC, v.v2 DESC, v.v3 DESC, v.v4 DESC LIMIT 1"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params![code, version])?;
    rows.next()?.map(decode_service_version).transpose()
}

impl Store {
    /// Publishes a firmware version. Conflict when it exists.
    pub async fn publish_appliance_version(
        &self,
        version: NewApplianceVersion,
        now: i64,
    ) -> Result<ApplianceVersionView, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let [major, minor, revision, build] = version.parts;
            let text = format!("{major}.{minor}.{revision}.{build}");
            let exists = count(
                conn,
                "SELECT count(*) FROM appliance_versions WHERE version = ?1",
                [&text],
            )?;
            if exists > 0 {
                return Err(StoreError::Conflict(format!("version {text} exists")));
            }
            conn.prepare_cached(
                "INSERT INTO appliance_versions (version, major, minor, revision, build, \
                 display_version, firmware_path, firmware_sha256, enabled, published_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(params![
                text,
                major,
                minor,
                revision,
                build,
                version.display_version,
                version.firmware_path,
                version.firmware_sha256,
                version.enabled,
                now
            ])?;
            Ok(ApplianceVersionView {
                version: text,
                display_version: version.display_version,
                firmware_path: version.firmware_path,
                firmware_sha256: version.firmware_sha256,
                enabled: version.enabled,
                published_at: now,
            })
        })
        .await
    }

    /// Enables or disables a firmware version; false when unknown.
    pub async fn set_appliance_version_enabled(
        &self,
        version: String,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write_single(move |ctx| {
            let changed = ctx
                .conn()
                .prepare_cached(
                    "UPDATE appliance_versions SET enabled = ?2, updated_at = ?3 WHERE version = ?1",
                )?
                .execute(params![version, enabled, now])?;
            Ok(changed == 1)
        })
        .await
    }

    /// A page of firmware versions (optionally only enabled ones).
    pub async fn list_appliance_versions(
        &self,
        enabled_only: bool,
        paging: Paging,
    ) -> Result<Page<ApplianceVersionView>, StoreError> {
        self.read(move |conn| {
            let filter = if enabled_only {
                "WHERE enabled = 1"
            } else {
                ""
            };
            let total = count(
                conn,
                &format!("SELECT count(*) FROM appliance_versions {filter}"),
                [],
            )?;
            let sql = format!(
                "SELECT {VERSION_COLUMNS} FROM appliance_versions {filter} {}",
                paging.clause("version")
            );
            let mut statement = conn.prepare(&sql)?;
            let items = statement
                .query_and_then([], decode_version)?
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Page { total, items })
        })
        .await
    }

    /// The newest enabled firmware version.
    pub async fn latest_appliance_version(
        &self,
    ) -> Result<Option<ApplianceVersionView>, StoreError> {
        self.read(latest_version).await
    }

    /// Publishes a service package (creating the service on its first
    /// version). Conflict when that version exists.
    pub async fn publish_service_version(
        &self,
        version: NewServiceVersion,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(move |ctx| publish_service_version(ctx.conn(), &version, now))
            .await
    }

    /// Enables or disables a service package; false when unknown.
    pub async fn set_service_version_enabled(
        &self,
        code: String,
        version: String,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write_single(move |ctx| {
            let changed = ctx
                .conn()
                .prepare_cached(
                    "UPDATE service_versions SET enabled = ?3, updated_at = ?4 \
                     WHERE service_code = ?1 AND version = ?2",
                )?
                .execute(params![code, version, enabled, now])?;
            Ok(changed == 1)
        })
        .await
    }

    /// A page of service packages, optionally of one service.
    pub async fn list_service_versions(
        &self,
        code: Option<String>,
        paging: Paging,
    ) -> Result<Page<ServiceVersionView>, StoreError> {
        self.read(move |conn| {
            let total = count(
                conn,
                "SELECT count(*) FROM service_versions WHERE ?1 IS NULL OR service_code = ?1",
                [&code],
            )?;
            let sql = format!(
                "SELECT {SERVICE_VERSION_COLUMNS} FROM service_versions v \
                 JOIN services s ON s.code = v.service_code \
                 WHERE ?1 IS NULL OR v.service_code = ?1 {}",
                paging.clause("v.version")
            );
            let mut statement = conn.prepare(&sql)?;
            let items = statement
                .query_and_then([&code], decode_service_version)?
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Page { total, items })
        })
        .await
    }

    /// An enabled service package (the newest when `version` is None).
    pub async fn service_version(
        &self,
        code: String,
        version: Option<String>,
    ) -> Result<Option<ServiceVersionView>, StoreError> {
        self.read(move |conn| service_version(conn, &code, version.as_deref()))
            .await
    }

    /// Every service with its name and newest enabled version (None when
    /// it has none), by code.
    pub async fn service_catalog(
        &self,
    ) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT s.code, s.name, (SELECT v.version FROM service_versions v \
                 WHERE v.service_code = s.code AND v.enabled = 1 \
                 ORDER BY v.v1 DESC, v.v2 DESC, v.v3 DESC, v.v4 DESC LIMIT 1) \
                 FROM services s ORDER BY s.code",
            )?;
            let mut rows = statement.query([])?;
            let mut services = Vec::new();
            while let Some(row) = rows.next()? {
                services.push((get(row, 0)?, get(row, 1)?, get(row, 2)?));
            }
            Ok(services)
        })
        .await
    }

    /// Creates a tag. Conflict when the name is taken.
    pub async fn create_tag(&self, name: String, now: i64) -> Result<TagId, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            if count(conn, "SELECT count(*) FROM tags WHERE name = ?1", [&name])? > 0 {
                return Err(StoreError::Conflict(format!("tag `{name}` exists")));
            }
            let id = TagId::new_random();
            conn.prepare_cached("INSERT INTO tags (id, name, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![id.to_string(), name, now])?;
            Ok(id)
        })
        .await
    }

    /// Puts a tag on appliances (already tagged ones stay as they are).
    /// None when the tag is unknown; unknown appliances fail the call.
    pub async fn assign_tag(
        &self,
        tag: TagId,
        appliances: Vec<ApplianceId>,
        now: i64,
    ) -> Result<Option<usize>, StoreError> {
        self.write(move |ctx| {
            let conn = ctx.conn();
            let tag = tag.to_string();
            if count(conn, "SELECT count(*) FROM tags WHERE id = ?1", [&tag])? == 0 {
                return Ok(None);
            }
            let unknown: Vec<ApplianceId> = appliances
                .iter()
                .copied()
                .filter(|a| !matches!(super::appliances::exists(conn, *a), Ok(true)))
                .collect();
            if !unknown.is_empty() {
                return Err(StoreError::UnknownAppliances(unknown));
            }
            let mut statement = conn.prepare_cached(
                "INSERT OR IGNORE INTO appliance_tags (tag_id, appliance_id, created_at) \
                 VALUES (?1, ?2, ?3)",
            )?;
            let mut added = 0;
            for appliance in &appliances {
                added += statement.execute(params![tag, appliance.to_string(), now])?;
            }
            Ok(Some(added))
        })
        .await
    }

    /// A page of tags with their appliance counts.
    pub async fn list_tags(&self, paging: Paging) -> Result<Page<TagView>, StoreError> {
        self.read(move |conn| {
            let total = count(conn, "SELECT count(*) FROM tags", [])?;
            let sql = format!(
                "SELECT t.id, t.name, t.created_at, (SELECT count(*) FROM appliance_tags x \
                 WHERE x.tag_id = t.id) AS appliances FROM tags t {}",
                paging.clause("t.id")
            );
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                items.push(TagView {
                    tag_id: parsed(row, 0, "tags.id")?,
                    name: get(row, 1)?,
                    created_at: get(row, 2)?,
                    appliances: int(row, 3, "tag count")?,
                });
            }
            Ok(Page { total, items })
        })
        .await
    }
}

fn publish_service_version(
    conn: &Connection,
    version: &NewServiceVersion,
    now: i64,
) -> Result<(), StoreError> {
    let exists = count(
        conn,
        "SELECT count(*) FROM service_versions WHERE service_code = ?1 AND version = ?2",
        [&version.service_code, &version.version],
    )?;
    if exists > 0 {
        return Err(StoreError::Conflict(format!(
            "{} {} exists",
            version.service_code, version.version
        )));
    }
    let name = version
        .service_name
        .clone()
        .unwrap_or_else(|| version.service_code.clone());
    conn.prepare_cached(
        "INSERT INTO services (code, name, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (code) DO UPDATE SET name = CASE WHEN ?4 THEN excluded.name ELSE name END",
    )?
    .execute(params![
        version.service_code,
        name,
        now,
        version.service_name.is_some()
    ])?;
    let [v1, v2, v3, v4] = version.parts;
    conn.prepare_cached(
        "INSERT INTO service_versions (service_code, version, v1, v2, v3, v4, branch, \
         image_path, image_sha256, request_cpu, request_memory, enabled, created_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
    )?
    .execute(params![
        version.service_code,
        version.version,
        v1,
        v2,
        v3,
        v4,
        version.branch,
        version.image_path,
        version.image_sha256,
        version.request_cpu,
        i64::try_from(version.request_memory).unwrap_or(i64::MAX),
        version.enabled,
        now
    ])?;
    Ok(())
}
