//! The embedded rumqttd: internal principals connect, QoS 1 works, strangers
//! are refused, persistent sessions keep what was published while offline.

use anyhow::{bail, Result};
use broker::{BrokerLimits, Credentials, EmbeddedBroker};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::time::timeout;

use crate::raw::{RawClient, WAIT};

fn options(broker: &EmbeddedBroker, id: &str, creds: &Credentials) -> MqttOptions {
    let addr = broker.addr();
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_credentials(creds.username.clone(), creds.password.clone());
    options
}

/// Polls `eventloop` until `want` matches an incoming packet.
async fn until<T>(
    eventloop: &mut EventLoop,
    mut want: impl FnMut(&Packet) -> Option<T>,
) -> Result<T> {
    let result = timeout(WAIT, async {
        loop {
            if let Event::Incoming(packet) = eventloop.poll().await? {
                if let Some(found) = want(&packet) {
                    return Ok::<T, anyhow::Error>(found);
                }
            }
        }
    })
    .await;
    match result {
        Ok(inner) => inner,
        Err(_) => bail!("expected packet not seen within {WAIT:?}"),
    }
}

#[tokio::test]
async fn hub_connects_and_qos1_round_trips() -> Result<()> {
    let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
    assert!(broker.addr().ip().is_loopback());
    assert_ne!(
        broker.hub_credentials().password,
        broker.edge_credentials().password
    );

    let (sub, mut sub_loop) =
        AsyncClient::new(options(&broker, "hub-sub", broker.hub_credentials()), 10);
    until(&mut sub_loop, |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await?;
    sub.subscribe("/sys/va/x/thing/job/update", QoS::AtLeastOnce)
        .await?;
    until(&mut sub_loop, |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await?;

    let (publisher, mut pub_loop) =
        AsyncClient::new(options(&broker, "edge-pub", broker.edge_credentials()), 10);
    publisher
        .publish(
            "/sys/va/x/thing/job/update",
            QoS::AtLeastOnce,
            false,
            "hello",
        )
        .await?;
    until(&mut pub_loop, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await?;

    let got = until(&mut sub_loop, |p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(&got.payload[..], b"hello");
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_are_refused() -> Result<()> {
    let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
    let wrong = Credentials {
        username: "hub".to_owned(),
        password: "not-the-secret".to_owned(),
    };
    let (_client, mut eventloop) = AsyncClient::new(options(&broker, "intruder", &wrong), 10);
    let outcome = timeout(WAIT, eventloop.poll()).await?;
    match outcome {
        Ok(Event::Incoming(Packet::ConnAck(ack)))
            if ack.code == rumqttc::ConnectReturnCode::Success =>
        {
            bail!("wrong password accepted")
        }
        _ => Ok(()),
    }
}

#[tokio::test]
async fn persistent_session_receives_what_was_published_offline() -> Result<()> {
    let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
    let hub = broker.hub_credentials();
    let login = Some((hub.username.as_str(), hub.password.as_str()));
    let topic = "/sys/va/offline/thing/job/notify";

    let (mut device, ack) = RawClient::connect(broker.addr(), "persistent-1", login, false).await?;
    assert_eq!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
    device.subscribe(&[topic]).await?;
    device.disconnect().await?; // returns once rumqttd has closed the session's socket

    let (mut publisher, _) = RawClient::connect(broker.addr(), "publisher-1", login, true).await?;
    publisher.publish(topic, b"while you were away").await?;

    let (mut device, ack) = RawClient::connect(broker.addr(), "persistent-1", login, false).await?;
    assert!(ack.session_present);
    let got = device.recv_publish().await?;
    assert_eq!(got.topic, topic);
    assert_eq!(&got.payload[..], b"while you were away");
    Ok(())
}
