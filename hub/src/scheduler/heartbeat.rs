//! The heartbeat duty: one batch of the heartbeat round per pass (see
//! [`Store::heartbeat_round`](crate::store::Store::heartbeat_round)); the
//! heartbeat notifies go to the outbox like any other.

use super::{Due, Duties, BATCH};
use crate::clock::Millis;

pub(crate) async fn run(duties: &Duties, now: Millis) -> Due {
    let policy = duties.config.heartbeat;
    match duties.store.heartbeat_round(policy, BATCH, now).await {
        Ok(batch) => {
            duties.outbox.send(batch.messages).await;
            Due {
                at: Some(batch.due_at),
                now: batch.more_now,
            }
        }
        Err(err) => {
            tracing::error!(%err, "heartbeat round failed");
            Due::default()
        }
    }
}
