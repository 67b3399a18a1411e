//! Unit tests of the per-packet rules.

use super::*;
use protocol::ProductKey;
use rumqttc::mqttbytes::v4::{PubAck, PubRel, SubscribeFilter};

const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const OTHER: &str = "6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d";

fn acl() -> Acl {
    Acl::new(&ProductKey::default(), &ID.parse().expect("id"))
}

fn publish(topic: &str, qos: QoS, retain: bool) -> Packet {
    let mut p = Publish::new(topic, qos, "{}");
    p.pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
    p.retain = retain;
    Packet::Publish(p)
}

fn subscribe_packet(filters: &[(&str, QoS)]) -> Subscribe {
    let mut s = Subscribe::new_many(
        filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new((*f).to_owned(), *q)),
    );
    s.pkid = 3;
    s
}

#[test]
fn own_publish_is_handed_on_without_retain() {
    let topic = format!("/sys/va/{ID}/thing/job/update");
    let Verdict::Publish(p) = judge(&acl(), publish(&topic, QoS::AtLeastOnce, true)) else {
        panic!("expected a publish");
    };
    assert!(!p.retain);
    assert_eq!(p.topic, topic);
}

#[test]
fn foreign_or_qos2_publish_closes() {
    let own = format!("/sys/va/{ID}/thing/job/update");
    for packet in [
        publish(
            &format!("/sys/va/{OTHER}/thing/job/update"),
            QoS::AtLeastOnce,
            false,
        ),
        publish(
            &format!("/sys/va/{ID}/thing/job/notify"),
            QoS::AtMostOnce,
            false,
        ),
        publish(&own, QoS::ExactlyOnce, false),
    ] {
        assert!(matches!(judge(&acl(), packet), Verdict::Close(_)));
    }
}

#[test]
fn subscribe_grants_the_allowed_filters_at_qos_1_at_most() {
    let notify = format!("/sys/va/{ID}/thing/job/notify");
    let replies = format!("/sys/va/{ID}/thing/job/+");
    let s = subscribe_packet(&[
        ("#", QoS::AtLeastOnce),
        (&notify, QoS::ExactlyOnce),
        ("/sys/+/+/thing/job/notify", QoS::AtLeastOnce),
        (&replies, QoS::AtMostOnce),
        (&format!("/sys/va/{OTHER}/#"), QoS::AtLeastOnce),
    ]);
    let mut subs = Subscriptions::default();
    let ack = subscribe(&acl(), &mut subs, &s);
    use SubscribeReasonCode::*;
    assert_eq!(ack.pkid, 3);
    assert_eq!(
        ack.return_codes,
        [
            Failure,
            Success(QoS::AtLeastOnce),
            Failure,
            Success(QoS::AtMostOnce),
            Failure
        ]
    );
    assert_eq!(subs.len(), 2);
    assert_eq!(subs.qos_for(&notify), Some(QoS::AtLeastOnce));
    let other = format!("/sys/va/{OTHER}/thing/job/notify");
    assert_eq!(subs.qos_for(&other), None, "nothing refused was recorded");
}

#[test]
fn subscribe_beyond_the_filter_cap_is_refused() {
    let mut subs = Subscriptions::default();
    for i in 0..crate::edge::subscriptions::MAX_FILTERS {
        assert!(subs.add(&format!("x/{i}"), QoS::AtLeastOnce));
    }
    let s = subscribe_packet(&[(&format!("/sys/va/{ID}/thing/job/notify"), QoS::AtLeastOnce)]);
    let ack = subscribe(&acl(), &mut subs, &s);
    assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure]);
}

#[test]
fn unsubscribe_removes_and_is_always_answered() {
    let notify = format!("/sys/va/{ID}/thing/job/notify");
    let mut subs = Subscriptions::default();
    subs.add(&notify, QoS::AtLeastOnce);
    let mut u = Unsubscribe::new("#");
    u.topics.push(notify.clone());
    u.pkid = 5;
    let Verdict::Unsubscribe(u) = judge(&acl(), Packet::Unsubscribe(u)) else {
        panic!("expected an unsubscribe");
    };
    assert_eq!(unsubscribe(&mut subs, &u).pkid, 5);
    assert_eq!(subs.qos_for(&notify), None);
}

#[test]
fn packets_a_client_may_not_send_close() {
    let closing = [
        Packet::ConnAck(rumqttc::mqttbytes::v4::ConnAck::new(
            rumqttc::mqttbytes::v4::ConnectReturnCode::Success,
            false,
        )),
        Packet::SubAck(SubAck::new(1, vec![])),
        Packet::UnsubAck(UnsubAck::new(1)),
        Packet::PingResp,
        Packet::PubRel(PubRel::new(1)),
        Packet::Connect(rumqttc::mqttbytes::v4::Connect::new(ID)),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 1,
            topics: vec![],
        }),
    ];
    for packet in closing {
        assert!(
            matches!(judge(&acl(), packet.clone()), Verdict::Close(_)),
            "{packet:?}"
        );
    }
    assert_eq!(judge(&acl(), Packet::PingReq), Verdict::Ping);
    let ack = Packet::PubAck(PubAck::new(4));
    assert_eq!(judge(&acl(), ack), Verdict::PubAck(4));
    assert_eq!(judge(&acl(), Packet::Disconnect), Verdict::Disconnect);
}

#[test]
fn fixed_header_flags() {
    assert!(flags_ok(0x30) && flags_ok(0x3B) && flags_ok(0x82) && flags_ok(0xC0) && flags_ok(0x62));
    assert!(!flags_ok(0x80) && !flags_ok(0xC1) && !flags_ok(0xA0) && !flags_ok(0x41));
}
