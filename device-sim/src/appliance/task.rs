//! Running one task of every type: accept or ignore it, report
//! IN_PROGRESS, simulate the work (a timer, a download or an upload, see
//! `transfer`), change the machine, report the terminal status. Faults decided by the
//! appliance's [`crate::fault::Dice`] bend the path: reject, never
//! answer, fail, crash mid-download, roll back after the reboot.

use std::collections::BTreeMap;

use protocol::message::{GetTarget, Task, UpdateParams};
use protocol::{ExecutionStatus, JobDocument, ReportedStatus, TaskId};
use serde_json::{json, Map, Value};

use super::transfer::{download, simulated_log};
use super::{Action, Appliance, FollowUp, Now, Offline, Record, Report, Seen, Upload, BACKLOG};
use crate::fault::{Outcome, TaskFate};

/// The task being run.
#[derive(Debug)]
pub(super) struct Execution {
    pub(super) task: Task,
    pub(super) fate: TaskFate,
    pub(super) arrived: u64,
    pub(super) phase: Phase,
}

/// Where a task came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskSource {
    /// A notify.
    Notify,
    /// The answer to get `$next`.
    Next,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Simulated work until this time.
    Working { until: u64 },
    /// Download running (or cut by a crash, to resume on reconnect).
    Downloading { reported: u8, interrupted: bool },
    /// Download stopped on an expired link (403): waiting for the task
    /// again, by id, with a fresh one.
    Refreshing { reported: u8 },
    /// Log upload running.
    Uploading,
    /// The "rebooting" report is on its way; the reboot follows it.
    Rebooting,
    /// Offline for the reboot; the new firmware boots on reconnect.
    Booting,
}

impl Execution {
    pub(super) fn wake_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Working { until } => Some(until),
            _ => None,
        }
    }
}

impl Appliance {
    /// A notify or a `$next` answer brought a task.
    pub(super) fn on_task(
        &mut self,
        task: Task,
        source: TaskSource,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let id = task.task_id.clone();
        if task.status == ExecutionStatus::Canceled {
            return self.cancel(&id, now, out);
        }
        if task.status.is_terminal() {
            return;
        }
        if let JobDocument::Heartbeat { server_time } = task.job_document {
            return self.heartbeat(&id, server_time, now, out);
        }
        if self.current_task() == Some(&id) {
            // The task being run, again (`$next` after a reconnect): keep
            // its fresh download link for any resume to come.
            self.take_fresh_link(task);
            return out.push(Action::Record(Record::Duplicate));
        }
        if self.backlog.iter().any(|t| t.task_id == id) {
            return out.push(Action::Record(Record::Duplicate));
        }
        match self.seen.get(&id, now.mono) {
            Seen::No => {}
            Seen::Started => return out.push(Action::Record(Record::Duplicate)),
            Seen::Finished(last) => {
                // The task came back (redelivered notify, `$next`): send its
                // recorded final report again, same client token; never
                // run it twice.
                let last = last.clone();
                if !self.report_pending(&id) {
                    self.queue_report(last, out);
                }
                return out.push(Action::Record(Record::Duplicate));
            }
        }
        if source == TaskSource::Next {
            out.push(Action::Record(Record::FromNext));
        }
        if self.current.is_some() {
            if self.backlog.len() < BACKLOG {
                self.backlog.push_back(task);
            }
            return;
        }
        self.start(task, now, out);
    }

