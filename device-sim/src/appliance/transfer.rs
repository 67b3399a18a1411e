//! Downloads and uploads, from the decision side: what to fetch or send,
//! progress turned into IN_PROGRESS reports, the crash fault cutting a
//! download, an expired link (403) replaced by asking for the task again
//! (topics.md 3), and what a finished transfer means for the task. The
//! bytes themselves move in the shell ([`crate::transfer`]).

use protocol::message::{GetTarget, Task};
use protocol::{JobFile, ReplyCode, TaskId};
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
    /// The link expired or was refused (403); what was received is kept
    /// for a resume with a fresh link.
    Expired,
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
            Err(DownloadFailure::Expired) => self.refresh_link(now, out),
            Err(DownloadFailure::Checksum) => {
                out.push(Action::Record(Record::ChecksumMismatch));
                let message = "sha256 of the download does not match".to_owned();
                self.fail_current(message, now, out);
            }
            Err(DownloadFailure::Transfer(why)) => {
                self.fail_current(format!("download failed: {why}"), now, out)
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

impl Appliance {
    /// The current download's link expired: ask for the task by id (now,
    /// or when connected again) and resume with the fresh link.
    fn refresh_link(&mut self, now: Now, out: &mut Vec<Action>) {
        let Some(exec) = self.current.as_mut() else {
            return;
        };
        let reported = match exec.phase {
            Phase::Downloading { reported, .. } => reported,
            _ => return,
        };
        exec.phase = Phase::Refreshing { reported };
        let task = exec.task.task_id.clone();
        if self.connected {
            self.send_get(GetTarget::Task(task), now, out);
        }
    }

    /// The task whose download waits for a fresh link, if any.
    pub(super) fn refreshing_task(&self) -> Option<TaskId> {
        self.current
            .as_ref()
            .filter(|e| matches!(e.phase, Phase::Refreshing { .. }))
            .map(|e| e.task.task_id.clone())
    }

    /// Keeps the download link of `task` (the current task, shown again).
    pub(super) fn take_fresh_link(&mut self, task: Task) {
        let exec = self
            .current
            .as_mut()
            .filter(|e| e.task.task_id == task.task_id);
        if let (Some(exec), Some(file)) = (exec, task.job_file) {
            exec.task.job_file = Some(file);
        }
    }

    /// The answer to the get by id of the current task: resume the
    /// download with its fresh link, or stop if the hub has finished it.
    pub(super) fn on_fresh_task(&mut self, task: Task, now: Now, out: &mut Vec<Action>) {
        if task.status.is_terminal() {
            self.abandon(&task.task_id, now, out);
            return;
        }
        let id = task.task_id.clone();
        self.take_fresh_link(task);
        let Some(exec) = self.current.as_mut().filter(|e| e.task.task_id == id) else {
            return;
        };
        let Phase::Refreshing { reported } = exec.phase else {
            return;
        };
        let Some(file) = &exec.task.job_file else {
            return self.fail_current("no download link for the task".into(), now, out);
        };
        out.push(Action::Download(download(&id, file, &exec.fate, true)));
        exec.phase = Phase::Downloading {
            reported,
            interrupted: false,
        };
        out.push(Action::Record(Record::LinkRefreshed));
    }

    /// No fresh link came (`code`): 404 means the hub forgot the task,
    /// anything else fails it.
    pub(super) fn give_up_refresh(
        &mut self,
        task: &TaskId,
        code: ReplyCode,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.refreshing_task().as_ref() != Some(task) {
            return;
        }
        if code == ReplyCode::NotFound {
            self.abandon(task, now, out);
        } else {
            self.fail_current("download link expired, no fresh one".into(), now, out);
        }
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

/// The log an appliance uploads for collectLog: deterministic for its id
/// and the requested period, 64 lines, about 5 KiB.
pub fn simulated_log(appliance: &str, start: i64, end: i64) -> Vec<u8> {
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
