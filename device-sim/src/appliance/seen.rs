//! The expiring set of task ids an appliance has started, with the final
//! report of each once it has one, so that no task runs twice whatever the
//! hub or the broker redelivers: a task that comes back gets its recorded
//! final report again (same clientToken), never a second run. Bounded in
//! time (entries expire) and in size (the oldest entry goes first).

use std::collections::VecDeque;

use protocol::TaskId;

use super::Report;

#[derive(Debug, Clone)]
struct Entry {
    task: TaskId,
    expires_at: u64,
    final_report: Option<Box<Report>>,
}

/// What the set knows about a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seen<'a> {
    /// Never started (or forgotten).
    No,
    /// Started, no final report (running, or left unanswered on purpose).
    Started,
    /// Finished with this final report.
    Finished(&'a Report),
}

/// Task ids seen recently, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SeenTasks {
    entries: VecDeque<Entry>,
}

impl SeenTasks {
    /// Most ids kept; beyond it the oldest is forgotten early.
    pub const CAPACITY: usize = 32;

    /// Remembers that `task` started, until `expires_at` (monotonic ms).
    pub fn insert(&mut self, task: TaskId, expires_at: u64) {
        if self.entries.len() >= Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            task,
            expires_at,
            final_report: None,
        });
    }

    /// Records the final report of a started task.
    pub fn finish(&mut self, report: &Report) {
        let task = &report.params.task_id;
        if let Some(entry) = self.entries.iter_mut().rev().find(|e| e.task == *task) {
            entry.final_report = Some(Box::new(report.clone()));
        }
    }

    /// What is known about `task` at `now`.
    pub fn get(&self, task: &TaskId, now: u64) -> Seen<'_> {
        let entry = self
            .entries
            .iter()
            .rev()
            .find(|e| e.task == *task && e.expires_at > now);
        match entry {
            None => Seen::No,
            Some(Entry {
                final_report: Some(report),
                ..
            }) => Seen::Finished(report),
            Some(_) => Seen::Started,
        }
    }

    /// True when `task` was seen and has not expired at `now`.
    pub fn contains(&self, task: &TaskId, now: u64) -> bool {
        self.get(task, now) != Seen::No
    }

    /// Forgets every entry expired at `now`.
    pub fn expire(&mut self, now: u64) {
        self.entries.retain(|e| e.expires_at > now);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the appliance unregistered).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use protocol::message::UpdateParams;
    use protocol::ReportedStatus;

    use super::super::FollowUp;
    use super::*;

    fn id(n: usize) -> TaskId {
        format!("t{n}").parse().expect("valid task id")
    }

    #[test]
    fn expires_and_stays_bounded() {
        let mut seen = SeenTasks::default();
        seen.insert(id(0), 100);
        assert!(seen.contains(&id(0), 99));
        assert!(!seen.contains(&id(0), 100));
        seen.expire(100);
        assert!(seen.is_empty());
        for n in 0..SeenTasks::CAPACITY + 5 {
            seen.insert(id(n), 1000);
        }
        assert_eq!(seen.len(), SeenTasks::CAPACITY);
        assert!(!seen.contains(&id(0), 0));
        assert!(seen.contains(&id(SeenTasks::CAPACITY + 4), 0));
    }

    #[test]
    fn keeps_the_final_report() {
        let mut seen = SeenTasks::default();
        seen.insert(id(1), 1000);
        assert_eq!(seen.get(&id(1), 0), Seen::Started);
        let report = Report {
            params: UpdateParams {
                task_id: id(1),
                status: ReportedStatus::Succeeded,
                progress: Some(100),
                status_details: None,
                result: None,
                error_message: None,
                expected_version: None,
                client_token: Some("tok".into()),
            },
            then: FollowUp::None,
            task_arrived: 0,
        };
        seen.finish(&report);
        assert_eq!(seen.get(&id(1), 0), Seen::Finished(&report));
        assert_eq!(seen.get(&id(2), 0), Seen::No);
    }
}
