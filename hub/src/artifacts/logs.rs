//! Log collection: the service behind a customer's "get me this
//! appliance's logs", and the receiving end of the appliance's upload.
//!
//! 1. [`LogService::request`] creates a collectLog job for one appliance.
//!    Its task carries `uploadPath`, a signed `PUT /uploads/logs/{taskId}`
//!    link (signed afresh each time the task is shown to the appliance).
//! 2. The appliance PUTs the archive ([`LogService::receive`]): streamed to
//!    `<data dir>/logs/`, size-limited, recorded against the task. A second
//!    upload replaces the first: its file is written under a new name, the
//!    task's row is switched to it in one transaction, then the old file is
//!    deleted; a download never sees half of either.
//! 3. [`LogService::status`] (or [`LogService::latest`] for an appliance)
//!    answers the task's state until the archive is in, then a signed
//!    `GET /logs/{taskId}` link to it.
//!
//! The customer-facing `/ui/appliances/{id}/log/` endpoint
//! ([`crate::api::ui_logs`]) is a thin layer over these calls: it scopes
//! the appliance to the caller's customer, then answers `latest`, or asks
//! through [`LogService::request_unless_open`], which answers the task
//! still waiting for its archive instead of creating a second one.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use protocol::{ApplianceId, ExecutionStatus, JobDocument, TaskId};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use super::blobs::{BlobDir, ReceiveError};
use super::signer::{self, UrlSigner};
use super::Sha256Digest;
use crate::clock::SharedClock;
use crate::jobs::{CreateJob, JobError, JobService};
use crate::model::{CustomerId, JobId};
use crate::store::{LogRecorded, LogTask, LogUpload, Store, StoreError, UPLOAD_PATH_PLACEHOLDER};

/// Why a log operation was refused or failed.
#[derive(Debug, Error)]
pub enum LogError {
    /// No collectLog task with this id.
    #[error("unknown log task")]
    NotFound,
    /// The task takes no upload in its state.
    #[error("the task is {0}: it takes no upload")]
    NotAccepting(ExecutionStatus),
    /// The archive's sha256 is not the declared one; nothing changed.
    #[error("the body's sha256 is {actual}, not the declared {declared}")]
    Sha256Mismatch {
        /// What the client said.
        declared: Sha256Digest,
        /// What it sent.
        actual: Sha256Digest,
    },
    /// Over `--max-log-size`; nothing changed.
    #[error("the archive exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The client's body broke off; nothing changed.
    #[error("{0}")]
    Body(String),
    /// Creating the collectLog job was refused (unknown appliance, bad
    /// window...).
    #[error(transparent)]
    Job(#[from] JobError),
    /// The disk failed.
    #[error("log file: {0}")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReceiveError> for LogError {
    fn from(err: ReceiveError) -> Self {
        match err {
            ReceiveError::TooLarge { limit } => Self::TooLarge { limit },
            ReceiveError::Body(cause) => Self::Body(cause),
            ReceiveError::Io(err) => Self::Io(err),
        }
    }
}

/// A collectLog task just created.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequested {
    /// Its job.
    pub job_id: JobId,
    /// The appliance's task (what `/ui/tasks/{taskId}` follows).
    pub task_id: TaskId,
    /// The document the appliance gets, `uploadPath` signed for this task.
    pub document: JobDocument,
}

/// Where a log task stands for the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum LogStatus {
    /// The archive is in: download it from `downloadUrl` (signed, expiring).
    #[serde(rename_all = "camelCase")]
    Uploaded {
        /// Signed `GET /logs/{taskId}` link.
        download_url: String,
        /// Archive size in bytes.
        size: u64,
        /// Archive sha256.
        #[schema(value_type = String)]
        sha256: Sha256Digest,
        /// When it came in, epoch ms.
        uploaded_at: i64,
        /// The task's own state (the appliance may report after uploading).
        #[schema(value_type = String)]
        status: ExecutionStatus,
    },
    /// Not uploaded yet; the task's state.
    #[serde(rename_all = "camelCase")]
    Pending {
        /// QUEUED, SENT, IN_PROGRESS, or a terminal state without archive.
        #[schema(value_type = String)]
        status: ExecutionStatus,
    },
}