    /// A notify that does not decode (an unknown task type, say) but whose
    /// `taskId` is readable is REJECTED with the decoder's error
    /// (topics.md 6.2); anything else is only counted.
    pub(super) fn reject_undecodable(
        &mut self,
        payload: &[u8],
        error: &protocol::ProtocolError,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Record(Record::BadMessage));
        let task_id = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.pointer("/params/task/taskId").cloned())
            .and_then(|v| serde_json::from_value::<TaskId>(v).ok());
        let Some(task_id) = task_id else {
            return;
        };
        if task_id == TaskId::heartbeat(&self.identity.appliance_id)
            || self.seen.contains(&task_id, now.mono)
        {
            return;
        }
        self.seen
            .insert(task_id.clone(), now.mono + self.behaviour.seen_ttl_ms);
        let mut rejected = report(&task_id, ReportedStatus::Rejected, None, now.mono);
        let mut message = format!("unsupported task: {error}");
        message.truncate(protocol::message::MAX_MESSAGE_LEN);
        rejected.params.error_message = Some(message);
        self.queue_final(rejected, out);
    }

    fn report_pending(&self, id: &TaskId) -> bool {
        let in_flight = self.updates.in_flight().map(|f| &f.report);
        in_flight
            .into_iter()
            .chain(self.updates.waiting())
            .any(|r| r.params.task_id == *id && r.params.status != ReportedStatus::InProgress)
    }

    fn start(&mut self, task: Task, now: Now, out: &mut Vec<Action>) {
        let ttl = self.behaviour.seen_ttl_ms;
        self.seen.insert(task.task_id.clone(), now.mono + ttl);
        let fate = self.dice.tasks.task_fate(&self.behaviour.faults);
        out.push(Action::Record(Record::TaskStarted(
            task.job_document.task_type(),
        )));
        match fate.outcome {
            Outcome::NeverAnswer => {
                out.push(Action::Record(Record::NeverAnswered));
                return self.start_backlog(now, out);
            }
            Outcome::Reject => {
                let mut report = report(&task.task_id, ReportedStatus::Rejected, None, now.mono);
                report.params.error_message = Some("rejected by the simulated agent".into());
                self.queue_final(report, out);
                return self.start_backlog(now, out);
            }
            Outcome::Fail | Outcome::Succeed => {}
        }
        let started = progress(&task.task_id, 10, "started", now.mono);
        self.queue_report(started, out);
        let phase = self.first_phase(&task, &fate, now, out);
        self.current = Some(Execution {
            task,
            fate,
            arrived: now.mono,
            phase,
        });
    }

    fn first_phase(&self, task: &Task, fate: &TaskFate, now: Now, out: &mut Vec<Action>) -> Phase {
        let work = Phase::Working {
            until: now.mono + self.behaviour.work_ms,
        };
        match (&task.job_document, &task.job_file) {
            (JobDocument::UpgradeAppliance { target_version, .. }, _)
                if *target_version == self.machine.version =>
            {
                work
            }
            (JobDocument::UpgradeAppliance { .. }, Some(file))
            | (JobDocument::InstallService(_), Some(file))
            | (JobDocument::UpgradeService(_), Some(file)) => {
                out.push(Action::Download(download(&task.task_id, file, fate, false)));
                Phase::Downloading {
                    reported: 10,
                    interrupted: false,
                }
            }
            (
                JobDocument::CollectLog {
                    start,
                    end,
                    upload_path,
                },
                _,
            ) => {
                out.push(Action::Upload(Upload {
                    task_id: task.task_id.clone(),
                    url: upload_path.clone(),
                    body: simulated_log(&self.identity.appliance_id.to_string(), *start, *end),
                }));
                Phase::Uploading
            }
            _ => work,
        }
    }

    pub(super) fn advance_work(&mut self, now: Now, out: &mut Vec<Action>) {
        let due = self
            .current
            .as_ref()
            .and_then(Execution::wake_at)
            .is_some_and(|until| until <= now.mono);
        if due {
            self.finish(Map::new(), now, out);
        }
    }

    pub(super) fn fail_current(&mut self, message: String, now: Now, out: &mut Vec<Action>) {
        let Some(exec) = self.current.take() else {
            return;
        };
        let mut report = report(
            &exec.task.task_id,
            ReportedStatus::Failed,
            None,
            exec.arrived,
        );
        report.params.error_message = Some(message);
        self.queue_final(report, out);
        self.start_backlog(now, out);
    }

    /// The work of the current task is done: change the machine, report.
    pub(super) fn finish(
        &mut self,
        mut result: Map<String, Value>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let Some(mut exec) = self.current.take() else {
            return;
        };
        if exec.fate.outcome == Outcome::Fail {
            self.current = Some(exec);
            return self.fail_current("simulated failure".into(), now, out);
        }
        let mut then = FollowUp::None;
        let applied = match &exec.task.job_document {
            JobDocument::UpgradeAppliance { target_version, .. } => {
                if *target_version != self.machine.version {
                    let rebooting = Report {
                        then: FollowUp::Reboot,
                        ..progress(&exec.task.task_id, 90, "rebooting", exec.arrived)
                    };
                    self.queue_report(rebooting, out);
                    exec.phase = Phase::Rebooting;
                    self.current = Some(exec);
                    return;
                }
                Ok(version_result(&self.machine.version, false))
            }
            JobDocument::InstallService(package) => self.machine.install(package),
            JobDocument::UpgradeService(package) => self.machine.upgrade(package),
            JobDocument::UninstallService { service_code } => self.machine.uninstall(service_code),
            JobDocument::ToggleService {
                service_code,
                action,
            } => self.machine.toggle(service_code, *action),
            JobDocument::ConfigureService {
                service_code,
                setting_version,
                ..
            } => self.machine.configure(service_code, *setting_version),
            JobDocument::UpdateApplianceConfig { body } => {
                let (applied, token) = self.machine.update_config(body);
                if let Some(token) = token {
                    self.identity.token.clone_from(&token);
                    out.push(Action::SetPassword(token));
                }
                applied
            }
            JobDocument::ExtendStorage { storage } => self.machine.extend_storage(&storage.extend),
            JobDocument::CollectMetrics {} => {
                self.post_metrics(now, out);
                Ok(Map::new())
            }
            JobDocument::Unregister {} => {
                then = FollowUp::Forget;
                Ok(Map::new())
            }
            JobDocument::CollectLog { .. } | JobDocument::Heartbeat { .. } => Ok(Map::new()),
        };
        let report = match applied {
            Ok(applied) => {
                result.extend(applied);
                let mut report = report(
                    &exec.task.task_id,
                    ReportedStatus::Succeeded,
                    Some(100),
                    exec.arrived,
                );
                report.params.result = Some(result);
                report.then = then;
                report
            }
            Err(message) => {
                let mut report = report(
                    &exec.task.task_id,
                    ReportedStatus::Failed,
                    None,
                    exec.arrived,
                );
                report.params.error_message = Some(message);
                report
            }
        };
        self.queue_final(report, out);
        self.start_backlog(now, out);
    }

    /// A report was answered or given up: carry out what it was waiting for.
    pub(super) fn settled(&mut self, report: Report, now: Now, out: &mut Vec<Action>) {
        match report.then {
            FollowUp::None => {}
            FollowUp::Reboot => {
                let exec = self
                    .current
                    .as_mut()
                    .filter(|e| e.task.task_id == report.params.task_id);
                if let Some(exec) = exec.filter(|e| e.phase == Phase::Rebooting) {
                    exec.phase = Phase::Booting;
                    self.connected = false;
                    out.push(Action::GoOffline {
                        reason: Offline::Reboot,
                        for_ms: self.behaviour.reboot_ms,
                    });
                    out.push(Action::Record(Record::Reboot));
                }
            }
            FollowUp::Forget => return self.forget(out),
        }
        let heartbeat = report.params.task_id == TaskId::heartbeat(&self.identity.appliance_id);
        let terminal = report.params.status != ReportedStatus::InProgress && !heartbeat;
        let idle = self.current.is_none() && self.backlog.is_empty() && self.updates.is_idle();
        if terminal && idle && self.connected {
            self.send_get(GetTarget::Next, now, out);
        }
    }

    /// Stops working on `task` (the hub finished it, or canceled it).
    pub(super) fn abandon(&mut self, task: &TaskId, now: Now, out: &mut Vec<Action>) -> bool {
        let before = self.backlog.len();
        self.backlog.retain(|t| t.task_id != *task);
        if self.current_task() != Some(task) {
            return before != self.backlog.len();
        }
        if let Some(exec) = self.current.take() {
            if matches!(
                exec.phase,
                Phase::Downloading { .. } | Phase::Refreshing { .. } | Phase::Uploading
            ) {
                out.push(Action::CancelTransfer);
            }
        }
        self.start_backlog(now, out);
        true
    }

    fn cancel(&mut self, task: &TaskId, now: Now, out: &mut Vec<Action>) {
        let ttl = self.behaviour.seen_ttl_ms;
        if !self.seen.contains(task, now.mono) {
            self.seen.insert(task.clone(), now.mono + ttl);
        }
        if self.abandon(task, now, out) {
            out.push(Action::Record(Record::Canceled));
        }
    }

    pub(super) fn start_backlog(&mut self, now: Now, out: &mut Vec<Action>) {
        while self.current.is_none() {
            let Some(task) = self.backlog.pop_front() else {
                return;
            };
            if !self.seen.contains(&task.task_id, now.mono) {
                self.start(task, now, out);
            }
        }
    }

    fn heartbeat(&mut self, id: &TaskId, server_time: i64, now: Now, out: &mut Vec<Action>) {
        if self.last_heartbeat == Some(server_time) {
            return out.push(Action::Record(Record::Duplicate));
        }
        self.last_heartbeat = Some(server_time);
        out.push(Action::Record(Record::TaskStarted(
            protocol::TaskType::Heartbeat,
        )));
        // topics.md 5.3: one update, SUCCEEDED with a HeartbeatResult (any
        // other status is a 400), answered at once even while a task runs.
        let health = serde_json::to_value(self.machine.heartbeat(now.wall));
        let mut done = report(id, ReportedStatus::Succeeded, None, now.mono);
        done.params.result = health.ok().and_then(|v| match v {
            Value::Object(map) => Some(map),
            _ => None,
        });
        self.queue_report(done, out);
    }

    fn forget(&mut self, out: &mut Vec<Action>) {
        self.forgotten = true;
        self.connected = false;
        self.current = None;
        self.backlog.clear();
        self.updates.clear();
        self.seen.clear();
        out.push(Action::Forget);
    }
}

pub(super) fn report(
    task: &TaskId,
    status: ReportedStatus,
    progress: Option<u8>,
    arrived: u64,
) -> Report {
    Report {
        params: UpdateParams {
            task_id: task.clone(),
            status,
            progress,
            status_details: None,
            result: None,
            error_message: None,
            expected_version: None,
            client_token: None,
        },
        then: FollowUp::None,
        task_arrived: arrived,
    }
}

pub(super) fn progress(task: &TaskId, percent: u8, step: &str, arrived: u64) -> Report {
    let mut report = report(task, ReportedStatus::InProgress, Some(percent), arrived);
    report.params.status_details = Some(BTreeMap::from([("step".to_owned(), step.to_owned())]));
    report
}

pub(super) fn version_result(version: &str, changed: bool) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("version".into(), json!(version));
    result.insert("changed".into(), json!(changed));
    result
}
