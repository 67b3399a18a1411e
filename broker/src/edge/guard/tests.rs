//! Unit tests of the per-packet rules.

use super::*;
use protocol::ProductKey;
use rumqttc::mqttbytes::v4::{PubAck, PubRel, Publish, SubscribeFilter, Unsubscribe};

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

fn subscribe(filters: &[(&str, QoS)]) -> Subscribe {
    let mut s = Subscribe::new_many(
        filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new((*f).to_owned(), *q)),
    );
    s.pkid = 3;
    s
}

#[test]
fn own_publish_is_forwarded_without_retain() {
    let topic = format!("/sys/va/{ID}/thing/job/update");
    let Verdict::Forward(Packet::Publish(p)) =
        judge(&acl(), publish(&topic, QoS::AtLeastOnce, true))
    else {
        panic!("expected a forward");
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
fn subscribe_forwards_the_allowed_filters_and_merges_codes() {
    let notify = format!("/sys/va/{ID}/thing/job/notify");
    let replies = format!("/sys/va/{ID}/thing/job/+");
    let s = subscribe(&[
        ("#", QoS::AtLeastOnce),
        (&notify, QoS::ExactlyOnce),
        ("/sys/+/+/thing/job/notify", QoS::AtLeastOnce),
        (&replies, QoS::AtMostOnce),
    ]);
    let Verdict::Subscribe {
        forward: Some(forward),
        plan,
    } = judge(&acl(), Packet::Subscribe(s))
    else {
        panic!("expected a partial forward");
    };
    assert_eq!(forward.pkid, 3);
    let sent: Vec<_> = forward
        .filters
        .iter()
        .map(|f| (f.path.as_str(), f.qos))
        .collect();
    assert_eq!(
        sent,
        [
            (notify.as_str(), QoS::AtLeastOnce),
            (replies.as_str(), QoS::AtMostOnce)
        ]
    );

    let broker = SubAck::new(
        3,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Success(QoS::AtMostOnce),
        ],
    );
    let mut pending = PendingSubacks::default();
    assert!(pending.insert(plan.clone(), 4));
    assert!(!pending.insert(plan, 4), "same packet id twice");
    let merged = pending.resolve(broker);
    use SubscribeReasonCode::*;
    assert_eq!(
        merged.return_codes,
        [
            Failure,
            Success(QoS::AtLeastOnce),
            Failure,
            Success(QoS::AtMostOnce)
        ]
    );
}

#[test]
fn subscribe_with_no_allowed_filter_is_answered_by_the_edge() {
    let s = subscribe(&[
        ("#", QoS::AtLeastOnce),
        (&format!("/sys/va/{OTHER}/#"), QoS::AtLeastOnce),
    ]);
    let Verdict::Subscribe {
        forward: None,
        plan,
    } = judge(&acl(), Packet::Subscribe(s))
    else {
        panic!("expected no forward");
    };
    assert_eq!(
        plan.refuse_all().return_codes,
        [SubscribeReasonCode::Failure; 2]
    );
}

#[test]
fn pending_subscribes_are_bounded() {
    let mut pending = PendingSubacks::default();
    for pkid in 1..=2 {
        let plan = SubackPlan {
            pkid,
            forwarded: vec![true],
        };
        assert!(pending.insert(plan, 2));
    }
    assert!(!pending.insert(
        SubackPlan {
            pkid: 9,
            forwarded: vec![true]
        },
        2
    ));
}

#[test]
fn unsubscribe_is_answered_by_the_edge() {
    let mut u = Unsubscribe::new("#");
    u.topics.push(format!("/sys/va/{ID}/thing/job/notify"));
    u.pkid = 5;
    let Verdict::Unsubscribe {
        forward: Some(Packet::Unsubscribe(f)),
        answer,
    } = judge(&acl(), Packet::Unsubscribe(u))
    else {
        panic!("expected a filtered forward");
    };
    assert_eq!(f.topics.len(), 1);
    assert_eq!(answer.pkid, 5);
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
    assert_eq!(
        judge(&acl(), Packet::PingReq),
        Verdict::Forward(Packet::PingReq)
    );
    let ack = Packet::PubAck(PubAck::new(4));
    assert_eq!(judge(&acl(), ack.clone()), Verdict::Forward(ack));
    assert_eq!(judge(&acl(), Packet::Disconnect), Verdict::Disconnect);
}

#[test]
fn fixed_header_flags() {
    assert!(flags_ok(0x30) && flags_ok(0x3B) && flags_ok(0x82) && flags_ok(0xC0) && flags_ok(0x62));
    assert!(!flags_ok(0x80) && !flags_ok(0xC1) && !flags_ok(0xA0) && !flags_ok(0x41));
}
