//! Traffic through the edge: an appliance's update reaches the hub, the
//! hub's notify reaches the appliance, presence is reported, shutdown and
//! reconnects close sessions.

use anyhow::Result;
use broker::edge::{DisconnectReason, PresenceEvent};
use rumqttc::mqttbytes::v4::ConnectReturnCode;

use crate::fleet::Fleet;
use crate::raw::RawClient;
use crate::tools::{mosquitto_args, Tool};

#[tokio::test]
async fn update_reaches_the_hub_and_notify_reaches_the_appliance() -> Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let mut hub = fleet.hub("hub-traffic").await?;
    hub.subscribe(&["/sys/+/+/thing/job/update"]).await?;

    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    args.extend([
        "-t".into(),
        a.topic("job/update"),
        "-m".into(),
        r#"{"id":"u1"}"#.into(),
    ]);
    let (status, _, stderr) = Tool::spawn("mosquitto_pub", &args)?.finish().await?;
    assert!(status.success(), "mosquitto_pub failed: {stderr}");
    let got = hub.recv_publish().await?;
    assert_eq!(got.topic, a.topic("job/update"));
    assert_eq!(&got.payload[..], br#"{"id":"u1"}"#);

    let PresenceEvent::Connected {
        appliance_id,
        session,
        ..
    } = fleet.next_presence().await?
    else {
        anyhow::bail!("expected Connected");
    };
    assert_eq!(appliance_id, a.id);
    match fleet.next_presence().await? {
        PresenceEvent::Disconnected {
            session: s, reason, ..
        } => {
            assert_eq!(s, session);
            assert_eq!(reason, DisconnectReason::ClientDisconnect);
        }
        other => anyhow::bail!("expected Disconnected, got {other:?}"),
    }

    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    args.extend([
        "-t".into(),
        a.topic("job/notify"),
        "-C".into(),
        "1".into(),
        "-W".into(),
        "10".into(),
    ]);
    let mut sub = Tool::spawn_line_buffered("mosquitto_sub", &args)?;
    sub.line_where(|l| l.starts_with("Subscribed (mid: 1): 1"))
        .await?;
    hub.publish(&a.topic("job/notify"), br#"{"id":"n1"}"#)
        .await?;
    sub.line_where(|l| l == r#"{"id":"n1"}"#).await?;
    let (status, _, stderr) = sub.finish().await?;
    assert!(status.success(), "mosquitto_sub failed: {stderr}");
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_sessions_and_reports_them() -> Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let (mut device, _) =
        RawClient::connect(fleet.plain_addr(), &id, Some((&id, &a.token)), true).await?;
    assert!(matches!(
        fleet.next_presence().await?,
        PresenceEvent::Connected { .. }
    ));
    let Fleet {
        edge, mut presence, ..
    } = fleet;
    tokio::time::timeout(crate::raw::WAIT, edge.shutdown()).await?;
    device.wait_closed().await?;
    match presence.recv().await {
        Some(PresenceEvent::Disconnected { reason, .. }) => {
            assert_eq!(reason, DisconnectReason::Shutdown)
        }
        other => anyhow::bail!("expected Disconnected(Shutdown), got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_reconnect_closes_the_previous_session_first() -> Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let login = Some((id.as_str(), a.token.as_str()));
    let (mut old, _) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    let PresenceEvent::Connected { session: first, .. } = fleet.next_presence().await? else {
        anyhow::bail!("expected Connected");
    };

    let (mut new, ack) = RawClient::connect(fleet.plain_addr(), &id, login, true).await?;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    old.wait_closed().await?;
    match fleet.next_presence().await? {
        PresenceEvent::Disconnected {
            session, reason, ..
        } => {
            assert_eq!((session, reason), (first, DisconnectReason::TakenOver));
        }
        other => anyhow::bail!("expected the old session's end first, got {other:?}"),
    }
    assert!(
        matches!(fleet.next_presence().await?, PresenceEvent::Connected { session, .. } if session > first)
    );
    new.send(rumqttc::mqttbytes::v4::Packet::PingReq).await?;
    assert_eq!(new.recv().await?, rumqttc::mqttbytes::v4::Packet::PingResp);
    Ok(())
}

#[tokio::test]
async fn the_will_is_published_on_a_lost_connection_only() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let mut hub = fleet.hub("hub-will").await?;
    hub.subscribe(&["/sys/+/+/thing/event/metrics/post"])
        .await?;
    let will_connect = |message: &'static str| {
        let mut connect = rumqttc::mqttbytes::v4::Connect::new(id.clone());
        connect.keep_alive = 30;
        connect.set_login(id.clone(), a.token.clone());
        connect.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            a.topic("event/metrics/post"),
            message,
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            false,
        ));
        connect
    };
    let addr = fleet.plain_addr();
    let connect = |message| {
        let packet = rumqttc::mqttbytes::v4::Packet::Connect(will_connect(message));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let mut client = RawClient::new(tcp);
            client.send(packet).await?;
            match client.recv().await? {
                rumqttc::mqttbytes::v4::Packet::ConnAck(ack) => {
                    anyhow::ensure!(ack.code == ConnectReturnCode::Success, "{ack:?}")
                }
                other => anyhow::bail!("expected CONNACK, got {other:?}"),
            }
            Ok::<_, anyhow::Error>(client)
        }
    };

    connect("after DISCONNECT").await?.disconnect().await?;
    let lost = connect("lost").await?;
    drop(lost); // closed without DISCONNECT
    let got = hub.recv_publish().await?;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (a.topic("event/metrics/post").as_str(), &b"lost"[..])
    );
    Ok(())
}
