//! Releases queued executions: wakes when a job is created (and once a
//! second in any case), claims queued executions in batches inside store
//! transactions, and hands the notifications saved with them to the outbox.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::mqtt::outbox::Outbox;
use crate::store::Store;

/// Executions released per transaction.
const BATCH: usize = 1000;
/// How often the scheduler looks for work when nobody wakes it.
const TICK: Duration = Duration::from_secs(1);

/// Wakes the scheduler.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl SchedulerHandle {
    /// Asks the scheduler to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the release loop.
pub fn start(
    store: Store,
    outbox: Outbox,
    clock: SharedClock,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> SchedulerHandle {
    let handle = SchedulerHandle::default();
    let wake = handle.wake.clone();
    tracker.spawn(async move {
        loop {
            loop {
                match store.release(None, BATCH, clock.now()).await {
                    Ok(messages) if messages.is_empty() => break,
                    Ok(messages) => outbox.send(messages).await,
                    Err(err) => {
                        tracing::error!(%err, "releasing executions failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    });
    handle
}
