//! The artifact store: firmware images and service packages that
//! appliances download, and the log archives they upload.
//!
//! - Artifacts are content-addressed: a file under `<data dir>/artifacts/`
//!   named by its sha256, catalogued in the store's `artifacts` table, or
//!   an external URL registered with its sha256 and size.
//! - Operators upload with a streamed body ([`ArtifactService::upload`]):
//!   sha256 and size are computed while the bytes go to a temporary file,
//!   a declared sha256 that differs refuses the upload, and a size limit
//!   stops it; nothing is left behind by a refused upload.
//! - Appliances download over signed, expiring links ([`signer`]) with
//!   Range requests ([`range`]); the links in their tasks are signed by
//!   [`Links`], handed to the store (which finds the artifact of a task in
//!   the transaction that releases it).
//! - Log archives of collectLog tasks: [`logs::LogService`].
//!
//! Layout: `ids` (digest and file name), `signer`, `range`, `blobs`
//! (temporary files, atomic persist), `logs`; this file holds the service
//! operators use.

pub mod blobs;
pub mod ids;
pub mod logs;
pub mod range;
pub mod signer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use protocol::TaskId;
use thiserror::Error;

pub use ids::{FileName, NameError, Sha256Digest};
pub use signer::{LinkError, UrlSigner};

use crate::clock::SharedClock;
use crate::store::{Artifact, ArtifactQuery, Page, Store, StoreError, TaskLinks};
use blobs::{BlobDir, ReceiveError};

/// Default `--max-artifact-size`: 2 GiB.
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 2 << 30;
/// Default `--max-log-size`: 256 MiB.
pub const DEFAULT_MAX_LOG_SIZE: u64 = 256 << 20;
/// `Content-Type` of an artifact uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Why an artifact operation was refused or failed.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// The body's sha256 is not the declared one; nothing was kept.
    #[error("the body's sha256 is {actual}, not the declared {declared}")]
    Sha256Mismatch {
        /// What the client said.
        declared: Sha256Digest,
        /// What it sent.
        actual: Sha256Digest,
    },
    /// Over the size limit; nothing was kept.
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The client's body broke off; nothing was kept.
    #[error("{0}")]
    Body(String),
    /// No such artifact (or not one this hub serves itself).
    #[error("unknown artifact")]
    NotFound,
    /// The digest is catalogued already, differently.
    #[error("{0}")]
    Conflict(String),
    /// The disk failed.
    #[error("artifact file: {0}")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReceiveError> for ArtifactError {
    fn from(err: ReceiveError) -> Self {
        match err {
            ReceiveError::TooLarge { limit } => Self::TooLarge { limit },
            ReceiveError::Body(cause) => Self::Body(cause),
            ReceiveError::Io(err) => Self::Io(err),
        }
    }
}

/// Settings of the artifact store and its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSettings {
    /// Base of every link (`http://host:port`), without a trailing slash.
    pub public_url: String,
    /// How long a link is valid, seconds.
    pub link_ttl_secs: u64,
    /// Largest artifact upload, bytes.
    pub max_artifact_size: u64,
    /// Largest log archive, bytes.
    pub max_log_size: u64,
}

/// What an operator declares with an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// The name it will be downloaded as.
    pub name: FileName,
    /// The sha256 the body must have, if declared.
    pub sha256: Option<Sha256Digest>,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// An artifact kept elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInfo {
    /// The name it is known by.
    pub name: FileName,
    /// An `http://` or `https://` URL appliances download it from.
    pub url: String,
    /// Its sha256.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// Signs the links of tasks: handed to [`Store::open_with_links`].
#[derive(Debug, Clone)]
pub struct Links(pub Arc<UrlSigner>);

impl TaskLinks for Links {
    fn download_url(&self, artifact: &Artifact) -> String {
        match &artifact.external_url {
            Some(url) => url.clone(),
            None => self
                .0
                .url(&signer::artifact_path(&artifact.sha256, &artifact.name)),
        }
    }

    fn log_upload_url(&self, task: &TaskId) -> String {
        self.0.url(&signer::log_upload_path(task))
    }
}

impl std::fmt::Debug for ArtifactService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactService")
            .field("blobs", &self.blobs)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// Operators' artifact operations, and the files downloads read.
#[derive(Clone)]
pub struct ArtifactService {
    store: Store,
    blobs: BlobDir,
    signer: Arc<UrlSigner>,
    clock: SharedClock,
    max_size: u64,
}

