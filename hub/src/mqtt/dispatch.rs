//! Handles device publishes concurrently, at most `max_in_flight` at once:
//! parse the topic, throttle, let the [`DeviceGateway`] answer, publish the
//! reply, then acknowledge the publish to the broker.
//!
//! Handling is concurrent but acknowledgements are not: MQTT 3.1.1 wants
//! PUBACKs in the order the PUBLISHes arrived, and rumqttd redelivers when
//! they are not. An acker task therefore takes publishes in arrival order
//! and acknowledges each once its handler is done. A slow handler delays
//! later PUBACKs, never later handling.

use std::sync::Arc;

use protocol::message::Reply;
use protocol::{MessageKind, ReplyCode, Topic};
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::throttle::Throttle;
use crate::device::{DeviceGateway, Outgoing};

/// Runs until `shutdown`, then lets the handlers in flight finish (the
/// tracker owns them).
pub async fn run(
    mut inbound: mpsc::Receiver<Publish>,
    client: AsyncClient,
    gateway: DeviceGateway,
    throttle: Arc<Throttle>,
    max_in_flight: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let (acks, ack_queue) = mpsc::channel(super::link::INBOUND_QUEUE);
    tracker.spawn(acker(client.clone(), ack_queue));
    loop {
        let publish = tokio::select! {
            () = shutdown.cancelled() => break,
            publish = inbound.recv() => match publish {
                Some(publish) => publish,
                None => break,
            },
        };
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (done, handled) = oneshot::channel();
        if acks.send((publish.clone(), handled)).await.is_err() {
            break;
        }
        let client = client.clone();
        let gateway = gateway.clone();
        let throttle = throttle.clone();
        tracker.spawn(async move {
            handle(&client, &gateway, &throttle, &publish).await;
            let _ = done.send(());
            drop(permit);
        });
    }
}

/// Acknowledges publishes in arrival order, each once it was handled. A
/// handler that never finished (the hub stopping) ends the acknowledgements:
/// what is left unacknowledged is redelivered to the next session.
async fn acker(client: AsyncClient, mut queue: mpsc::Receiver<(Publish, oneshot::Receiver<()>)>) {
    while let Some((publish, handled)) = queue.recv().await {
        if handled.await.is_err() {
            break;
        }
        if let Err(err) = client.ack(&publish).await {
            tracing::warn!(%err, "acknowledging a device message failed");
            break;
        }
    }
}

async fn handle(
    client: &AsyncClient,
    gateway: &DeviceGateway,
    throttle: &Throttle,
    publish: &Publish,
) {
    let topic = match Topic::parse(&publish.topic) {
        Ok(topic) => topic,
        Err(err) => {
            // Only reachable through a broker that lets clients publish
            // outside their namespace; there is nobody to answer.
            tracing::debug!(%err, "message on a foreign topic ignored");
            return;
        }
    };
    let reply = if throttle.admit(topic.appliance_id) {
        gateway.handle(&topic, &publish.payload).await
    } else {
        throttled(&topic, &publish.payload)
    };
    if let Some(Outgoing { topic, payload }) = reply {
        if let Err(err) = client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(%err, "publishing a reply failed");
        }
    }
}

fn throttled(topic: &Topic, payload: &[u8]) -> Option<Outgoing> {
    let kind = match topic.kind {
        MessageKind::JobGet => MessageKind::JobGetReply,
        MessageKind::JobUpdate => MessageKind::JobUpdateReply,
        _ => return None,
    };
    let id = protocol::message::peek_request_id(payload).unwrap_or_default();
    let reply: Reply<()> = Reply::new(
        id,
        kind,
        ReplyCode::Throttled,
        None,
        "throttled: retry later",
    );
    let reply_topic = Topic::new(topic.product_key.clone(), topic.appliance_id, kind);
    Some(Outgoing {
        topic: reply_topic.to_string(),
        payload: serde_json::to_vec(&reply).unwrap_or_default(),
    })
}
