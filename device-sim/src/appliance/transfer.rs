//! Downloads and uploads, from the decision side: what to fetch or send,
//! progress turned into IN_PROGRESS reports, the crash fault cutting a
//! download, and what a finished transfer means for the task. The bytes
//! themselves move in the shell ([`crate::transfer`]).

use protocol::{JobFile, TaskId};
use serde_json::{json, Map};

use super::task::{progress, Phase};
use super::{Action, Appliance, Now, Offline, Record};
use crate::fault::TaskFate;

/// A download the shell must run: GET with `Range` from where it stopped,
/// sha256 over the whole file, progress reported back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The task it belongs to.
    pub task_id: TaskId,
    /// Where (absolute, or a path on the hub).
    pub url: String,
    /// Expected size in bytes.
    pub size: u64,
    /// Expected lowercase hex sha256.
    pub sha256: String,
    /// Continue from the bytes already received (after a crash).
    pub resume: bool,
    /// Throttle to this many bytes per second (slow-download fault).
    pub throttle: Option<u64>,
}

/// An upload the shell must run: PUT `body` to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The task it belongs to.
    pub task_id: TaskId,
    /// Where (absolute, or a path on the hub).
    pub url: String,
    /// The generated log.
    pub body: Vec<u8>,
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadFailure {
    /// Complete, but the sha256 differs from the expected one.
    Checksum,
    /// Anything else (HTTP status, network, size), after the shell's retries.
    Transfer(String),
}

impl Appliance {
    /// The download of the current task progressed.
    pub fn on_download_progress(
        &mut self,
        task: &TaskId,
        received: u64,
        total: u64,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let reboot_ms = self.behaviour.reboot_ms;
        let Some(exec) = self.current.as_mut().filter(|e| e.task.task_id == *task) else {
            return;
        };
        let Phase::Downloading { reported, .. } = exec.phase else {
            return;
        };
        let percent = (received.saturating_mul(100) / total.max(1)).min(100) as u8;
        if exec.fate.crash_at_percent.is_some_and(|at| percent >= at) {
            exec.fate.crash_at_percent = None;
            exec.phase = Phase::Downloading {
                reported,
                interrupted: true,
            };
            self.connected = false;
            out.push(Action::GoOffline {
                reason: Offline::Crash,
                for_ms: reboot_ms,
            });
            return out.push(Action::Record(Record::Crash));
        }
        let step = 10 + percent / 10 * 7;
        if step >= reported + 10 {
            exec.phase = Phase::Downloading {
                reported: step,
                interrupted: false,
            };
            let mut report = progress(task, step, "download", now.mono);
            if let Some(details) = report.params.status_details.as_mut() {
                details.insert("downloadedBytes".into(), received.to_string());
            }
            self.queue_report(report, out);
        }
        self.flush(now, out);
    }

    /// The download of the current task ended (checksum already verified).
    pub fn on_download_done(
        &mut self,
        task: &TaskId,
        result: Result<(), DownloadFailure>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.current_task() != Some(task) || self.forgotten {
            return;
        }
        match result {
            Ok(()) => self.finish(Map::new(), now, out),
            Err(failure) => {
                let message = match failure {
                    DownloadFailure::Checksum => {
                        out.push(Action::Record(Record::ChecksumMismatch));
                        "sha256 of the download does not match".to_owned()
                    }
                    DownloadFailure::Transfer(why) => format!("download failed: {why}"),
                };
                self.fail_current(message, now, out);
            }
        }
        self.flush(now, out);
    }

    /// The log upload of the current task ended.
    pub fn on_upload_done(
        &mut self,
        task: &TaskId,
        result: Result<u64, String>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.current_task() != Some(task) || self.forgotten {
            return;
        }
        match result {
            Ok(bytes) => {
                let mut extra = Map::new();
                extra.insert("uploadedBytes".into(), json!(bytes));
                self.finish(extra, now, out);
            }
            Err(why) => self.fail_current(format!("log upload failed: {why}"), now, out),
        }
        self.flush(now, out);
    }
}

pub(super) fn download(task: &TaskId, file: &JobFile, fate: &TaskFate, resume: bool) -> Download {
    Download {
        task_id: task.clone(),
        url: file.file_url.clone(),
        size: file.file_size,
        sha256: file.sign.clone(),
        resume,
        throttle: fate.throttle,
    }
}

/// A deterministic log of the requested period: 64 lines, about 5 KiB.
pub(super) fn generate_log(appliance: &str, start: i64, end: i64) -> Vec<u8> {
    const LINES: i64 = 64;
    let step = (end - start) / LINES;
    let mut log = String::with_capacity(90 * LINES as usize);
    for line in 0..LINES {
        let at = start + step * line;
        let level = if line % 16 == 15 { "WARN" } else { "INFO" };
        log.push_str(&format!(
            "{at} {appliance} {level} agent: simulated log line {line}\n"
        ));
    }
    log.into_bytes()
}
