//! The rollout duty: advances every active job (see
//! [`Store::advance_rollout`](crate::store::Store::advance_rollout)) and
//! hands the notifies committed with each step to the outbox. Jobs are
//! advanced a few at a time, so that their transactions share the store's
//! group commits.

use futures::stream::{self, StreamExt};

use super::{Due, Duties, BATCH};
use crate::clock::Millis;

/// Jobs advanced at once.
const CONCURRENT_JOBS: usize = 16;

pub(crate) async fn run(duties: &Duties, now: Millis) -> Due {
    let jobs = match duties.store.active_rollouts().await {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::error!(%err, "listing active rollouts failed");
            return Due::default();
        }
    };
    let steps = stream::iter(jobs)
        .map(|job| async move { (job, duties.store.advance_rollout(job, BATCH, now).await) })
        .buffer_unordered(CONCURRENT_JOBS)
        .collect::<Vec<_>>()
        .await;
    let mut due = Due::default();
    for (job, step) in steps {
        match step {
            Ok(step) => {
                duties.outbox.send(step.messages).await;
                due = due.merge(Due {
                    at: step.wake_at,
                    now: step.more_now,
                });
            }
            Err(err) => tracing::error!(%err, %job, "advancing a rollout failed"),
        }
    }
    due
}
