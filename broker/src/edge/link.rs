//! The edge's one link to the broker: a single MQTT connection (rumqttc)
//! as the internal principal `edge`, shared by every appliance session.
//!
//! - Device -> hub: sessions hand the PUBLISHes `guard` allowed to the
//!   link's [`AsyncClient`] (QoS 1, in order, large in-flight window).
//! - Hub -> device: the link subscribes (QoS 1) to the hub -> device
//!   topics of every appliance of its product key
//!   (`protocol::topic::edge_filters`), parses the topic of each incoming
//!   message and offers it to the inbox of that appliance's live session
//!   (`sessions`), never waiting; rumqttd thus holds three filters for the
//!   edge whatever the fleet size, instead of three per appliance.
//!
//! The link is *up* from the SUBACK of those filters until the connection
//! is lost; each time it comes up it gets a new epoch. A session started
//! in one epoch ends ([`super::DisconnectReason::BrokerClosed`]) when that
//! epoch ends: messages for it may have been lost meanwhile, and an
//! appliance pulls `$next` when it reconnects. While the link is down new
//! appliances are refused with CONNACK 0x03. The edge starts accepting
//! only once the link is up (rumqttd drops a publish no filter matches).
//!
//! rumqttd quirks respected here: the client id does not look like an
//! appliance id (a UUID), and after DISCONNECT the link waits for rumqttd
//! to close the connection rather than closing first (see
//! `crate::upstream`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protocol::Topic;
use rand::RngCore;
use rumqttc::mqttbytes::v4::{Publish, SubscribeReasonCode};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::sync::{oneshot, watch};

use super::inbox::Offer;
use super::{BrokerEndpoint, Shared};

/// Requests (publishes from sessions) queued for the link's event loop.
const REQUESTS: usize = 16_384;
/// QoS 1 publishes to the broker awaiting its PUBACK.
const INFLIGHT: u16 = 1_000;
/// Keepalive of the link's connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Reconnect back-off bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Time rumqttd gets to close the connection after the link's DISCONNECT.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Counters of hub -> device messages.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Handed to a session's inbox.
    pub(crate) queued: AtomicU64,
    /// Dropped: no live session, no matching subscription, a full inbox,
    /// or not an appliance topic.
    pub(crate) dropped: AtomicU64,
}

/// The sessions' side of the link.
pub(crate) struct Link {
    client: AsyncClient,
    epoch: watch::Receiver<Option<u64>>,
    pub(crate) deliveries: Deliveries,
}

/// The event loop's side, run by [`drive`].
pub(crate) struct Driver {
    eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    epoch: watch::Sender<Option<u64>>,
}

impl Link {
    /// A link to `broker` that will subscribe to `filters`; it connects
    /// once [`drive`] runs.
    pub(crate) fn new(broker: &BrokerEndpoint, filters: Vec<String>) -> (Link, Driver) {
        let mut suffix = [0u8; 4];
        rand::rng().fill_bytes(&mut suffix);
        let client_id = format!("fleethub-edge-{}", hex::encode(suffix));
        let mut options =
            MqttOptions::new(client_id, broker.addr.ip().to_string(), broker.addr.port());
        options
            .set_credentials(
                broker.credentials.username.clone(),
                broker.credentials.password.clone(),
            )
            .set_clean_session(true)
            .set_keep_alive(KEEP_ALIVE)
            .set_inflight(INFLIGHT)
            .set_max_packet_size(broker.max_packet_size, broker.max_packet_size);
        let (client, eventloop) = AsyncClient::new(options, REQUESTS);
        let (epoch_tx, epoch) = watch::channel(None);
        let link = Link {
            client: client.clone(),
            epoch,
            deliveries: Deliveries::default(),
        };
        let driver = Driver {
            eventloop,
            client,
            filters,
            epoch: epoch_tx,
        };
        (link, driver)
    }

    /// The client sessions publish through.
    pub(crate) fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The current epoch, `None` while the link is down.
    pub(crate) fn epoch(&self) -> Option<u64> {
        *self.epoch.borrow()
    }

    /// Resolves when the link is up (or the driver is gone: `false`).
    pub(crate) async fn up(&self) -> bool {
        let mut epoch = self.epoch.clone();
        let up = epoch.wait_for(Option::is_some).await.is_ok();
        up
    }

    /// Resolves when `epoch` has ended (the link went down, or the driver
    /// is gone).
    pub(crate) fn lost(
        &self,
        epoch: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut watch = self.epoch.clone();
        async move {
            let _ = watch.wait_for(|now| *now != Some(epoch)).await;
        }
    }
}

/// Runs the link until `stop` fires (or its sender is dropped), then
/// disconnects and lets rumqttd close the connection.
pub(crate) async fn drive(
    mut driver: Driver,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut subscribe_due = false;
    let mut epoch = 0;
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            event = driver.eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = MIN_BACKOFF;
                subscribe_due = true;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_)))
                {
                    epoch += 1;
                    driver.epoch.send_replace(Some(epoch));
                    tracing::info!(epoch, "edge link to the broker up");
                } else {
                    tracing::error!(?ack, "broker refused the edge's subscriptions");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => route(&shared, publish),
            Ok(_) => {}
            Err(e) => {
                if driver.epoch.send_replace(None).is_some() {
                    tracing::warn!(error = %e, "edge link to the broker lost");
                } else {
                    tracing::warn!(error = %e, retry_in = ?backoff, "edge link to the broker failed");
                }
                tokio::select! {
                    _ = &mut stop => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if subscribe_due {
            let filters = driver
                .filters
                .iter()
                .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
            // The request queue may be full of publishes: retry after the
            // next event rather than wait on the queue this loop drains.
            subscribe_due = driver.client.try_subscribe_many(filters).is_err();
        }
    }
    driver.epoch.send_replace(None);
    close(driver).await;
}

/// Offers a hub -> device message to its appliance's session.
fn route(shared: &Shared, publish: Publish) {
    let counters = &shared.link.deliveries;
    let offer = match Topic::parse(&publish.topic) {
        Ok(topic) => shared.sessions.deliver(&topic.appliance_id, publish),
        Err(_) => None,
    };
    let counter = match offer {
        Some(Offer::Queued) => &counters.queued,
        Some(Offer::NotSubscribed | Offer::Overflow) | None => &counters.dropped,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Sends DISCONNECT after what is queued (wills of the last sessions) and
/// polls until rumqttd closes the connection, at most [`CLOSE_LIMIT`].
async fn close(mut driver: Driver) {
    let closing = async {
        let mut asked = false;
        loop {
            if !asked {
                asked = driver.client.try_disconnect().is_ok();
            }
            // Ends with an error once rumqttd closed after our DISCONNECT
            // (or at once if the link was down already).
            if driver.eventloop.poll().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing).await;
}