impl ArtifactService {
    /// The service over `<data_dir>/artifacts/` (created, and cleared of
    /// a crash's temporary files).
    pub fn open(
        data_dir: &Path,
        store: Store,
        signer: Arc<UrlSigner>,
        clock: SharedClock,
        max_size: u64,
    ) -> std::io::Result<Self> {
        Ok(Self {
            store,
            blobs: BlobDir::open(&data_dir.join("artifacts"))?,
            signer,
            clock,
            max_size,
        })
    }

    /// The link signer (downloads check their links with it).
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Largest upload accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Receives an artifact's bytes, checks them against the declared
    /// sha256, moves the file to its digest's name and catalogues it.
    /// Uploading bytes that are catalogued already keeps the first entry
    /// (its name and type) and answers it with `false`.
    pub async fn upload<S, E>(
        &self,
        info: UploadInfo,
        body: S,
    ) -> Result<(Artifact, bool), ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_content_type(&info.content_type)?;
        let received = self.blobs.receive(body, self.max_size).await?;
        if let Some(declared) = info.sha256 {
            if declared != received.sha256 {
                return Err(ArtifactError::Sha256Mismatch {
                    declared,
                    actual: received.sha256.clone(),
                });
            }
        }
        let sha256 = received.sha256.clone();
        if let Some(known) = self.store.artifact(&sha256).await? {
            return match known.external_url {
                Some(_) => Err(ArtifactError::Conflict(format!(
                    "artifact {sha256} is registered as external"
                ))),
                None => Ok((known, false)),
            };
        }
        let artifact = Artifact {
            sha256: sha256.clone(),
            name: info.name,
            size: received.size,
            content_type: info.content_type,
            external_url: None,
            created_at: self.clock.now(),
        };
        received.persist(&self.blobs, sha256.as_str()).await?;
        // Same bytes, same file: a concurrent upload of them is harmless.
        Ok(self.store.insert_artifact(artifact).await?)
    }

    /// Catalogues an artifact kept at an external URL. Registering the
    /// same one again answers the entry with `false`.
    pub async fn register_external(
        &self,
        info: ExternalInfo,
    ) -> Result<(Artifact, bool), ArtifactError> {
        check_content_type(&info.content_type)?;
        check_url(&info.url)?;
        let artifact = Artifact {
            sha256: info.sha256,
            name: info.name,
            size: info.size,
            content_type: info.content_type,
            external_url: Some(info.url),
            created_at: self.clock.now(),
        };
        let (known, created) = self.store.insert_artifact(artifact.clone()).await?;
        let same = known.external_url == artifact.external_url && known.size == artifact.size;
        if !created && !same {
            return Err(ArtifactError::Conflict(format!(
                "artifact {} is registered already with another url or size",
                known.sha256
            )));
        }
        Ok((known, created))
    }

    /// One artifact.
    pub async fn get(&self, sha256: &Sha256Digest) -> Result<Artifact, ArtifactError> {
        self.store
            .artifact(sha256)
            .await?
            .ok_or(ArtifactError::NotFound)
    }

    /// A page of the catalogue.
    pub async fn list(&self, query: ArtifactQuery) -> Result<Page<Artifact>, ArtifactError> {
        Ok(self.store.list_artifacts(query).await?)
    }

    /// A freshly signed link to the artifact (its own URL if external).
    pub fn download_url(&self, artifact: &Artifact) -> String {
        Links(Arc::clone(&self.signer)).download_url(artifact)
    }

    /// The file of an artifact this hub serves.
    pub async fn local_file(
        &self,
        sha256: &Sha256Digest,
    ) -> Result<(Artifact, PathBuf), ArtifactError> {
        let artifact = self.get(sha256).await?;
        if !artifact.is_local() {
            return Err(ArtifactError::NotFound);
        }
        let path = self.blobs.path(artifact.sha256.as_str());
        Ok((artifact, path))
    }
}

/// A `Content-Type` worth serving back: 1-128 visible ASCII characters.
fn check_content_type(value: &str) -> Result<(), ArtifactError> {
    let ok = (1..=128).contains(&value.len()) && value.bytes().all(|b| (b' '..=b'~').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::Invalid(
            "contentType: expected 1-128 visible ASCII characters".into(),
        ))
    }
}

/// An external URL that fits a task's `fileUrl`: http(s), at most 1024
/// bytes, no spaces or control characters.
fn check_url(url: &str) -> Result<(), ArtifactError> {
    let scheme = url.starts_with("https://") || url.starts_with("http://");
    let ok = scheme && url.len() <= 1024 && url.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::Invalid(
            "url: expected an http:// or https:// URL of at most 1024 characters without spaces"
                .into(),
        ))
    }
}
