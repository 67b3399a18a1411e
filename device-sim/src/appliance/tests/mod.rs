//! Unit tests of the appliance's decision logic: a small harness plays the
//! hub and the shell (answers updates, runs transfers instantly, reconnects
//! after reboots) with a fake clock, and the tests read the actions.

mod faults;
mod links;
mod reliability;
mod tasks;

use std::sync::Arc;

use protocol::document::{ServicePackage, StorageExtension, ToggleAction, Volume, VolumeExtension};
use protocol::message::{decode_update, notify, Reply, Task, UpdateParams, UpdateReplyData};
use protocol::{
    ExecutionStatus, JobDocument, JobFile, MessageKind, ReplyCode, ReportedStatus, TaskId,
};
use serde_json::json;

use super::*;
use crate::fault::FaultConfig;
use crate::identity::Identity;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

struct Harness {
    app: Appliance,
    now: Now,
}

impl Harness {
    fn new(behaviour: Behaviour, seed: u64, index: u64) -> Self {
        let identity = Identity {
            appliance_id: "0f8fad5b-d9cb-469f-a165-70867728950e"
                .parse()
                .expect("valid"),
            token: "secret".into(),
            product_key: Default::default(),
        };
        let dice = crate::fault::Dice::new(seed, index);
        let app = Appliance::new(identity, Arc::new(behaviour), dice, 0xabc);
        Self {
            app,
            now: Now {
                mono: 0,
                wall: 1_700_000_000_000,
            },
        }
    }

    fn connect(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.app.on_connected(self.now, &mut out);
        out
    }

    fn deliver(&mut self, task: &Task) -> Vec<Action> {
        let payload = serde_json::to_vec(&notify("n-1", task.clone())).expect("json");
        let mut out = Vec::new();
        self.app
            .on_message(MessageKind::JobNotify, &payload, self.now, &mut out);
        out
    }

    fn reply(&mut self, update: &(String, UpdateParams), code: ReplyCode) -> Vec<Action> {
        let data = UpdateReplyData {
            task_id: update.1.task_id.clone(),
            status: update.1.status.execution_status(),
            version_number: 2,
        };
        let reply = Reply::new(
            update.0.clone(),
            MessageKind::JobUpdateReply,
            code,
            Some(data),
            "",
        );
        let mut out = Vec::new();
        let payload = serde_json::to_vec(&reply).expect("json");
        self.app
            .on_message(MessageKind::JobUpdateReply, &payload, self.now, &mut out);
        out
    }

    fn advance(&mut self, ms: u64) -> Vec<Action> {
        self.now.mono += ms;
        self.now.wall += ms as i64;
        let mut out = Vec::new();
        self.app.on_tick(self.now, &mut out);
        out
    }

    /// Plays hub and shell until nothing is left to do: every update gets a
    /// 200, downloads and uploads complete, reboots reconnect. Returns every
    /// update sent, in order.
    fn run_to_quiet(&mut self, mut actions: Vec<Action>) -> Vec<UpdateParams> {
        let mut sent = Vec::new();
        for _ in 0..200 {
            let mut next = Vec::new();
            for action in actions.drain(..) {
                next.extend(self.carry_out(action, &mut sent));
            }
            if next.is_empty() {
                match self.app.next_wake() {
                    Some(at) if at <= self.now.mono + 60_000 && !self.app.is_forgotten() => {
                        next = self.advance(at.saturating_sub(self.now.mono));
                    }
                    _ => return sent,
                }
            }
            actions = next;
        }
        panic!("appliance never went quiet");
    }

    fn carry_out(&mut self, action: Action, sent: &mut Vec<UpdateParams>) -> Vec<Action> {
        let mut out = Vec::new();
        match action {
            Action::Publish {
                kind: MessageKind::JobUpdate,
                payload,
            } => {
                let update = updates_in(&[Action::Publish {
                    kind: MessageKind::JobUpdate,
                    payload,
                }]);
                sent.push(update[0].1.clone());
                out = self.reply(&update[0], ReplyCode::Ok);
            }
            Action::Publish {
                kind: MessageKind::JobGet,
                payload,
            } => {
                let request = protocol::message::decode_get(&payload).expect("valid get");
                let reply: Reply<GetReplyData> = Reply::ok(
                    request.id,
                    MessageKind::JobGetReply,
                    GetReplyData::One { task: None },
                );
                let payload = serde_json::to_vec(&reply).expect("json");
                self.app
                    .on_message(MessageKind::JobGetReply, &payload, self.now, &mut out);
            }
            Action::Download(d) => {
                self.app
                    .on_download_progress(&d.task_id, d.size / 2, d.size, self.now, &mut out);
                if self.app.is_connected() {
                    self.app
                        .on_download_done(&d.task_id, Ok(()), self.now, &mut out);
                }
            }
            Action::Upload(u) => {
                let len = u.body.len() as u64;
                self.app
                    .on_upload_done(&u.task_id, Ok(len), self.now, &mut out);
            }
            Action::GoOffline { for_ms, .. } => {
                self.now.mono += for_ms;
                self.app.on_connected(self.now, &mut out);
            }
            _ => {}
        }
        out
    }
}

fn task(document: JobDocument, file: Option<JobFile>) -> Task {
    Task {
        task_id: TaskId::new_random(),
        status: ExecutionStatus::Sent,
        execution_number: 1,
        version_number: 1,
        queued_at: 0,
        progress: None,
        status_details: None,
        job_document: document,
        job_file: file,
    }
}

fn file() -> JobFile {
    JobFile {
        sign_method: protocol::document::SignMethod::Sha256,
        sign: SHA.into(),
        file_url: "/files/fw.img".into(),
        file_size: 1000,
    }
}

fn package(code: &str, version: &str) -> ServicePackage {
    ServicePackage {
        service_code: code.into(),
        target_version: version.into(),
        branch: "stable".into(),
        image_path: "/img".into(),
        image_sha256: SHA.into(),
    }
}

/// `(request id, params)` of every update published among `actions`.
fn updates_in(actions: &[Action]) -> Vec<(String, UpdateParams)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish {
                kind: MessageKind::JobUpdate,
                payload,
            } => decode_update(payload).ok().map(|r| (r.id, r.params)),
            _ => None,
        })
        .collect()
}

fn statuses(updates: &[UpdateParams], task: &TaskId) -> Vec<ReportedStatus> {
    updates
        .iter()
        .filter(|u| u.task_id == *task)
        .map(|u| u.status)
        .collect()
}

fn quiet() -> Behaviour {
    Behaviour {
        metrics_interval_ms: None,
        ..Behaviour::default()
    }
}
