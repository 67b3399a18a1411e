//! Publishes the notifications the store saved in the same transaction as
//! the transitions that caused them, then deletes them from the outbox.
//!
//! At start-up, before the hub takes any request, whatever a previous run
//! left in the outbox is published first. A message is deleted once it was
//! handed to the MQTT client; one lost between that hand-off and a crash is
//! still found by the appliance, which asks for `$next` on every connect.

use protocol::{MessageKind, Topic};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{OutboxMessage, Store, StoreError};

/// Outbox rows read per page at start-up.
const PAGE: usize = 1000;

/// Hands committed notifications to the publishing task.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Vec<OutboxMessage>>,
}

impl Outbox {
    /// Publishes what the outbox holds, then starts the publishing task.
    pub async fn start(
        client: AsyncClient,
        store: Store,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, StoreError> {
        loop {
            let page = store.pending_outbox(PAGE).await?;
            if page.is_empty() {
                break;
            }
            tracing::info!(
                count = page.len(),
                "publishing notifications left by the previous run"
            );
            publish(&client, &store, page).await?;
        }
        let (tx, mut rx) = mpsc::channel::<Vec<OutboxMessage>>(1024);
        tracker.spawn(async move {
            loop {
                let batch = tokio::select! {
                    () = shutdown.cancelled() => break,
                    batch = rx.recv() => match batch {
                        Some(batch) => batch,
                        None => break,
                    },
                };
                if let Err(err) = publish(&client, &store, batch).await {
                    tracing::error!(%err, "outbox: deleting published notifications failed");
                }
            }
        });
        Ok(Self { tx })
    }

    /// Queues committed notifications for publishing.
    pub async fn send(&self, messages: Vec<OutboxMessage>) {
        if messages.is_empty() {
            return;
        }
        if self.tx.send(messages).await.is_err() {
            tracing::warn!("outbox closed; notifications stay stored for the next start");
        }
    }
}

async fn publish(
    client: &AsyncClient,
    store: &Store,
    messages: Vec<OutboxMessage>,
) -> Result<(), StoreError> {
    let mut published = Vec::with_capacity(messages.len());
    for message in messages {
        let topic = Topic::new(
            message.product_key,
            message.appliance_id,
            MessageKind::JobNotify,
        );
        match client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, message.payload)
            .await
        {
            Ok(()) => published.push(message.id),
            Err(err) => {
                tracing::warn!(%err, "publishing a notification failed; kept for the next start");
                break;
            }
        }
    }
    store.ack_outbox(published).await.map(|_| ())
}
