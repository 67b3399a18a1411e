//! The scheduler: the single owner of the hub's periodic work. One loop
//! runs every duty in turn, one file per duty:
//! - [`rollouts`]: each active job's rollout: new targets of continuous
//!   jobs, timeouts, retries, abort criteria, and the release of due
//!   executions within the rate, the groups, the start time and the
//!   window (the store runs one job's duties in one transaction);
//! - [`heartbeat`]: the heartbeat round to connected appliances, and the
//!   OFFLINE mark of those that missed two;
//! - [`tokens`]: appliance token renewal;
//! - [`auto_upgrade`]: the upgrade of appliances whose update schedule
//!   comes within the hour, one staged job per customer.
//!
//! Every decision is pure (`crate::rollout`, `crate::presence`,
//! `crate::credentials::TokenPolicy`) and every bit of state is in the
//! database, so a restarted hub resumes where it stopped, and time comes
//! from the [`Clock`](crate::clock::Clock) only: tests move a
//! `ManualClock` and [`SchedulerHandle::wake`] the loop instead of sleeping.
//!
//! The loop runs a pass, then sleeps until the earliest due time the
//! duties named, at most one [`TICK`] (stage gates and abort criteria
//! change with device updates, which do not wake the loop), or until woken
//! (a job was created). A pass that stopped at a batch limit runs again at
//! once; a pass never loops without progress.

mod auto_upgrade;
mod heartbeat;
mod rollouts;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Millis, SharedClock};
use crate::credentials::TokenPolicy;
use crate::mqtt::outbox::Outbox;
use crate::presence::HeartbeatPolicy;
use crate::store::Store;

/// Executions released (or heartbeats sent) per transaction.
pub const BATCH: usize = 1000;
/// The longest the loop sleeps.
pub const TICK: Duration = Duration::from_secs(1);
/// The shortest sleep, when a due time has already come without work.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// What the scheduler's duties follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Heartbeat interval and liveness rules.
    pub heartbeat: HeartbeatPolicy,
    /// Token lifetime and renewal.
    pub tokens: TokenPolicy,
}

/// Wakes the scheduler.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl SchedulerHandle {
    /// Asks the scheduler to run a pass now (a job was created, or a test
    /// moved its clock).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// When a duty needs the loop again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// At this time (clock ms); None: no time of its own.
    pub(crate) at: Option<Millis>,
    /// At once: it stopped at a batch limit.
    pub(crate) now: bool,
}

/// Claims the fleet-wide duty `name` when it is due at `now` (its next
/// due time becomes `now + interval`, in the same write, so that one hub
/// replica runs it): `Ok` with the duty's next [`Due`] to run it now,
/// `Err` with what to return instead (not due yet, or the claim failed).
pub(crate) async fn claim(
    duties: &Duties,
    name: &'static str,
    now: Millis,
    interval: Millis,
) -> Result<Due, Due> {
    match duties.store.claim_duty(name, now, now + interval).await {
        Ok((claimed, due_at)) => {
            let due = Due {
                at: Some(due_at),
                now: false,
            };
            if claimed {
                Ok(due)
            } else {
                Err(due)
            }
        }
        Err(err) => {
            tracing::error!(%err, duty = name, "claiming a scheduler duty failed");
            Err(Due::default())
        }
    }
}

impl Due {
    fn merge(self, other: Due) -> Due {
        Due {
            at: [self.at, other.at].into_iter().flatten().min(),
            now: self.now || other.now,
        }
    }
}

/// The duties' shared collaborators.
pub(crate) struct Duties {
    pub(crate) store: Store,
    pub(crate) outbox: Outbox,
    pub(crate) config: SchedulerConfig,
}

/// The due times the fleet-wide duties named last, so that a pass does not
/// ask the database about a duty that is not due. The database stays the
/// truth: a duty another replica ran answers its new due time when asked.
#[derive(Debug, Default)]
struct Known {
    tokens: Option<Millis>,
    heartbeat: Option<Millis>,
    auto_upgrade: Option<Millis>,
}

impl Known {
    /// Runs `duty` unless its known due time is still to come.
    async fn run<F>(slot: &mut Option<Millis>, now: Millis, duty: F) -> Due
    where
        F: std::future::Future<Output = Due>,
    {
        if let Some(due) = slot.filter(|due| *due > now) {
            return Due {
                at: Some(due),
                now: false,
            };
        }
        let due = duty.await;
        *slot = if due.now { None } else { due.at };
        due
    }
}

impl Duties {
    /// One pass of every duty at `now`. Token renewal and auto-upgrade
    /// first: the jobs they create are released by the same pass.
    async fn pass(&self, known: &mut Known, now: Millis) -> Due {
        let tokens = Known::run(&mut known.tokens, now, tokens::run(self, now)).await;
        let heartbeat = Known::run(&mut known.heartbeat, now, heartbeat::run(self, now)).await;
        let upgrades = Known::run(&mut known.auto_upgrade, now, auto_upgrade::run(self, now)).await;
        let rollouts = rollouts::run(self, now).await;
        tokens.merge(heartbeat).merge(upgrades).merge(rollouts)
    }
}

/// Starts the loop.
pub fn start(
    store: Store,
    outbox: Outbox,
    clock: SharedClock,
    config: SchedulerConfig,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> SchedulerHandle {
    let handle = SchedulerHandle::default();
    let wake = handle.wake.clone();
    let duties = Duties {
        store,
        outbox,
        config,
    };
    tracker.spawn(async move {
        let mut known = Known::default();
        loop {
            let due = duties.pass(&mut known, clock.now()).await;
            if shutdown.is_cancelled() {
                break;
            }
            if due.now {
                tokio::task::yield_now().await;
                continue;
            }
            let sleep = sleep_for(due.at, clock.now());
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    });
    handle
}

/// How long to sleep until `due` (clock ms) from `now`, within
/// [`MIN_SLEEP`] and [`TICK`].
fn sleep_for(due: Option<Millis>, now: Millis) -> Duration {
    let Some(due) = due else {
        return TICK;
    };
    let millis = u64::try_from(due.saturating_sub(now)).unwrap_or(0);
    Duration::from_millis(millis).clamp(MIN_SLEEP, TICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_sleeps_until_the_due_time_within_bounds() {
        assert_eq!(sleep_for(None, 0), TICK);
        assert_eq!(sleep_for(Some(250), 0), Duration::from_millis(250));
        assert_eq!(sleep_for(Some(0), 100), MIN_SLEEP, "overdue: no busy loop");
        assert_eq!(sleep_for(Some(3_600_000), 0), TICK);
        let merged = Due {
            at: Some(5),
            now: false,
        }
        .merge(Due {
            at: Some(3),
            now: true,
        });
        assert_eq!(
            merged,
            Due {
                at: Some(3),
                now: true
            }
        );
    }
}
