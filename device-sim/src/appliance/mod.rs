//! One simulated appliance's decision logic, free of I/O.
//!
//! [`Appliance`] is a state struct in the manner of rumqttc's `state.rs`:
//! the I/O shell ([`crate::runner`]) feeds it what happened (connected,
//! a message arrived, a transfer progressed, time passed) together with the
//! current time, and it answers with [`Action`]s for the shell to carry out
//! (publish, subscribe, download, go offline, ...) and [`Record`]s for the
//! statistics. It reads no clock, opens no socket and spawns nothing, so
//! every behaviour of the agent is unit-tested in `tests.rs` beside it.
//!
//! Layout:
//! - this file: the state, connection events, message dispatch, timers;
//! - `action`: the time, behaviour, actions and records exchanged with the shell;
//! - `task`: accepting and running one task of every type, with its faults;
//! - `transfer`: downloads (resume after a crash) and log uploads;
//! - `upgrade`: the reboot into new firmware, or the rollback;
//! - `updates`: stop-and-wait `job/update` with retries by client token;
//! - `seen`: the expiring set of started task ids;
//! - `machine`: the simulated firmware, services, volumes, settings.

mod action;
mod machine;
mod seen;
mod task;
#[cfg(test)]
mod tests;
mod transfer;
mod updates;
mod upgrade;

use std::collections::VecDeque;
use std::sync::Arc;

use protocol::message::{
    decode_get_reply, decode_notify, decode_update_reply, GetParams, GetReplyData, GetTarget,
    Request, Task,
};
use protocol::topic::device_filters;
use protocol::{ExecutionStatus, MessageKind, ReplyCode, ReportedStatus, TaskId};

pub use action::{Action, Behaviour, Now, Offline, Record};
pub use machine::{Machine, Service};
pub use seen::{Seen, SeenTasks};
pub use transfer::{simulated_log, Download, DownloadFailure, Upload};
pub use updates::{FollowUp, InFlight, Report, UpdateQueue};

use crate::fault::Dice;
use crate::identity::Identity;
use task::{Execution, TaskSource};

/// A `job/get` waiting for its reply: `$next`, or the current task by id
/// (for a fresh download link).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingGet {
    id: String,
    target: GetTarget,
    deadline: u64,
    tries: u8,
}

/// Most tasks kept waiting while another runs; the rest is pulled later
/// with `$next`.
const BACKLOG: usize = 4;

/// One simulated appliance.
#[derive(Debug)]
pub struct Appliance {
    identity: Identity,
    behaviour: Arc<Behaviour>,
    dice: Dice,
    machine: Machine,
    seen: SeenTasks,
    updates: UpdateQueue,
    current: Option<Execution>,
    backlog: VecDeque<Task>,
    last_heartbeat: Option<i64>,
    get: Option<PendingGet>,
    connected: bool,
    forgotten: bool,
    next_metrics: Option<u64>,
    next_churn: Option<u64>,
    nonce: u64,
    seq: u32,
}

impl Appliance {
    /// A new appliance. `dice` decide its faults (derive them from the seed
    /// and the appliance's index); `nonce` makes its request ids and client
    /// tokens differ from those of earlier runs with the same identity.
    pub fn new(identity: Identity, behaviour: Arc<Behaviour>, mut dice: Dice, nonce: u64) -> Self {
        let skew = dice.appliance.skew_ms(behaviour.faults.max_clock_skew);
        let machine = Machine::new(behaviour.initial_version.clone(), skew);
        Self {
            identity,
            behaviour,
            dice,
            machine,
            seen: SeenTasks::default(),
            updates: UpdateQueue::default(),
            current: None,
            backlog: VecDeque::new(),
            last_heartbeat: None,
            get: None,
            connected: false,
            forgotten: false,
            next_metrics: None,
            next_churn: None,
            nonce,
            seq: 0,
        }
    }

    /// Who this appliance is (its token changes with updateApplianceConfig).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The simulated machine.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// True once unregistered: the shell stops feeding it.
    pub fn is_forgotten(&self) -> bool {
        self.forgotten
    }

    /// True while connected (as far as this state knows).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The task being run, if any.
    pub fn current_task(&self) -> Option<&TaskId> {
        self.current.as_ref().map(|e| &e.task.task_id)
    }

