//! Unit tests of one session served over an in-memory pipe, with the link
//! replaced by a bare request channel. Time is tokio's paused clock: the
//! keepalive tests take no real time.

use std::future::pending;

use bytes::BytesMut;
use protocol::{ApplianceId, ProductKey};
use rumqttc::mqttbytes::v4::{Publish, Subscribe, SubscribeReasonCode, Unsubscribe};
use rumqttc::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::edge::flow::WINDOW;
use crate::edge::inbox::{Offer, CAPACITY};

const KEEPALIVE: Duration = Duration::from_secs(10);

struct Harness {
    id: ApplianceId,
    acl: Acl,
    inbox: Inbox,
    uplink: AsyncClient,
    requests: flume::Receiver<Request>,
}

impl Harness {
    fn new() -> Harness {
        let id = ApplianceId::new_random();
        let (tx, requests) = flume::bounded(64);
        Harness {
            id,
            acl: Acl::new(&ProductKey::default(), &id),
            inbox: Inbox::default(),
            uplink: AsyncClient::from_senders(tx),
            requests,
        }
    }

    fn wiring(&self) -> Wiring<'_> {
        Wiring {
            acl: &self.acl,
            inbox: &self.inbox,
            uplink: &self.uplink,
            max_packet_size: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            idle_limit: KEEPALIVE * 3 / 2,
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("/sys/va/{}/thing/{suffix}", self.id)
    }

    fn offer(&self, suffix: &str) -> Offer {
        self.inbox.offer(Publish::new(
            self.topic(suffix),
            QoS::AtLeastOnce,
            suffix.as_bytes().to_vec(),
        ))
    }
}

/// The appliance's end of the pipe.
struct Device {
    io: DuplexStream,
    buf: BytesMut,
}

