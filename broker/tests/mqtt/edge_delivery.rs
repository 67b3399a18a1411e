//! Hub -> appliance delivery through the edge's one link to the broker:
//! an appliance gets only what it subscribed to, nothing is kept for an
//! offline appliance, and a slow appliance is closed without delaying the
//! others.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use broker::edge::{DisconnectReason, EdgeHandle, PresenceEvent};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use tokio::time::timeout;

use crate::fleet::Fleet;
use crate::raw::{RawClient, WAIT};

/// Waits until the edge's counters satisfy `want`.
async fn stats_until(
    edge: &EdgeHandle,
    want: impl Fn(broker::edge::EdgeStats) -> bool,
) -> Result<()> {
    let wait = async {
        while !want(edge.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(WAIT, wait)
        .await
        .map_err(|_| anyhow::anyhow!("edge stats never matched: {:?}", edge.stats()))
}

#[tokio::test]
async fn an_appliance_receives_only_the_topics_it_subscribed_to() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let mut hub = fleet.hub("hub-delivery").await?;
    let (mut device, _) =
        RawClient::connect(fleet.plain_addr(), &id, Some((&id, &a.token)), true).await?;
    device.subscribe(&[&a.topic("job/update_reply")]).await?;

    // Unsubscribed topics first: had either been delivered, it would arrive
    // before the subscribed one.
    hub.publish(&a.topic("job/notify"), b"not asked for")
        .await?;
    hub.publish(&a.topic("job/get_reply"), b"not asked for")
        .await?;
    hub.publish(&a.topic("job/update_reply"), b"asked for")
        .await?;
    let got = device.recv_publish().await?;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (a.topic("job/update_reply").as_str(), &b"asked for"[..])
    );
    device.send(Packet::PingReq).await?;
    assert_eq!(
        device.recv().await?,
        Packet::PingResp,
        "nothing else queued"
    );
    stats_until(&fleet.edge, |s| {
        s.messages_dropped == 2 && s.messages_queued == 1
    })
    .await
}

#[tokio::test]
async fn nothing_is_kept_for_an_offline_appliance() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let login = Some((id.as_str(), a.token.as_str()));
    let mut hub = fleet.hub("hub-offline").await?;

    let (mut device, ack) = RawClient::connect(fleet.plain_addr(), &id, login, false).await?;
    assert!(!ack.session_present);
    device.subscribe(&[&a.topic("job/notify")]).await?;
    device.disconnect().await?;

    hub.publish(&a.topic("job/notify"), b"while offline")
        .await?;
    stats_until(&fleet.edge, |s| s.messages_dropped == 1).await?;

    let (mut device, ack) = RawClient::connect(fleet.plain_addr(), &id, login, false).await?;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present, "the edge keeps no offline session");
    device.subscribe(&[&a.topic("job/notify")]).await?;
    device.send(Packet::PingReq).await?;
    assert_eq!(
        device.recv().await?,
        Packet::PingResp,
        "the message is gone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_appliance_is_closed_without_delaying_the_others() -> Result<()> {
    let mut fleet =
        Fleet::start_tuned(2, |config| config.write_timeout = Duration::from_secs(2)).await?;
    let (slow, quick) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let (ids, idq) = (slow.id.to_string(), quick.id.to_string());
    let mut hub = fleet.hub("hub-slow").await?;
    let (mut stalled, _) =
        RawClient::connect(fleet.plain_addr(), &ids, Some((&ids, &slow.token)), true).await?;
    stalled.subscribe(&[&slow.topic("job/notify")]).await?;
    let (mut device, _) =
        RawClient::connect(fleet.plain_addr(), &idq, Some((&idq, &quick.token)), true).await?;
    device.subscribe(&[&quick.topic("job/notify")]).await?;
    for _ in 0..2 {
        assert!(matches!(
            fleet.next_presence().await?,
            PresenceEvent::Connected { .. }
        ));
    }

    // The stalled appliance never reads again: 200 messages of 16 KiB
    // exceed its in-flight window, its inbox and its socket buffers.
    let big = vec![b'x'; 16 * 1024];
    for _ in 0..200 {
        hub.publish(&slow.topic("job/notify"), &big).await?;
    }
    let started = Instant::now();
    hub.publish(&quick.topic("job/notify"), b"on time").await?;
    assert_eq!(&device.recv_publish().await?.payload[..], b"on time");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "delayed by {elapsed:?}");

    match fleet.next_presence().await? {
        PresenceEvent::Disconnected {
            appliance_id,
            reason,
            ..
        } => assert_eq!(
            (appliance_id, reason),
            (slow.id, DisconnectReason::SlowConsumer)
        ),
        other => bail!("expected the slow appliance's end, got {other:?}"),
    }
    stalled.wait_closed().await?;
    Ok(())
}
