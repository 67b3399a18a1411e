//! Handles device publishes concurrently, at most `max_in_flight` at once:
//! parse the topic, throttle, let the [`DeviceGateway`] answer, publish the
//! reply.
//!
//! The broker's PUBACK is sent by the client as soon as a publish is read
//! (in arrival order, as MQTT 3.1.1 wants): it only says the hub has the
//! message. The acknowledgement that counts is the reply, sent after the
//! transition is committed; an appliance that gets none repeats the request
//! with the same clientToken, and the hub answers it without applying it
//! twice. Acknowledging after handling instead would bound the hub's intake
//! by the broker's in-flight window (rumqttd: 100) times the commit latency.

use std::sync::Arc;

use protocol::message::Reply;
use protocol::{MessageKind, ReplyCode, Topic};
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, Semaphore};
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
        let client = client.clone();
        let gateway = gateway.clone();
        let throttle = throttle.clone();
        tracker.spawn(async move {
            handle(&client, &gateway, &throttle, &publish).await;
            drop(permit);
        });
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
