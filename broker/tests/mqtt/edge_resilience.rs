//! Bad clients at the edge only ever hurt themselves: stalled sockets,
//! malformed and oversize packets, mixed subscriptions.

use std::time::{Duration, Instant};

use anyhow::Result;
use broker::edge::{DisconnectReason, PresenceEvent};
use rumqttc::mqttbytes::v4::SubscribeReasonCode::{Failure, Success};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, PubAck, Unsubscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::fleet::Fleet;
use crate::raw::RawClient;
use crate::tools::{mosquitto_args, Tool};

/// The first bytes of a TLS ClientHello record announcing 512 bytes that
/// never come.
const PARTIAL_CLIENT_HELLO: [u8; 9] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC];

#[tokio::test]
async fn stalled_sockets_do_not_delay_a_legitimate_appliance() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let port = fleet.tls_port();

    let mut stalled = Vec::with_capacity(501);
    stalled.push(TcpStream::connect(("127.0.0.1", port)).await?); // never starts TLS
    for _ in 0..500 {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
        socket.write_all(&PARTIAL_CLIENT_HELLO).await?;
        stalled.push(socket);
    }

    let started = Instant::now();
    let mut args = mosquitto_args(port, &fleet.ca(), &id, &id, &a.token);
    args.extend([
        "-t".into(),
        a.topic("job/update"),
        "-m".into(),
        "through".into(),
    ]);
    let (status, _, stderr) = Tool::spawn("mosquitto_pub", &args)?.finish().await?;
    let elapsed = started.elapsed();
    assert!(status.success(), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(5),
        "legitimate connect took {elapsed:?}"
    );
    assert!(
        fleet.edge.stats().open_connections >= 501,
        "{:?}",
        fleet.edge.stats()
    );
    drop(stalled);
    Ok(())
}

#[tokio::test]
async fn malformed_bytes_after_connect_close_only_that_connection() -> Result<()> {
    let mut fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let (ida, idb) = (a.id.to_string(), b.id.to_string());
    let mut hub = fleet.hub("hub-malformed").await?;
    hub.subscribe(&["/sys/+/+/thing/job/update"]).await?;

    let mut good = fleet.tls().await?;
    assert_eq!(
        good.handshake(&idb, Some((&idb, &b.token)), true)
            .await?
            .code,
        ConnectReturnCode::Success
    );
    let mut bad = fleet.tls().await?;
    assert_eq!(
        bad.handshake(&ida, Some((&ida, &a.token)), true)
            .await?
            .code,
        ConnectReturnCode::Success
    );
    for _ in 0..2 {
        assert!(matches!(
            fleet.next_presence().await?,
            PresenceEvent::Connected { .. }
        ));
    }

    bad.send_raw(&[0x00, 0x03, 0xDE, 0xAD, 0xBE]).await?;
    bad.wait_closed().await?;
    match fleet.next_presence().await? {
        PresenceEvent::Disconnected {
            appliance_id,
            reason,
            ..
        } => {
            assert_eq!(appliance_id, a.id);
            assert!(
                matches!(reason, DisconnectReason::ProtocolViolation(_)),
                "{reason:?}"
            );
        }
        other => anyhow::bail!("expected Disconnected, got {other:?}"),
    }

    good.publish(&b.topic("job/update"), b"unaffected").await?;
    assert_eq!(&hub.recv_publish().await?.payload[..], b"unaffected");
    Ok(())
}

