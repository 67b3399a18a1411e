//! The appliance's outgoing `job/update` reports, sent stop-and-wait.
//!
//! One report is in flight at a time; the hub's `update_reply` (not the
//! broker's PUBACK) completes it. A report without a reply by its deadline
//! is sent again unchanged, same `id` and same `clientToken`, up to
//! `max_tries` times in all, so the hub can answer a repeat without applying
//! it twice. Waiting reports are bounded: an IN_PROGRESS report is dropped
//! (superseded by the next one) before a terminal one ever is.

use std::collections::VecDeque;

use protocol::message::UpdateParams;
use protocol::ReportedStatus;

/// Longest wait between two tries of one request.
pub const MAX_RETRY_DELAY_MS: u64 = 300_000;

/// How long to wait for the reply to try number `tries` (1-based): the
/// timeout, doubled for every earlier try, at most five minutes.
pub fn retry_delay(timeout: u64, tries: u8) -> u64 {
    let doublings = u32::from(tries.saturating_sub(1)).min(16);
    timeout
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY_MS.max(timeout))
}

/// What the appliance does once a report is settled (answered or given up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// "Reboot" into the new firmware (upgradeAppliance).
    Reboot,
    /// Forget the identity and stop (unregister).
    Forget,
}

/// One report waiting or in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The update to send.
    pub params: UpdateParams,
    /// What happens once it is settled.
    pub then: FollowUp,
    /// When the task it reports on arrived (monotonic ms), for latency.
    pub task_arrived: u64,
}

/// The report on the wire, waiting for its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// The report; its `client_token` is also the request id.
    pub report: Report,
    /// When to give up waiting for this try.
    pub deadline: u64,
    /// Sends so far, the first included.
    pub tries: u8,
}

/// Reports waiting behind the one in flight.
#[derive(Debug, Clone, Default)]
pub struct UpdateQueue {
    in_flight: Option<InFlight>,
    waiting: VecDeque<Report>,
}

/// What a push did to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and an older waiting report was dropped to make room.
    DroppedOlder,
    /// Not queued: full of reports that cannot be dropped.
    Refused,
}

impl UpdateQueue {
    /// Most reports waiting behind the one in flight.
    pub const CAPACITY: usize = 8;

    /// Appends a report. When full, the oldest waiting IN_PROGRESS report
    /// makes room; a new IN_PROGRESS report is refused rather than dropping
    /// a terminal one.
    pub fn push(&mut self, report: Report) -> Pushed {
        if self.waiting.len() < Self::CAPACITY {
            self.waiting.push_back(report);
            return Pushed::Queued;
        }
        let droppable = self
            .waiting
            .iter()
            .position(|r| r.params.status == ReportedStatus::InProgress);
        match droppable {
            Some(index) => {
                self.waiting.remove(index);
                self.waiting.push_back(report);
                Pushed::DroppedOlder
            }
            None => Pushed::Refused,
        }
    }

    /// The report in flight, if any.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// Reports waiting (not in flight).
    pub fn waiting(&self) -> impl Iterator<Item = &Report> {
        self.waiting.iter()
    }

    /// When nothing is in flight, takes the next report (stamped with its
    /// client token when it was made) and returns it to be sent.
    pub fn start_next(&mut self, now: u64, timeout: u64) -> Option<&InFlight> {
        if self.in_flight.is_some() {
            return None;
        }
        let report = self.waiting.pop_front()?;
        self.in_flight = Some(InFlight {
            report,
            deadline: now + timeout,
            tries: 1,
        });
        self.in_flight.as_ref()
    }

