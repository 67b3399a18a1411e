//! Drives the MQTT event loop: reconnects with backoff, subscribes on every
//! CONNACK, and hands incoming publishes to the dispatcher's queue without
//! ever waiting. When the queue is full the publish is dropped and counted:
//! its appliance gets no reply and repeats the request, which is the
//! protocol's own answer to an overloaded hub.
//!
//! [`Link::subscribed`] resolves on the first SUBACK: the hub starts the
//! device edge only then, because the embedded broker drops a publish that
//! no filter matches, so an appliance's first request would otherwise be
//! lost.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::MqttSettings;

/// Capacity of the queue between the event loop and the dispatcher.
pub const INBOUND_QUEUE: usize = 65_536;

/// The hub's MQTT connection, as [`start`] returns it.
pub struct Link {
    /// The client to publish with.
    pub client: AsyncClient,
    /// Incoming device publishes.
    pub inbound: mpsc::Receiver<Publish>,
    subscribed: watch::Receiver<bool>,
}

impl Link {
    /// Resolves once the broker acknowledged the hub's subscriptions (the
    /// first SUBACK); `false` if the connection's task ended before.
    pub fn subscribed(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut subscribed = self.subscribed.clone();
        async move {
            let done = subscribed.wait_for(|s| *s).await.is_ok();
            done
        }
    }
}

/// Connects (lazily: the event loop connects when first polled) and returns
/// the client, the queue of incoming device publishes and the SUBACK signal.
pub fn start(settings: &MqttSettings, shutdown: CancellationToken, tracker: &TaskTracker) -> Link {
    let (client, eventloop) = AsyncClient::new(settings.options(), 10_000);
    let (tx, inbound) = mpsc::channel(INBOUND_QUEUE);
    let (subscribed_tx, subscribed) = watch::channel(false);
    let filters = protocol::topic::hub_filters(settings.share_group.as_deref());
    let driver = Driver {
        client: client.clone(),
        filters,
        tx,
        subscribed: subscribed_tx,
        tracker: tracker.clone(),
    };
    tracker.spawn(driver.run(eventloop, shutdown));
    Link {
        client,
        inbound,
        subscribed,
    }
}

struct Driver {
    client: AsyncClient,
    filters: Vec<String>,
    tx: mpsc::Sender<Publish>,
    subscribed: watch::Sender<bool>,
    tracker: TaskTracker,
}

impl Driver {
    async fn run(self, mut eventloop: EventLoop, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to the MQTT broker");
                    backoff = Duration::from_millis(50);
                    self.subscribe();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    self.subscribed.send_replace(true);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if let Err(err) = self.tx.try_send(publish) {
                        tracing::warn!(%err, "device message queue full; message dropped, its appliance will repeat it");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?backoff, "MQTT connection lost");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Flush what was queued (replies, acknowledgements), then say goodbye.
        let _ = self.client.try_disconnect();
        let drain = async {
            while let Ok(event) = eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// Subscribing waits on the client's request queue, which this loop
    /// drains, so it runs in a task of its own.
    fn subscribe(&self) {
        let client = self.client.clone();
        let filters: Vec<_> = self
            .filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        self.tracker.spawn(async move {
            if let Err(err) = client.subscribe_many(filters).await {
                tracing::error!(%err, "subscribing to device topics failed");
            }
        });
    }
}
