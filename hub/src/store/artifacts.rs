//! The `artifacts` table: the catalogue of the content-addressed artifact
//! store (the files themselves live under `<data dir>/artifacts/`, managed
//! by [`crate::artifacts`]).

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::row::{get, int, parsed, sql_count};
use super::{Page, Store, StoreError};
use crate::artifacts::{FileName, Sha256Digest};

/// One artifact: a file in the hub's store, or a file elsewhere that
/// appliances download from its registered URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Identity and checksum: sha256 of the whole file.
    #[schema(value_type = String)]
    pub sha256: Sha256Digest,
    /// The name it is downloaded as.
    #[schema(value_type = String)]
    pub name: FileName,
    /// Bytes.
    pub size: u64,
    /// `Content-Type` served with it.
    pub content_type: String,
    /// Where an external artifact is; None for a file in this hub's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// When it was added, epoch ms.
    pub created_at: i64,
}

impl Artifact {
    /// True for a file this hub serves itself.
    pub fn is_local(&self) -> bool {
        self.external_url.is_none()
    }
}

/// The order of an artifact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ArtifactSort {
    /// By creation time (then digest).
    #[default]
    CreatedAt,
    /// By name (then digest).
    Name,
    /// By size (then digest).
    Size,
}

/// A page request of the artifact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactQuery {
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return.
    pub limit: usize,
    /// Sort key.
    pub sort: ArtifactSort,
    /// Newest (largest) first.
    pub descending: bool,
}

const COLUMNS: &str = "sha256, name, size, content_type, external_url, created_at";

fn decode(row: &Row<'_>) -> Result<Artifact, StoreError> {
    Ok(Artifact {
        sha256: parsed(row, 0, "artifacts.sha256")?,
        name: parsed(row, 1, "artifacts.name")?,
        size: int(row, 2, "artifacts.size")?,
        content_type: get(row, 3)?,
        external_url: get(row, 4)?,
        created_at: get(row, 5)?,
    })
}

/// One artifact by digest.
pub(crate) fn get_artifact(
    conn: &Connection,
    sha256: &Sha256Digest,
) -> Result<Option<Artifact>, StoreError> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {COLUMNS} FROM artifacts WHERE sha256 = ?1"));
    let mut statement = conn.prepare_cached(&SQL)?;
    let mut rows = statement.query([sha256.as_str()])?;
    rows.next()?.map(decode).transpose()
}

/// Inserts `artifact` unless its digest is known. Returns the row as it
/// is now and whether it was inserted.
fn insert(conn: &Connection, artifact: &Artifact) -> Result<(Artifact, bool), StoreError> {
    let size = i64::try_from(artifact.size)
        .map_err(|_| StoreError::Corrupt("artifact size out of range".into()))?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO artifacts (sha256, name, size, content_type, external_url, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sha256) DO NOTHING",
        )?
        .execute(params![
            artifact.sha256.as_str(),
            artifact.name.as_str(),
            size,
            artifact.content_type,
            artifact.external_url,
            artifact.created_at,
        ])?;
    let row = get_artifact(conn, &artifact.sha256)?
        .ok_or_else(|| StoreError::Corrupt("artifact vanished in its transaction".into()))?;
    Ok((row, inserted == 1))
}

fn list(conn: &Connection, query: ArtifactQuery) -> Result<Page<Artifact>, StoreError> {
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM artifacts")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let key = match query.sort {
        ArtifactSort::CreatedAt => "created_at",
        ArtifactSort::Name => "name",
        ArtifactSort::Size => "size",
    };
    let direction = if query.descending { "DESC" } else { "ASC" };
    // The key and direction come from the enums above, never from input.
    let sql = format!(
        "SELECT {COLUMNS} FROM artifacts ORDER BY {key} {direction}, sha256 {direction} \
         LIMIT ?1 OFFSET ?2"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let items = statement
        .query_and_then(
            params![sql_count(query.limit), sql_count(query.offset)],
            decode,
        )?
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page {
        total: u64::try_from(total).unwrap_or(0),
        items,
    })
}

impl Store {
    /// Adds an artifact to the catalogue unless one with its digest is
    /// there. Returns the catalogue's row and whether this call added it.
    pub async fn insert_artifact(
        &self,
        artifact: Artifact,
    ) -> Result<(Artifact, bool), StoreError> {
        self.write(move |ctx| insert(ctx.conn(), &artifact)).await
    }

    /// One artifact by digest.
    pub async fn artifact(&self, sha256: &Sha256Digest) -> Result<Option<Artifact>, StoreError> {
        let sha256 = sha256.clone();
        self.read(move |conn| get_artifact(conn, &sha256)).await
    }

    /// A page of the catalogue, with the total count.
    pub async fn list_artifacts(&self, query: ArtifactQuery) -> Result<Page<Artifact>, StoreError> {
        self.read(move |conn| list(conn, query)).await
    }
}