    /// Settles the in-flight report if `id` is its request id.
    pub fn settle(&mut self, id: &str) -> Option<InFlight> {
        let matches = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.report.params.client_token.as_deref() == Some(id));
        if matches {
            self.in_flight.take()
        } else {
            None
        }
    }

    /// At a deadline: `Some(Ok(report))` to send again, `Some(Err(report))`
    /// when every try is spent (the report is removed), `None` when nothing
    /// is due.
    pub fn on_tick(
        &mut self,
        now: u64,
        timeout: u64,
        max_tries: u8,
    ) -> Option<Result<&InFlight, InFlight>> {
        let due = self.in_flight.as_ref().is_some_and(|f| f.deadline <= now);
        if !due {
            return None;
        }
        let exhausted = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.tries >= max_tries);
        if exhausted {
            return self.in_flight.take().map(Err);
        }
        let flight = self.in_flight.as_mut()?;
        flight.tries += 1;
        flight.deadline = now + retry_delay(timeout, flight.tries);
        Some(Ok(flight))
    }

    /// After a reconnection: the in-flight report (to send again at once,
    /// without spending a try; the hub deduplicates by client token).
    pub fn resend_after_reconnect(&mut self, now: u64, timeout: u64) -> Option<&InFlight> {
        let flight = self.in_flight.as_mut()?;
        flight.deadline = now + timeout;
        Some(flight)
    }

    /// After a 429 or 500: the next try waits for the back-off of the
    /// current one instead of going out at its deadline.
    pub fn back_off(&mut self, now: u64, timeout: u64) {
        if let Some(flight) = self.in_flight.as_mut() {
            flight.deadline = now + retry_delay(timeout, flight.tries);
        }
    }

    /// The next deadline, if a report is in flight.
    pub fn deadline(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.deadline)
    }

    /// True when nothing is in flight or waiting.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.waiting.is_empty()
    }

    /// Drops everything (the appliance unregistered).
    pub fn clear(&mut self) {
        self.in_flight = None;
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(task: &str, status: ReportedStatus, token: &str) -> Report {
        Report {
            params: UpdateParams {
                task_id: task.parse().expect("valid task id"),
                status,
                progress: None,
                status_details: None,
                result: None,
                error_message: None,
                expected_version: None,
                client_token: Some(token.into()),
            },
            then: FollowUp::None,
            task_arrived: 0,
        }
    }

    #[test]
    fn stop_and_wait_with_same_token_on_retry() {
        let mut q = UpdateQueue::default();
        q.push(report("a", ReportedStatus::InProgress, "tok-1"));
        q.push(report("a", ReportedStatus::Succeeded, "tok-2"));
        let first = q.start_next(0, 100).cloned();
        assert_eq!(
            first.and_then(|f| f.report.params.client_token),
            Some("tok-1".into())
        );
        assert!(q.start_next(0, 100).is_none());
        assert!(q.on_tick(99, 100, 3).is_none());
        assert_eq!(retry_delay(100, 1), 100);
        assert_eq!(retry_delay(100, 3), 400);
        assert_eq!(retry_delay(10_000, 9), MAX_RETRY_DELAY_MS);
        let retry = q.on_tick(100, 100, 3).and_then(Result::ok).cloned();
        assert_eq!(retry.as_ref().map(|f| f.tries), Some(2));
        assert_eq!(
            retry.and_then(|f| f.report.params.client_token),
            Some("tok-1".into())
        );
        assert!(q.on_tick(250, 100, 3).is_none(), "second wait is doubled");
        assert!(matches!(q.on_tick(300, 100, 3), Some(Ok(f)) if f.tries == 3));
        let gave_up = q.on_tick(700, 100, 3);
        assert!(matches!(gave_up, Some(Err(f)) if f.tries == 3));
        assert!(q.in_flight().is_none());
        let next = q.start_next(700, 100).cloned();
        assert_eq!(
            next.map(|f| f.report.params.status),
            Some(ReportedStatus::Succeeded)
        );
        assert!(q.settle("tok-1").is_none());
        assert!(q.settle("tok-2").is_some());
        assert!(q.is_idle());
    }

    #[test]
    fn full_queue_drops_progress_never_terminal() {
        let mut q = UpdateQueue::default();
        for _ in 0..UpdateQueue::CAPACITY {
            assert_eq!(
                q.push(report("a", ReportedStatus::Succeeded, "t")),
                Pushed::Queued
            );
        }
        assert_eq!(
            q.push(report("b", ReportedStatus::InProgress, "t")),
            Pushed::Refused
        );
        let mut q = UpdateQueue::default();
        q.push(report("a", ReportedStatus::InProgress, "t"));
        for _ in 1..UpdateQueue::CAPACITY {
            q.push(report("a", ReportedStatus::Failed, "t"));
        }
        assert_eq!(
            q.push(report("a", ReportedStatus::Failed, "t")),
            Pushed::DroppedOlder
        );
        assert!(q
            .waiting()
            .all(|r| r.params.status == ReportedStatus::Failed));
    }
}