    /// The report waiting for its reply, if any.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.updates.in_flight()
    }

    /// The CONNACK arrived: subscribe, pull `$next`, resume what was cut.
    pub fn on_connected(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.forgotten {
            return;
        }
        self.connected = true;
        out.push(Action::Subscribe(device_filters(
            &self.identity.product_key,
            &self.identity.appliance_id,
        )));
        self.resume_after_connect(now, out);
        if let Some(flight) = self
            .updates
            .resend_after_reconnect(now.mono, self.behaviour.reply_timeout_ms)
        {
            out.push(publish_update(&flight.report));
        }
        // Every connect asks `$next` (topics.md 6.2), unless the download
        // of the current task waits for a fresh link: then that comes first,
        // and `$next` follows once the task is done.
        match self.refreshing_task() {
            Some(task) => self.send_get(GetTarget::Task(task), now, out),
            None => self.send_get(GetTarget::Next, now, out),
        }
        let interval = self.behaviour.metrics_interval_ms;
        if self.next_metrics.is_none() {
            self.next_metrics = interval.map(|i| now.mono + self.dice.appliance.below(i.max(1)));
        }
        self.next_churn = self
            .dice
            .appliance
            .next_churn_in(&self.behaviour.faults)
            .map(|delay| now.mono + delay);
        self.flush(now, out);
    }

    /// The connection dropped without the appliance asking for it.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// A message arrived on one of the appliance's topics.
    pub fn on_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.forgotten {
            return;
        }
        match kind {
            MessageKind::JobNotify => match decode_notify(payload) {
                Ok(notify) => self.on_task(notify.params.task, TaskSource::Notify, now, out),
                Err(error) => self.reject_undecodable(payload, &error, now, out),
            },
            MessageKind::JobGetReply => match decode_get_reply(payload) {
                Ok(reply) => self.on_get_reply(reply, now, out),
                Err(_) => out.push(Action::Record(Record::BadMessage)),
            },
            MessageKind::JobUpdateReply => match decode_update_reply(payload) {
                Ok(reply) => self.on_update_reply(reply, now, out),
                Err(_) => out.push(Action::Record(Record::BadMessage)),
            },
            MessageKind::JobGet | MessageKind::JobUpdate | MessageKind::MetricsPost => {}
        }
        self.flush(now, out);
    }

    /// Time passed: finish simulated work, retry unanswered requests, post
    /// metrics, churn.
    pub fn on_tick(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.forgotten {
            return;
        }
        self.seen.expire(now.mono);
        self.advance_work(now, out);
        if self.connected {
            self.retry_due(now, out);
            self.post_metrics_if_due(now, out);
            self.churn_if_due(now, out);
        }
        self.flush(now, out);
    }

    /// The earliest time `on_tick` has something to do.
    pub fn next_wake(&self) -> Option<u64> {
        let work = self.current.as_ref().and_then(Execution::wake_at);
        let mut wake = work;
        if self.connected {
            let deadlines = [
                self.updates.deadline(),
                self.get.as_ref().map(|g| g.deadline),
                self.next_metrics,
                self.next_churn,
            ];
            for at in deadlines.into_iter().flatten() {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    fn next_id(&mut self) -> String {
        self.seq = self.seq.wrapping_add(1);
        format!("{:x}-{:x}", self.nonce, self.seq)
    }

    /// Sends a get (replacing any pending one: one at a time).
    fn send_get(&mut self, target: GetTarget, now: Now, out: &mut Vec<Action>) {
        let id = self.next_id();
        out.push(publish_get(&id, &target));
        self.get = Some(PendingGet {
            id,
            target,
            deadline: now.mono + self.behaviour.reply_timeout_ms,
            tries: 1,
        });
    }

    fn on_get_reply(
        &mut self,
        reply: protocol::message::Reply<GetReplyData>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if matches!(reply.code, ReplyCode::Throttled | ReplyCode::Internal) {
            // Nothing was done: the same request goes again after the
            // back-off of this try (topics.md 6.1).
            let timeout = self.behaviour.reply_timeout_ms;
            if let Some(get) = self.get.as_mut().filter(|g| g.id == reply.id) {
                get.deadline = now.mono + updates::retry_delay(timeout, get.tries);
                out.push(Action::Record(Record::Refused(reply.code)));
            }
            return;
        }
        let Some(get) = self.get.take_if(|g| g.id == reply.id) else {
            return;
        };
        let task = match (reply.code, reply.data) {
            (ReplyCode::Ok, Some(GetReplyData::One { task })) => task.map(|t| *t),
            (ReplyCode::Ok, _) => None,
            (code, _) => {
                out.push(Action::Record(Record::Refused(code)));
                if let GetTarget::Task(id) = &get.target {
                    // The hub no longer knows the task (404), or the request
                    // is broken (400): no fresh link will come.
                    let id = id.clone();
                    self.give_up_refresh(&id, code, now, out);
                }
                return;
            }
        };
        match (get.target, task) {
            (GetTarget::Task(id), Some(task)) if task.task_id == id => {
                self.on_fresh_task(task, now, out)
            }
            (GetTarget::Task(_), _) => {}
            (_, Some(task)) => self.on_task(task, TaskSource::Next, now, out),
            (_, None) => {}
        }
    }

    fn on_update_reply(
        &mut self,
        reply: protocol::message::Reply<protocol::message::UpdateReplyData>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        match reply.code {
            ReplyCode::Throttled | ReplyCode::Internal => {
                if self.updates.in_flight().is_some_and(|f| {
                    f.report.params.client_token.as_deref() == Some(reply.id.as_str())
                }) {
                    out.push(Action::Record(Record::Refused(reply.code)));
                    self.updates
                        .back_off(now.mono, self.behaviour.reply_timeout_ms);
                }
                return;
            }
            ReplyCode::Ok | ReplyCode::BadRequest | ReplyCode::NotFound | ReplyCode::Conflict => {}
        }
        let Some(flight) = self.updates.settle(&reply.id) else {
            return;
        };
        let report = flight.report;
        if reply.code == ReplyCode::Ok {
            let terminal = report.params.status != ReportedStatus::InProgress;
            out.push(Action::Record(Record::Accepted {
                status: report.params.status,
                latency_ms: terminal.then(|| now.mono.saturating_sub(report.task_arrived)),
            }));
        } else {
            out.push(Action::Record(Record::Refused(reply.code)));
            // 409 carries the hub's state: adopt it. Terminal (or QUEUED,
            // never released) means there is nothing left to work on.
            let hub_done = reply
                .data
                .is_some_and(|d| d.status.is_terminal() || d.status == ExecutionStatus::Queued);
            if hub_done || reply.code == ReplyCode::NotFound {
                self.abandon(&report.params.task_id, now, out);
            }
        }
        self.settled(report, now, out);
    }

    fn retry_due(&mut self, now: Now, out: &mut Vec<Action>) {
        let timeout = self.behaviour.reply_timeout_ms;
        match self
            .updates
            .on_tick(now.mono, timeout, self.behaviour.max_tries)
        {
            Some(Ok(flight)) => {
                out.push(publish_update(&flight.report));
                out.push(Action::Record(Record::Retry));
            }
            Some(Err(flight)) => {
                out.push(Action::Record(Record::GaveUp));
                self.settled(flight.report, now, out);
            }
            None => {}
        }
        let due = self.get.as_ref().is_some_and(|g| g.deadline <= now.mono);
        if due {
            let max_tries = self.behaviour.max_tries;
            if let Some(get) = self.get.as_mut().filter(|g| g.tries < max_tries) {
                get.tries += 1;
                get.deadline = now.mono + updates::retry_delay(timeout, get.tries);
                out.push(publish_get(&get.id, &get.target));
                out.push(Action::Record(Record::Retry));
            } else if let Some(get) = self.get.take() {
                out.push(Action::Record(Record::GaveUp));
                if let GetTarget::Task(id) = get.target {
                    self.give_up_refresh(&id, ReplyCode::Internal, now, out);
                }
            }
        }
    }

    fn post_metrics_if_due(&mut self, now: Now, out: &mut Vec<Action>) {
        let (Some(at), Some(interval)) = (self.next_metrics, self.behaviour.metrics_interval_ms)
        else {
            return;
        };
        if at <= now.mono {
            self.next_metrics = Some(now.mono + interval.max(1));
            self.post_metrics(now, out);
        }
    }

    fn post_metrics(&mut self, now: Now, out: &mut Vec<Action>) {
        let wobble = self.dice.appliance.below(1000);
        let params = self.machine.metrics(now.wall, wobble);
        let id = self.next_id();
        out.push(Action::Publish {
            kind: MessageKind::MetricsPost,
            payload: to_json(&Request::new(id, params)),
        });
        out.push(Action::Record(Record::MetricsPosted));
    }

    fn churn_if_due(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.next_churn.is_none_or(|at| at > now.mono) || self.is_rebooting() {
            return;
        }
        self.next_churn = None;
        self.connected = false;
        let for_ms = self.dice.appliance.churn_offline_ms(&self.behaviour.faults);
        out.push(Action::GoOffline {
            reason: Offline::Churn,
            for_ms,
        });
        out.push(Action::Record(Record::Churn));
    }

    /// Sends the next waiting report when connected and nothing is in flight.
    fn flush(&mut self, now: Now, out: &mut Vec<Action>) {
        if !self.connected || self.forgotten {
            return;
        }
        let timeout = self.behaviour.reply_timeout_ms;
        if let Some(flight) = self.updates.start_next(now.mono, timeout) {
            out.push(publish_update(&flight.report));
        }
    }

    /// Stamps a report with its client token (kept for every retry) and
    /// queues it.
    fn queue_report(&mut self, mut report: Report, out: &mut Vec<Action>) {
        if report.params.client_token.is_none() {
            report.params.client_token = Some(self.next_id());
        }
        match self.updates.push(report) {
            updates::Pushed::Queued => {}
            updates::Pushed::DroppedOlder | updates::Pushed::Refused => {
                out.push(Action::Record(Record::QueueFull))
            }
        }
    }

    /// Queues the terminal report of a task and records it in the seen set,
    /// to send the same report again if the task ever comes back.
    fn queue_final(&mut self, mut report: Report, out: &mut Vec<Action>) {
        if report.params.client_token.is_none() {
            report.params.client_token = Some(self.next_id());
        }
        self.seen.finish(&report);
        self.queue_report(report, out);
    }
}

fn publish_get(id: &str, target: &GetTarget) -> Action {
    let request = Request::new(
        id,
        GetParams {
            task_id: target.clone(),
        },
    );
    Action::Publish {
        kind: MessageKind::JobGet,
        payload: to_json(&request),
    }
}

fn publish_update(report: &Report) -> Action {
    let id = report.params.client_token.clone().unwrap_or_default();
    Action::Publish {
        kind: MessageKind::JobUpdate,
        payload: to_json(&Request::new(id, &report.params)),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
