//! Downloads and uploads over HTTP, for the shell of one appliance.
//!
//! A [`Transfer`] is advanced by [`Transfer::step`], which is cancel-safe:
//! the runner polls it in a `select!` beside the MQTT event loop and may
//! drop the step future at any await without losing bytes, because the
//! request in flight and the response being read live in the transfer
//! itself. A download hashes as it reads (the file is not kept: the
//! simulator only needs its sha256), resumes with `Range: bytes=N-` from a
//! [`Checkpoint`] after an error or a simulated crash, stops on a refused
//! link (403: expired or altered) keeping what it received for a resume
//! with a fresh link, and is throttled to a rate for the slow-download
//! fault. An upload PUTs the body with its sha256 in `x-sha256`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use protocol::TaskId;
use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::{Client, Response, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::appliance::DownloadFailure;

/// Tries of one download in all (resuming each time) before it fails.
const DOWNLOAD_TRIES: u8 = 3;

/// What has been received of a download: the partial file on the
/// simulated disk (only its length and running hash are kept).
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Bytes received.
    pub offset: u64,
    hasher: Sha256,
}

/// What a step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferEvent {
    /// The server answered a ranged request with 206: the download goes on
    /// from `from` bytes instead of starting over.
    Resumed {
        /// Bytes already received.
        from: u64,
    },
    /// More bytes of the download arrived.
    Progress {
        /// Received so far.
        received: u64,
        /// Expected in all.
        total: u64,
    },
    /// The download ended (verified against its sha256 when `Ok`).
    Downloaded(Result<(), DownloadFailure>),
    /// The upload ended with this many bytes sent.
    Uploaded(Result<u64, String>),
}

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum Stage {
    Start,
    Requesting(Pending<reqwest::Result<Response>>),
    Reading(Response),
    Uploading(Pending<Result<u64, String>>),
    Done,
}

/// One transfer of one task.
pub struct Transfer {
    /// The task it belongs to.
    pub task_id: TaskId,
    http: Client,
    url: Url,
    size: u64,
    sha256: String,
    throttle: Option<u64>,
    checkpoint: Checkpoint,
    tries: u8,
    not_before: Option<Instant>,
    stage: Stage,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("task_id", &self.task_id)
            .field("url", &self.url.path())
            .field("offset", &self.checkpoint.offset)
            .finish()
    }
}

/// What a download needs besides the HTTP client.
#[derive(Debug, Clone)]
pub struct DownloadSpec {
    /// The task.
    pub task_id: TaskId,
    /// Absolute URL.
    pub url: Url,
    /// Expected size.
    pub size: u64,
    /// Expected lowercase hex sha256.
    pub sha256: String,
    /// Bytes per second, if throttled.
    pub throttle: Option<u64>,
}

impl Transfer {
    /// A download starting from `checkpoint` (default: from the start).
    pub fn download(http: Client, spec: DownloadSpec, checkpoint: Checkpoint) -> Self {
        Self {
            task_id: spec.task_id,
            http,
            url: spec.url,
            size: spec.size,
            sha256: spec.sha256,
            throttle: spec.throttle,
            checkpoint,
            tries: 0,
            not_before: None,
            stage: Stage::Start,
        }
    }

