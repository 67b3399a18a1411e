//! Fleet-wide statistics: counters per outcome (atomics), gauges of
//! connected appliances, latency histograms (hdrhistogram: connect time,
//! notify to accepted SUCCEEDED, and time since a reference instant such as
//! a job's creation), the instants tasks arrived after that reference (for
//! the pace of a rollout), and the identity changes of the run (rotated
//! tokens, unregistered appliances). Shared by every appliance of a fleet.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use protocol::{ReplyCode, ReportedStatus, TaskType};
use serde::Serialize;
use tokio::time::Instant;

use crate::appliance::Record;
use crate::identity::IdentityChange;

macro_rules! counters {
    ($($name:ident => $text:literal),* $(,)?) => {
        /// Everything counted, one atomic each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter { $($name),* }

        impl Counter {
            /// Every counter, in report order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name),*];

            /// Its name in reports.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$name => $text),* }
            }
        }
    };
}

counters! {
    Connections => "connections",
    ConnectErrors => "connect_errors",
    Disconnects => "disconnects",
    Subscribed => "subscribed",
    TasksStarted => "tasks_started",
    TasksFromNext => "tasks_from_next",
    Duplicates => "duplicates_ignored",
    NeverAnswered => "never_answered",
    Canceled => "canceled",
    AcceptedInProgress => "accepted_in_progress",
    Succeeded => "succeeded",
    Failed => "failed",
    Rejected => "rejected",
    Refused400 => "refused_400",
    Refused404 => "refused_404",
    Refused409 => "refused_409",
    Refused429 => "refused_429",
    Refused500 => "refused_500",
    Retries => "retries",
    GaveUp => "gave_up",
    QueueFull => "queue_full",
    Reboots => "reboots",
    Crashes => "crashes",
    Rollbacks => "rollbacks",
    Churns => "churns",
    MetricsPosted => "metrics_posted",
    ChecksumMismatches => "checksum_mismatches",
    BadMessages => "bad_messages",
    PublishDropped => "publish_dropped",
    Unregistered => "unregistered",
    DownloadedBytes => "downloaded_bytes",
    DownloadsResumed => "downloads_resumed",
    LinksRefreshed => "links_refreshed",
    Uploads => "uploads",
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// Statistics of one fleet.
#[derive(Debug)]
pub struct Stats {
    counters: Vec<AtomicU64>,
    by_type: Vec<AtomicU64>,
    connected: AtomicI64,
    subscribed: AtomicI64,
    connect_ms: Mutex<Histogram<u64>>,
    task_ms: Mutex<Histogram<u64>>,
    since_reference_ms: Mutex<Histogram<u64>>,
    reference: Mutex<Option<Instant>>,
    received_ms: Mutex<Vec<u64>>,
    identities: Mutex<BTreeMap<usize, IdentityChange>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram() -> Mutex<Histogram<u64>> {
    // 1 ms to 1 hour at 3 significant digits: valid bounds, cannot fail.
    let histogram = Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds");
    Mutex::new(histogram)
}

fn record_ms(histogram: &Mutex<Histogram<u64>>, ms: u64) {
    if let Ok(mut h) = histogram.lock() {
        h.saturating_record(ms.max(1));
    }
}

fn percentiles(histogram: &Mutex<Histogram<u64>>) -> Percentiles {
    match histogram.lock() {
        Ok(h) => Percentiles::of(&h),
        Err(_) => Percentiles::default(),
    }
}

impl Percentiles {
    /// The percentiles of `h`, in its unit; zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            counters: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            by_type: TaskType::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicI64::new(0),
            subscribed: AtomicI64::new(0),
            connect_ms: histogram(),
            task_ms: histogram(),
            since_reference_ms: histogram(),
            reference: Mutex::new(None),
            received_ms: Mutex::new(Vec::new()),
            identities: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        let index = Counter::ALL.iter().position(|c| *c == counter);
        if let Some(slot) = index.and_then(|i| self.counters.get(i)) {
            slot.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        let index = Counter::ALL.iter().position(|c| *c == counter);
        index
            .and_then(|i| self.counters.get(i))
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// Tasks started, per task type.
    pub fn tasks_by_type(&self) -> Vec<(TaskType, u64)> {
        TaskType::ALL
            .into_iter()
            .zip(&self.by_type)
            .map(|(t, n)| (t, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// A connection was established after `elapsed`.
    pub fn connected(&self, elapsed: Duration) {
        self.add(Counter::Connections, 1);
        self.connected.fetch_add(1, Ordering::Relaxed);
        record_ms(&self.connect_ms, elapsed.as_millis() as u64);
    }

    /// A connection ended; `subscribed` if its SUBACK had arrived.
    pub fn disconnected(&self, subscribed: bool) {
        self.add(Counter::Disconnects, 1);
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if subscribed {
            self.subscribed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The SUBACK of a connection arrived.
    pub fn subscribed(&self) {
        self.add(Counter::Subscribed, 1);
        self.subscribed.fetch_add(1, Ordering::Relaxed);
    }

    /// Appliances connected now.
    pub fn connected_now(&self) -> u64 {
        self.connected.load(Ordering::Relaxed).max(0) as u64
    }

    /// Appliances connected and subscribed now.
    pub fn subscribed_now(&self) -> u64 {
        self.subscribed.load(Ordering::Relaxed).max(0) as u64
    }

    /// From now on, accepted SUCCEEDED reports also record the time since
    /// `at` (the creation of a job, for the job benchmark), and so does the
    /// arrival of every task other than a heartbeat.
    pub fn set_reference(&self, at: Instant) {
        if let Ok(mut reference) = self.reference.lock() {
            *reference = Some(at);
        }
    }

    fn reference(&self) -> Option<Instant> {
        self.reference.lock().ok().and_then(|r| *r)
    }

    /// Milliseconds from the reference instant to the arrival of each task
    /// (a notify or `$next` bringing a task the appliance had not run, and
    /// started at once), sorted.
    pub fn received_since_reference(&self) -> Vec<u64> {
        let mut received = self
            .received_ms
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        received.sort_unstable();
        received
    }

    /// Appliance `index` of the fleet changed its identity.
    pub fn identity_changed(&self, index: usize, change: IdentityChange) {
        if let Ok(mut changes) = self.identities.lock() {
            changes.insert(index, change);
        }
    }

    /// Every identity change so far, by appliance index.
    pub fn identity_changes(&self) -> BTreeMap<usize, IdentityChange> {
        self.identities
            .lock()
            .map(|changes| changes.clone())
            .unwrap_or_default()
    }

    /// Counts what an appliance recorded.
    pub fn record(&self, record: Record) {
        match record {
            Record::TaskStarted(task_type) => self.task_started(task_type),
            Record::Accepted { status, latency_ms } => self.accepted(status, latency_ms),
            Record::Refused(code) => self.add(refused(code), 1),
            Record::Duplicate => self.add(Counter::Duplicates, 1),
            Record::NeverAnswered => self.add(Counter::NeverAnswered, 1),
            Record::Canceled => self.add(Counter::Canceled, 1),
            Record::Retry => self.add(Counter::Retries, 1),
            Record::GaveUp => self.add(Counter::GaveUp, 1),
            Record::QueueFull => self.add(Counter::QueueFull, 1),
            Record::Rollback => self.add(Counter::Rollbacks, 1),
            Record::Crash => self.add(Counter::Crashes, 1),
            Record::Reboot => self.add(Counter::Reboots, 1),
            Record::Churn => self.add(Counter::Churns, 1),
            Record::MetricsPosted => self.add(Counter::MetricsPosted, 1),
            Record::ChecksumMismatch => self.add(Counter::ChecksumMismatches, 1),
            Record::BadMessage => self.add(Counter::BadMessages, 1),
            Record::FromNext => self.add(Counter::TasksFromNext, 1),
            Record::LinkRefreshed => self.add(Counter::LinksRefreshed, 1),
        }
    }

    fn task_started(&self, task_type: TaskType) {
        self.add(Counter::TasksStarted, 1);
        if let Some(i) = TaskType::ALL.iter().position(|t| *t == task_type) {
            self.by_type[i].fetch_add(1, Ordering::Relaxed);
        }
        let Some(at) = self
            .reference()
            .filter(|_| task_type != TaskType::Heartbeat)
        else {
            return;
        };
        if let Ok(mut received) = self.received_ms.lock() {
            received.push(at.elapsed().as_millis() as u64);
        }
    }

    fn accepted(&self, status: ReportedStatus, latency_ms: Option<u64>) {
        let counter = match status {
            ReportedStatus::InProgress => Counter::AcceptedInProgress,
            ReportedStatus::Succeeded => Counter::Succeeded,
            ReportedStatus::Failed => Counter::Failed,
            ReportedStatus::Rejected => Counter::Rejected,
        };
        self.add(counter, 1);
        if status != ReportedStatus::Succeeded {
            return;
        }
        if let Some(ms) = latency_ms {
            record_ms(&self.task_ms, ms);
        }
        if let Some(at) = self.reference() {
            record_ms(&self.since_reference_ms, at.elapsed().as_millis() as u64);
        }
    }

    /// Connect time percentiles (TCP + TLS + CONNECT to CONNACK).
    pub fn connect_percentiles(&self) -> Percentiles {
        percentiles(&self.connect_ms)
    }

    /// Notify (task arrival) to accepted SUCCEEDED percentiles.
    pub fn task_percentiles(&self) -> Percentiles {
        percentiles(&self.task_ms)
    }

    /// Reference instant to accepted SUCCEEDED percentiles.
    pub fn since_reference_percentiles(&self) -> Percentiles {
        percentiles(&self.since_reference_ms)
    }
}

fn refused(code: ReplyCode) -> Counter {
    match code {
        ReplyCode::BadRequest | ReplyCode::Ok => Counter::Refused400,
        ReplyCode::NotFound => Counter::Refused404,
        ReplyCode::Conflict => Counter::Refused409,
        ReplyCode::Throttled => Counter::Refused429,
        ReplyCode::Internal => Counter::Refused500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let stats = Stats::new();
        for ms in 1..=100 {
            stats.record(Record::Accepted {
                status: ReportedStatus::Succeeded,
                latency_ms: Some(ms),
            });
        }
        stats.record(Record::Refused(ReplyCode::Conflict));
        stats.record(Record::TaskStarted(TaskType::CollectLog));
        assert_eq!(stats.get(Counter::Succeeded), 100);
        assert_eq!(stats.get(Counter::Refused409), 1);
        let p = stats.task_percentiles();
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50, 99, 100));
        assert!(stats.tasks_by_type().contains(&(TaskType::CollectLog, 1)));
        stats.connected(Duration::from_millis(12));
        stats.subscribed();
        assert_eq!((stats.connected_now(), stats.subscribed_now()), (1, 1));
        stats.disconnected(true);
        assert_eq!((stats.connected_now(), stats.subscribed_now()), (0, 0));
    }

    #[test]
    fn task_arrivals_count_from_the_reference_without_heartbeats() {
        let stats = Stats::new();
        stats.record(Record::TaskStarted(TaskType::CollectMetrics));
        assert!(
            stats.received_since_reference().is_empty(),
            "no reference yet"
        );
        stats.set_reference(Instant::now());
        stats.record(Record::TaskStarted(TaskType::Heartbeat));
        stats.record(Record::TaskStarted(TaskType::CollectMetrics));
        stats.record(Record::TaskStarted(TaskType::CollectLog));
        assert_eq!(stats.received_since_reference().len(), 2);
        assert_eq!(stats.get(Counter::TasksStarted), 4);
    }
}