/// A log task and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogTaskView {
    /// The task.
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// Its job.
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Its appliance (check it is the caller's before answering).
    #[schema(value_type = String)]
    pub appliance_id: ApplianceId,
    /// Where it stands.
    #[serde(flatten)]
    pub status: LogStatus,
}

impl LogTaskView {
    /// Still running and without archive: asking again should wait for
    /// this one.
    pub fn is_open(&self) -> bool {
        matches!(self.status, LogStatus::Pending { status } if !status.is_terminal())
    }
}

/// What a request for an appliance's logs came to.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRequest {
    /// A new collectLog task.
    Created(LogRequested),
    /// The appliance's task that is still waiting for its archive.
    Open(LogTaskView),
}

/// Log collection for the REST layers.
#[derive(Clone)]
pub struct LogService {
    store: Store,
    jobs: JobService,
    signer: Arc<UrlSigner>,
    files: BlobDir,
    clock: SharedClock,
    max_size: u64,
    /// Held by [`LogService::request_unless_open`] from its check to the
    /// task's creation.
    requesting: Arc<Mutex<()>>,
}

impl std::fmt::Debug for LogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogService")
            .field("files", &self.files)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl LogService {
    /// The service over `<data_dir>/logs/` (created, and cleared of a
    /// crash's temporary files).
    pub fn open(
        data_dir: &std::path::Path,
        store: Store,
        jobs: JobService,
        signer: Arc<UrlSigner>,
        clock: SharedClock,
        max_size: u64,
    ) -> std::io::Result<Self> {
        Ok(Self {
            store,
            jobs,
            signer,
            files: BlobDir::open(&data_dir.join("logs"))?,
            clock,
            max_size,
            requesting: Arc::new(Mutex::new(())),
        })
    }

    /// Largest archive accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Asks `appliance` for its logs between `start` and `end` (epoch ms):
    /// creates a collectLog job for it alone (of `customer`'s appliances
    /// when given), released by the scheduler like any job.
    pub async fn request(
        &self,
        appliance: ApplianceId,
        customer: Option<CustomerId>,
        start: i64,
        end: i64,
    ) -> Result<LogRequested, LogError> {
        let document = JobDocument::CollectLog {
            start,
            end,
            upload_path: UPLOAD_PATH_PLACEHOLDER.to_owned(),
        };
        let job_id = self
            .jobs
            .create(CreateJob {
                customer_id: customer,
                document,
                targets: vec![appliance],
            })
            .await?;
        let page = self.store.list_executions(job_id, None, 0, 1).await?;
        let task_id = page
            .and_then(|p| p.items.into_iter().next())
            .map(|e| e.task_id)
            .ok_or_else(|| StoreError::Corrupt(format!("job {job_id} has no execution")))?;
        let document = JobDocument::CollectLog {
            start,
            end,
            upload_path: self.signer.url(&signer::log_upload_path(&task_id)),
        };
        Ok(LogRequested {
            job_id,
            task_id,
            document,
        })
    }

    /// [`LogService::request`], unless the appliance's latest collectLog
    /// task is still open and has no archive yet: then that task, as the
    /// original backend answered a repeated request. The window is checked
    /// either way. Requests go one at a time through here, so two at once
    /// create one task (jobs created elsewhere, by operators, are not
    /// serialized with these).
    pub async fn request_unless_open(
        &self,
        appliance: ApplianceId,
        customer: Option<CustomerId>,
        start: i64,
        end: i64,
    ) -> Result<LogRequest, LogError> {
        let window = JobDocument::CollectLog {
            start,
            end,
            upload_path: UPLOAD_PATH_PLACEHOLDER.to_owned(),
        };
        window.validate().map_err(JobError::from)?;
        let _one_at_a_time = self.requesting.lock().await;
        if let Some(open) = self.latest(appliance).await?.filter(LogTaskView::is_open) {
            return Ok(LogRequest::Open(open));
        }
        let created = self.request(appliance, customer, start, end).await?;
        Ok(LogRequest::Created(created))
    }

    /// Where a collectLog task stands: its download link once uploaded.
    pub async fn status(&self, task_id: &TaskId) -> Result<LogTaskView, LogError> {
        let task = self.store.log_task(task_id).await?;
        task.map(|t| self.view(t)).ok_or(LogError::NotFound)
    }

    /// The appliance's newest collectLog task, if it has one.
    pub async fn latest(&self, appliance: ApplianceId) -> Result<Option<LogTaskView>, LogError> {
        let task = self.store.latest_log_task(appliance).await?;
        Ok(task.map(|t| self.view(t)))
    }

    fn view(&self, task: LogTask) -> LogTaskView {
        let status = match task.upload {
            Some(upload) => LogStatus::Uploaded {
                download_url: self.signer.url(&signer::log_download_path(&task.task_id)),
                size: upload.size,
                sha256: upload.sha256,
                uploaded_at: upload.uploaded_at,
                status: task.status,
            },
            None => LogStatus::Pending {
                status: task.status,
            },
        };
        LogTaskView {
            task_id: task.task_id,
            job_id: task.job_id,
            appliance_id: task.appliance_id,
            status,
        }
    }

    /// Receives an appliance's archive for `task_id` (its link checked by
    /// the caller), replacing any earlier one. Refused uploads change
    /// nothing and leave no file.
    pub async fn receive<S, E>(
        &self,
        task_id: &TaskId,
        declared: Option<Sha256Digest>,
        body: S,
    ) -> Result<LogUpload, LogError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Refuse early what the task's state refuses anyway (checked
        // again, in the transaction, when recording).
        let task = self
            .store
            .log_task(task_id)
            .await?
            .ok_or(LogError::NotFound)?;
        if !crate::store::accepts_upload(task.status) {
            return Err(LogError::NotAccepting(task.status));
        }
        let received = self.files.receive(body, self.max_size).await?;
        if let Some(declared) = declared {
            if declared != received.sha256 {
                return Err(LogError::Sha256Mismatch {
                    declared,
                    actual: received.sha256.clone(),
                });
            }
        }
        let upload = LogUpload {
            sha256: received.sha256.clone(),
            size: received.size,
            uploaded_at: self.clock.now(),
        };
        let name = file_name(task_id, &upload.sha256);
        received.persist(&self.files, &name).await?;
        let recorded = self.store.record_log_upload(task_id, upload.clone()).await;
        let replaced = match recorded {
            Ok(LogRecorded::Recorded { replaced }) => replaced,
            Ok(refused) => {
                self.discard(task_id, &upload.sha256, task.upload.as_ref())
                    .await;
                return Err(match refused {
                    LogRecorded::Refused(status) => LogError::NotAccepting(status),
                    _ => LogError::NotFound,
                });
            }
            Err(err) => {
                self.discard(task_id, &upload.sha256, task.upload.as_ref())
                    .await;
                return Err(err.into());
            }
        };
        if let Some(old) = replaced.filter(|old| *old != upload.sha256) {
            remove_quietly(self.files.path(&file_name(task_id, &old))).await;
        }
        Ok(upload)
    }

    /// Deletes the file of a refused upload, unless it is the very file
    /// the task already had (the same bytes uploaded again).
    async fn discard(&self, task_id: &TaskId, sha256: &Sha256Digest, kept: Option<&LogUpload>) {
        if kept.is_some_and(|k| k.sha256 == *sha256) {
            return;
        }
        remove_quietly(self.files.path(&file_name(task_id, sha256))).await;
    }

    /// The uploaded archive of a task and its file.
    pub async fn archive(&self, task_id: &TaskId) -> Result<(LogUpload, PathBuf), LogError> {
        let task = self
            .store
            .log_task(task_id)
            .await?
            .ok_or(LogError::NotFound)?;
        let upload = task.upload.ok_or(LogError::NotFound)?;
        let path = self.files.path(&file_name(task_id, &upload.sha256));
        Ok((upload, path))
    }

    /// The link signer (uploads and downloads check their links with it).
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }
}

/// `<taskId>-<sha256>`: each version of a task's archive has its own file.
fn file_name(task_id: &TaskId, sha256: &Sha256Digest) -> String {
    format!("{task_id}-{sha256}")
}

async fn remove_quietly(path: PathBuf) {
    if let Err(err) = tokio::fs::remove_file(&path).await {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "removing a log archive failed");
        }
    }
}