    /// An upload of `body` with PUT.
    pub fn upload(http: Client, task_id: TaskId, url: Url, body: Vec<u8>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&body));
        let request = http
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("x-sha256", sha256)
            .body(body.clone());
        let len = body.len() as u64;
        let sending: Pending<Result<u64, String>> = Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(len)
            } else {
                Err(format!("HTTP {}", response.status()))
            }
        });
        Self {
            task_id,
            http,
            url,
            size: len,
            sha256: String::new(),
            throttle: None,
            checkpoint: Checkpoint::default(),
            tries: 0,
            not_before: None,
            stage: Stage::Uploading(sending),
        }
    }

    /// What has been received so far (kept across a simulated crash).
    pub fn into_checkpoint(self) -> Checkpoint {
        self.checkpoint
    }

    /// Advances the transfer to its next event. Pending forever once done.
    pub async fn step(&mut self) -> TransferEvent {
        loop {
            if let Some(at) = self.not_before {
                tokio::time::sleep_until(at).await;
                self.not_before = None;
            }
            match &mut self.stage {
                Stage::Done => std::future::pending::<()>().await,
                Stage::Uploading(sending) => {
                    let result = sending.await;
                    self.stage = Stage::Done;
                    return TransferEvent::Uploaded(result);
                }
                Stage::Start if self.checkpoint.offset == self.size && self.size > 0 => {
                    // Everything arrived before the cut: only the check is left.
                    return self.finished();
                }
                Stage::Start => {
                    self.tries += 1;
                    let mut request = self.http.get(self.url.clone());
                    if self.checkpoint.offset > 0 {
                        request =
                            request.header(RANGE, format!("bytes={}-", self.checkpoint.offset));
                    }
                    self.stage = Stage::Requesting(Box::pin(request.send()));
                }
                Stage::Requesting(sending) => match sending.await {
                    Ok(response) => match self.accept(&response) {
                        Ok(resumed) => {
                            self.stage = Stage::Reading(response);
                            if resumed {
                                let from = self.checkpoint.offset;
                                return TransferEvent::Resumed { from };
                            }
                        }
                        Err(None) => {
                            self.stage = Stage::Done;
                            return TransferEvent::Downloaded(Err(DownloadFailure::Expired));
                        }
                        Err(Some(why)) => {
                            if let Some(done) = self.retry_or_fail(why) {
                                return done;
                            }
                        }
                    },
                    Err(e) => {
                        if let Some(done) = self.retry_or_fail(e.to_string()) {
                            return done;
                        }
                    }
                },
                Stage::Reading(response) => match response.chunk().await {
                    Ok(Some(bytes)) => return self.received(&bytes),
                    Ok(None) => return self.finished(),
                    Err(e) => {
                        if let Some(done) = self.retry_or_fail(e.to_string()) {
                            return done;
                        }
                    }
                },
            }
        }
    }

    /// Checks the status of a (ranged) response: `Ok(true)` when it
    /// resumes (206), `Ok(false)` when it sends the whole file (200: the
    /// checkpoint restarts), `Err(None)` when the link is refused (403),
    /// `Err(Some(why))` for anything else.
    fn accept(&mut self, response: &Response) -> Result<bool, Option<String>> {
        match response.status() {
            StatusCode::PARTIAL_CONTENT if self.checkpoint.offset > 0 => Ok(true),
            StatusCode::OK => {
                self.checkpoint = Checkpoint::default();
                Ok(false)
            }
            StatusCode::FORBIDDEN => Err(None),
            other => Err(Some(format!("HTTP {other}"))),
        }
    }

    fn received(&mut self, bytes: &[u8]) -> TransferEvent {
        self.checkpoint.hasher.update(bytes);
        self.checkpoint.offset += bytes.len() as u64;
        if let Some(rate) = self.throttle {
            let pause = Duration::from_secs_f64(bytes.len() as f64 / rate.max(1) as f64);
            self.not_before = Some(Instant::now() + pause);
        }
        if self.checkpoint.offset > self.size {
            self.stage = Stage::Done;
            let why = format!("more than the expected {} bytes", self.size);
            return TransferEvent::Downloaded(Err(DownloadFailure::Transfer(why)));
        }
        TransferEvent::Progress {
            received: self.checkpoint.offset,
            total: self.size,
        }
    }

    fn finished(&mut self) -> TransferEvent {
        self.stage = Stage::Done;
        if self.checkpoint.offset != self.size {
            let why = format!(
                "received {} bytes, expected {}",
                self.checkpoint.offset, self.size
            );
            return TransferEvent::Downloaded(Err(DownloadFailure::Transfer(why)));
        }
        let digest = hex::encode(self.checkpoint.hasher.clone().finalize());
        if digest == self.sha256 {
            TransferEvent::Downloaded(Ok(()))
        } else {
            TransferEvent::Downloaded(Err(DownloadFailure::Checksum))
        }
    }

    /// After a failed try: resume later, or give up with the reason.
    fn retry_or_fail(&mut self, why: String) -> Option<TransferEvent> {
        if self.tries >= DOWNLOAD_TRIES {
            self.stage = Stage::Done;
            return Some(TransferEvent::Downloaded(Err(DownloadFailure::Transfer(
                why,
            ))));
        }
        self.stage = Stage::Start;
        self.not_before = Some(Instant::now() + Duration::from_millis(500 * u64::from(self.tries)));
        None
    }
}
