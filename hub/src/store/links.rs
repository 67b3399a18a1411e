//! The per-task parts of a task document that are not stored with the job:
//! the `jobFile` of a task that downloads (its artifact looked up here, in
//! the caller's transaction or read, its URL signed by a [`TaskLinks`]
//! handed to the store at open) and the signed `uploadPath` of a
//! collectLog task. Both are built afresh each time a task is shown to an
//! appliance: in the notify saved at release, and in get `$next` / by-id.

use std::collections::HashMap;

use protocol::document::SignMethod;
use protocol::message::Task;
use protocol::{ExecutionStatus, JobDocument, JobFile, TaskId};
use rusqlite::Connection;

use super::artifacts::{self, Artifact};
use super::StoreError;
use crate::artifacts::Sha256Digest;

/// Signs the URLs a task carries. The store finds what to sign; this
/// decides the URL (base, path, expiry from its own clock, signature).
pub trait TaskLinks: Send + Sync + 'static {
    /// Where an appliance downloads `artifact`, valid from now on for the
    /// signer's lifetime of a link; an external artifact's own URL.
    fn download_url(&self, artifact: &Artifact) -> String;
    /// Where the appliance running `task` uploads its log archive.
    fn log_upload_url(&self, task: &TaskId) -> String;
}

/// What the `uploadPath` of a collectLog job is stored as: each task gets
/// its own signed URL in its place when it is shown to its appliance.
pub const UPLOAD_PATH_PLACEHOLDER: &str = "/uploads/logs/{taskId}";

/// Attaches links to tasks, looking each artifact up once.
pub(crate) struct Resolver<'a> {
    conn: &'a Connection,
    links: Option<&'a dyn TaskLinks>,
    artifacts: HashMap<String, Option<Artifact>>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(conn: &'a Connection, links: Option<&'a dyn TaskLinks>) -> Self {
        Self {
            conn,
            links,
            artifacts: HashMap::new(),
        }
    }

    /// Sets the task's `jobFile` (only while SENT or IN_PROGRESS, as
    /// topics.md says) and a collectLog task's `uploadPath`. Without links
    /// (a store opened bare, in tests) the task is left as stored.
    pub(crate) fn attach(&mut self, task: &mut Task) -> Result<(), StoreError> {
        let Some(links) = self.links else {
            return Ok(());
        };
        if let JobDocument::CollectLog { upload_path, .. } = &mut task.job_document {
            *upload_path = links.log_upload_url(&task.task_id);
        }
        let downloading = matches!(
            task.status,
            ExecutionStatus::Sent | ExecutionStatus::InProgress
        );
        task.job_file = None;
        let Some(digest) = downloads(&task.job_document).filter(|_| downloading) else {
            return Ok(());
        };
        let artifact = match self.artifacts.get(digest) {
            Some(found) => found.clone(),
            None => {
                let found = match digest.parse::<Sha256Digest>() {
                    Ok(sha) => artifacts::get_artifact(self.conn, &sha)?,
                    Err(_) => None,
                };
                self.artifacts.insert(digest.to_owned(), found.clone());
                found
            }
        };
        match artifact {
            Some(artifact) => {
                task.job_file = Some(JobFile {
                    sign_method: SignMethod::Sha256,
                    sign: artifact.sha256.to_string(),
                    file_url: links.download_url(&artifact),
                    file_size: artifact.size,
                });
            }
            None => tracing::warn!(
                task = %task.task_id,
                sha256 = digest,
                "the artifact of a task is unknown; the task goes out without a jobFile"
            ),
        }
        Ok(())
    }
}

/// The sha256 of the file a document downloads, if it downloads one.
pub fn downloads(document: &JobDocument) -> Option<&str> {
    match document {
        JobDocument::UpgradeAppliance {
            firmware_sha256, ..
        } => Some(firmware_sha256),
        JobDocument::InstallService(package) | JobDocument::UpgradeService(package) => {
            Some(&package.image_sha256)
        }
        _ => None,
    }
}
