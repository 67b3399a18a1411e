//! The vocabulary between an [`super::Appliance`] and its shell: the time
//! it is given, the behaviour shared by a fleet, the actions it asks for and
//! the records it leaves for the statistics.

use protocol::{MessageKind, ReplyCode, ReportedStatus, TaskType};

use super::{Download, Upload};
use crate::fault::FaultConfig;

/// The current time as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the fleet started; all deadlines use it.
    pub mono: u64,
    /// True wall clock, epoch milliseconds (before this appliance's skew).
    pub wall: i64,
}

/// How every appliance of a fleet behaves; shared by all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Simulated work time of a task without a transfer.
    pub work_ms: u64,
    /// How long to wait for `update_reply` / `get_reply` before a retry.
    pub reply_timeout_ms: u64,
    /// Sends of one request in all, the first included.
    pub max_tries: u8,
    /// How long a reboot keeps the appliance offline.
    pub reboot_ms: u64,
    /// Period of `event/metrics/post`; `None` posts only on collectMetrics.
    pub metrics_interval_ms: Option<u64>,
    /// How long a started task id is remembered.
    pub seen_ttl_ms: u64,
    /// Firmware version the appliances start with.
    pub initial_version: String,
    /// Faults to inject.
    pub faults: FaultConfig,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            work_ms: 50,
            reply_timeout_ms: 10_000,
            max_tries: 3,
            reboot_ms: 1_000,
            metrics_interval_ms: Some(300_000),
            seen_ttl_ms: 24 * 3_600_000,
            initial_version: "1.0.0".into(),
            faults: FaultConfig::default(),
        }
    }
}

/// Why the appliance goes offline on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// Reboot into new firmware: graceful, transfers are finished.
    Reboot,
    /// Crash in the middle of a download: abrupt, the transfer is cut.
    Crash,
    /// Offline churn: the network went away; transfers go on.
    Churn,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Subscribe to these filters (QoS 1).
    Subscribe(Vec<String>),
    /// Publish on this appliance's topic of `kind` (QoS 1).
    Publish {
        /// Which topic of the namespace.
        kind: MessageKind,
        /// JSON payload.
        payload: Vec<u8>,
    },
    /// Start (or resume) a download.
    Download(Download),
    /// PUT a body to a URL.
    Upload(Upload),
    /// Abandon the current transfer, if any.
    CancelTransfer,
    /// Disconnect and stay offline for `for_ms`, then reconnect.
    GoOffline {
        /// Why.
        reason: Offline,
        /// How long.
        for_ms: u64,
    },
    /// Use this MQTT password from the next connection on.
    SetPassword(String),
    /// The identity is gone (unregistered): disconnect for good.
    Forget,
    /// Something to count.
    Record(Record),
}

/// Things the statistics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A task (notify or `$next`) was accepted for execution.
    TaskStarted(TaskType),
    /// A task id seen before was ignored.
    Duplicate,
    /// A task left unanswered by the never-answer fault.
    NeverAnswered,
    /// The hub canceled the task being run.
    Canceled,
    /// The hub accepted a report (`update_reply` 200).
    Accepted {
        /// The status reported.
        status: ReportedStatus,
        /// Milliseconds from the task's arrival, for terminal reports.
        latency_ms: Option<u64>,
    },
    /// The hub answered a report or a get with another code.
    Refused(ReplyCode),
    /// A request was sent again after its reply timed out.
    Retry,
    /// A request got no reply after every try.
    GaveUp,
    /// A report was dropped because the queue was full.
    QueueFull,
    /// An upgrade came back on the old version.
    Rollback,
    /// The appliance crashed during a download.
    Crash,
    /// The appliance rebooted into new firmware.
    Reboot,
    /// The appliance went offline by churn.
    Churn,
    /// A metrics sample was posted.
    MetricsPosted,
    /// A download did not match its sha256.
    ChecksumMismatch,
    /// A payload from the hub could not be decoded.
    BadMessage,
    /// A task was started from a get `$next` answer (not a notify): the
    /// appliance caught up with a task released while it was away or busy.
    FromNext,
    /// A download link had expired (403) and a fresh one was fetched.
    LinkRefreshed,
}
