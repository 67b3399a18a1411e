//! The rollout duty: advances every active job (see
//! [`Store::advance_rollout`](crate::store::Store::advance_rollout)) and
//! hands the notifies committed with each step to the outbox.

use super::{Due, Duties, BATCH};
use crate::clock::Millis;

pub(crate) async fn run(duties: &Duties, now: Millis) -> Due {
    let jobs = match duties.store.active_rollouts().await {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::error!(%err, "listing active rollouts failed");
            return Due::default();
        }
    };
    let mut due = Due::default();
    for job in jobs {
        match duties.store.advance_rollout(job, BATCH, now).await {
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
