//! The expiring set of task ids an appliance has started, so that no task
//! runs twice whatever the hub or the broker redelivers. Bounded both in
//! time (entries expire) and in size (the oldest entry goes first).

use std::collections::VecDeque;

use protocol::TaskId;

/// Task ids seen recently, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SeenTasks {
    entries: VecDeque<(TaskId, u64)>,
}

impl SeenTasks {
    /// Most ids kept; beyond it the oldest is forgotten early.
    pub const CAPACITY: usize = 32;

    /// Remembers `task` until `expires_at` (monotonic milliseconds).
    pub fn insert(&mut self, task: TaskId, expires_at: u64) {
        if self.entries.len() >= Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((task, expires_at));
    }

    /// True when `task` was seen and has not expired at `now`.
    pub fn contains(&self, task: &TaskId, now: u64) -> bool {
        self.entries
            .iter()
            .any(|(seen, expires_at)| seen == task && *expires_at > now)
    }

    /// Forgets every entry expired at `now`.
    pub fn expire(&mut self, now: u64) {
        self.entries.retain(|(_, expires_at)| *expires_at > now);
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
}