#[tokio::test]
async fn oversize_and_server_only_packets_close_the_connection() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let login = Some((id.as_str(), a.token.as_str()));

    let (mut big, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    let mut publish = rumqttc::mqttbytes::v4::Publish::new(
        a.topic("job/update"),
        QoS::AtLeastOnce,
        vec![b'x'; 70 * 1024],
    );
    publish.pkid = 1;
    big.send(Packet::Publish(publish)).await?;
    big.wait_closed().await?;

    let (mut rogue, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    rogue.send(Packet::PingResp).await?;
    rogue.wait_closed().await?;

    let (mut twice, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    twice
        .send(Packet::Connect(rumqttc::mqttbytes::v4::Connect::new(
            id.clone(),
        )))
        .await?;
    twice.wait_closed().await?;
    Ok(())
}

#[tokio::test]
async fn mixed_subscribe_gets_merged_codes_and_unsubscribe_is_answered() -> Result<()> {
    let fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let id = a.id.to_string();
    let (mut device, _) =
        RawClient::connect(fleet.plain_addr(), &id, Some((&id, &a.token)), true).await?;
    let codes = device
        .subscribe(&[
            &b.topic("job/notify"),
            &a.topic("job/notify"),
            "#",
            &a.topic("job/+"),
        ])
        .await?;
    assert_eq!(
        codes,
        [
            Failure,
            Success(QoS::AtLeastOnce),
            Failure,
            Success(QoS::AtLeastOnce)
        ]
    );

    let mut unsubscribe = Unsubscribe::new(a.topic("job/notify"));
    unsubscribe.topics.push("#".into());
    unsubscribe.pkid = 77;
    device.send(Packet::Unsubscribe(unsubscribe)).await?;
    match device.recv().await? {
        Packet::UnsubAck(ack) => assert_eq!(ack.pkid, 77),
        other => anyhow::bail!("expected UNSUBACK, got {other:?}"),
    }
    // rumqttd's own UNSUBACK was dropped: the next packet is the PINGRESP.
    device.send(Packet::PingReq).await?;
    assert_eq!(device.recv().await?, Packet::PingResp);
    Ok(())
}

/// Appliances connecting and disconnecting concurrently, many times: the
/// edge lets rumqttd close each session after DISCONNECT, so no stale
/// disconnect ever kills a new connection and every broker listener stays
/// healthy (a broken rumqttd listener refuses all connections for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_keeps_every_broker_listener_healthy() -> Result<()> {
    let fleet = std::sync::Arc::new(Fleet::start(16).await?);
    let mut churn = tokio::task::JoinSet::new();
    for a in fleet.appliances.clone() {
        let fleet = std::sync::Arc::clone(&fleet);
        churn.spawn(async move {
            let id = a.id.to_string();
            for _ in 0..25 {
                let (client, ack) =
                    RawClient::connect(fleet.plain_addr(), &id, Some((&id, &a.token)), true)
                        .await?;
                anyhow::ensure!(ack.code == ConnectReturnCode::Success, "{ack:?}");
                client.disconnect().await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = churn.join_next().await {
        done??;
    }
    let hub = fleet.broker.hub_credentials();
    for (i, addr) in fleet.broker.listener_addrs().iter().enumerate() {
        let login = Some((hub.username.as_str(), hub.password.as_str()));
        let (_, ack) = RawClient::connect(*addr, &format!("health-{i}"), login, true).await?;
        assert_eq!(ack.code, ConnectReturnCode::Success, "listener {addr}");
    }
    Ok(())
}

#[tokio::test]
async fn pubacks_out_of_order_or_unsolicited_close_the_connection() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let login = Some((id.as_str(), a.token.as_str()));
    let mut hub = fleet.hub("hub-puback").await?;

    let (mut device, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    device.send(Packet::PubAck(PubAck::new(42))).await?;
    device.wait_closed().await?;

    let (mut device, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    device.subscribe(&[&a.topic("job/notify")]).await?;
    hub.publish(&a.topic("job/notify"), b"one").await?;
    hub.publish(&a.topic("job/notify"), b"two").await?;
    let mut pkids = Vec::new();
    for _ in 0..2 {
        match device.recv().await? {
            Packet::Publish(p) => pkids.push(p.pkid),
            other => anyhow::bail!("expected PUBLISH, got {other:?}"),
        }
    }
    device.send(Packet::PubAck(PubAck::new(pkids[1]))).await?;
    device.wait_closed().await?;
    Ok(())
}

#[tokio::test]
async fn over_the_connection_cap_appliances_get_server_unavailable() -> Result<()> {
    let fleet = Fleet::start_tuned(2, |config| config.max_connections = 1).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let (ida, idb) = (a.id.to_string(), b.id.to_string());
    let (_held, ack) =
        RawClient::connect(fleet.plain_addr(), &ida, Some((&ida, &a.token)), true).await?;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let (mut refused, ack) =
        RawClient::connect(fleet.plain_addr(), &idb, Some((&idb, &b.token)), true).await?;
    assert_eq!(ack.code, ConnectReturnCode::ServiceUnavailable);
    refused.wait_closed().await?;
    assert_eq!(fleet.edge.stats().refused_over_capacity, 1);
    Ok(())
}