impl Device {
    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).expect("encodable");
        self.io.write_all(&out).await.expect("pipe open");
    }

    async fn recv(&mut self) -> Packet {
        loop {
            match Packet::read(&mut self.buf, usize::MAX) {
                Ok(packet) => return packet,
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the edge: {e}"),
            }
            let read = self.io.read_buf(&mut self.buf).await.expect("pipe open");
            assert!(read > 0, "the edge closed the session");
        }
    }

    async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let mut subscribe = Subscribe::new(filters[0], QoS::AtLeastOnce);
        for filter in &filters[1..] {
            subscribe.add((*filter).to_owned(), QoS::AtLeastOnce);
        }
        subscribe.pkid = 1;
        self.send(Packet::Subscribe(subscribe)).await;
        match self.recv().await {
            Packet::SubAck(ack) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

fn pipe() -> (Device, DuplexStream) {
    let (device, edge) = tokio::io::duplex(256 * 1024);
    let device = Device {
        io: device,
        buf: BytesMut::new(),
    };
    (device, edge)
}

/// Runs `script` as the appliance while the session is served; panics if
/// the session ends first.
async fn with_session<T>(
    harness: &Harness,
    edge: &mut DuplexStream,
    script: impl Future<Output = T>,
) -> T {
    let wiring = harness.wiring();
    let serving = serve(edge, BytesMut::new(), &wiring, pending());
    tokio::select! {
        reason = serving => panic!("session ended early: {reason:?}"),
        out = script => out,
    }
}

/// Runs `script` as the appliance, then keeps the pipe open doing nothing;
/// returns why the edge ended the session.
async fn session_end(
    harness: &Harness,
    edge: &mut DuplexStream,
    script: impl Future<Output = ()>,
) -> DisconnectReason {
    let wiring = harness.wiring();
    let serving = serve(edge, BytesMut::new(), &wiring, pending());
    let script = async {
        script.await;
        pending::<()>().await;
    };
    tokio::select! {
        reason = serving => reason,
        () = script => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_appliance_is_closed_after_one_and_a_half_keepalives() {
    let harness = Harness::new();
    let (_device, mut edge) = pipe();
    let started = Instant::now();
    let reason = serve(&mut edge, BytesMut::new(), &harness.wiring(), pending()).await;
    assert_eq!(reason, DisconnectReason::KeepaliveTimeout);
    assert_eq!(started.elapsed(), KEEPALIVE * 3 / 2);
}

#[tokio::test(start_paused = true)]
async fn every_packet_restarts_the_keepalive_and_pings_are_answered() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let started = Instant::now();
    let wiring = harness.wiring();
    let serving = serve(&mut edge, BytesMut::new(), &wiring, pending());
    tokio::pin!(serving);
    let script = async {
        tokio::time::sleep(KEEPALIVE).await;
        device.send(Packet::PingReq).await;
        assert_eq!(device.recv().await, Packet::PingResp);
    };
    tokio::select! {
        reason = &mut serving => panic!("ended early: {reason:?}"),
        () = script => {}
    }
    assert_eq!(serving.await, DisconnectReason::KeepaliveTimeout);
    assert_eq!(started.elapsed(), KEEPALIVE + KEEPALIVE * 3 / 2);
}

#[tokio::test(start_paused = true)]
async fn only_subscribed_topics_are_delivered() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let notify = harness.topic("job/notify");
    with_session(&harness, &mut edge, async {
        let codes = device.subscribe(&[&notify, "#"]).await;
        assert_eq!(
            codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure
            ]
        );
        assert_eq!(harness.offer("job/get_reply"), Offer::NotSubscribed);
        assert_eq!(harness.offer("job/notify"), Offer::Queued);
        let Packet::Publish(got) = device.recv().await else {
            panic!("expected the notify");
        };
        assert_eq!(
            (got.topic.as_str(), got.qos, got.pkid),
            (notify.as_str(), QoS::AtLeastOnce, 1)
        );

        let mut unsubscribe = Unsubscribe::new(notify.clone());
        unsubscribe.pkid = 2;
        device.send(Packet::Unsubscribe(unsubscribe)).await;
        assert!(matches!(device.recv().await, Packet::UnsubAck(ack) if ack.pkid == 2));
        assert_eq!(harness.offer("job/notify"), Offer::NotSubscribed);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn at_most_the_window_is_in_flight_until_pubacks_come_in_order() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let notify = harness.topic("job/notify");
    with_session(&harness, &mut edge, async {
        device.subscribe(&[&notify]).await;
        for _ in 0..WINDOW + 2 {
            assert_eq!(harness.offer("job/notify"), Offer::Queued);
        }
        let mut pkids = Vec::new();
        for _ in 0..WINDOW {
            match device.recv().await {
                Packet::Publish(p) => pkids.push(p.pkid),
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        assert_eq!(pkids, (1..=WINDOW as u16).collect::<Vec<_>>());
        // Nothing more until the oldest is acknowledged: a PINGREQ's answer
        // comes next.
        device.send(Packet::PingReq).await;
        assert_eq!(device.recv().await, Packet::PingResp);
        device.send(Packet::PubAck(PubAck::new(1))).await;
        assert!(matches!(device.recv().await, Packet::Publish(p) if p.pkid == WINDOW as u16 + 1));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_out_of_order_puback_closes_the_session() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let notify = harness.topic("job/notify");
    let reason = session_end(&harness, &mut edge, async {
        device.subscribe(&[&notify]).await;
        harness.offer("job/notify");
        harness.offer("job/notify");
        device.recv().await;
        device.recv().await;
        device.send(Packet::PubAck(PubAck::new(2))).await;
    })
    .await;
    assert_eq!(
        reason,
        DisconnectReason::ProtocolViolation("PUBACK out of order or unsolicited")
    );
}

#[tokio::test(start_paused = true)]
async fn a_publish_goes_to_the_link_before_its_puback() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let update = harness.topic("job/update");
    with_session(&harness, &mut edge, async {
        let mut publish = Publish::new(update.clone(), QoS::AtLeastOnce, "{}");
        publish.pkid = 9;
        publish.retain = true;
        device.send(Packet::Publish(publish)).await;
        assert_eq!(device.recv().await, Packet::PubAck(PubAck::new(9)));
        let Ok(Request::Publish(up)) = harness.requests.try_recv() else {
            panic!("expected the publish on the link first");
        };
        assert_eq!(
            (up.topic.as_str(), up.qos, up.retain),
            (update.as_str(), QoS::AtLeastOnce, false)
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_overflowing_inbox_closes_the_session_as_a_slow_consumer() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    let notify = harness.topic("job/notify");
    let reason = session_end(&harness, &mut edge, async {
        device.subscribe(&[&notify]).await;
        // The appliance reads nothing more: the window fills, then the inbox.
        for _ in 0..WINDOW + CAPACITY + 1 {
            harness.offer("job/notify");
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(reason, DisconnectReason::SlowConsumer);
}

#[tokio::test(start_paused = true)]
async fn disconnect_ends_the_session_as_the_clients_choice() {
    let harness = Harness::new();
    let (mut device, mut edge) = pipe();
    device.send(Packet::Disconnect).await;
    let reason = serve(&mut edge, BytesMut::new(), &harness.wiring(), pending()).await;
    assert_eq!(reason, DisconnectReason::ClientDisconnect);
}

#[test]
fn buffers_shrink_back_after_a_large_packet() {
    let mut buf = BytesMut::new();
    recycle(&mut buf, 64 * 1024);
    assert!(buf.capacity() >= 64 * 1024);
    buf.extend_from_slice(&[1; 100]);
    recycle(&mut buf, 0);
    assert!(buf.is_empty() && buf.capacity() <= KEEP_CAPACITY);
    recycle(&mut buf, 10);
    assert!(buf.capacity() >= READ_CHUNK);
}
