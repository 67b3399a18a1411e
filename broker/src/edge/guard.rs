//! What the edge does with each packet of an established session, as pure
//! state (no I/O, in the manner of rumqttc's `state.rs`): the appliance's
//! packets become [`Verdict`]s, and SUBSCRIBE / UNSUBSCRIBE change the
//! session's [`Subscriptions`] and produce the acknowledgement.
//!
//! Appliance -> edge:
//! - PUBLISH: QoS 0 or 1 to one of its own device -> hub topics, retain
//!   flag cleared (device -> hub messages are never retained): handed to
//!   the broker; anything else closes the connection. QoS 2 is not offered.
//! - SUBSCRIBE: each filter is checked by [`Acl::may_subscribe`]; allowed
//!   ones are granted at QoS <= 1 and recorded (while the session holds
//!   fewer than `subscriptions::MAX_FILTERS`), the others get 0x80.
//! - UNSUBSCRIBE: the filters are removed; always acknowledged.
//! - PUBACK: must acknowledge the oldest outstanding QoS 1 PUBLISH (`flow`).
//! - PINGREQ: answered. DISCONNECT: the end, without the will.
//! - CONNECT, CONNACK, SUBACK, UNSUBACK, PINGRESP, PUBREC, PUBREL, PUBCOMP,
//!   malformed or oversize packets, wrong fixed-header flags: close.

use rumqttc::mqttbytes::v4::{
    Packet, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::QoS;

use super::acl::Acl;
use super::subscriptions::Subscriptions;

/// What to do with one packet from the appliance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand to the broker; answer PUBACK if it came with QoS 1.
    Publish(Publish),
    /// Apply with [`subscribe`] and answer with its SUBACK.
    Subscribe(Subscribe),
    /// Apply with [`unsubscribe`] and answer with its UNSUBACK.
    Unsubscribe(Unsubscribe),
    /// The appliance acknowledged this packet id.
    PubAck(u16),
    /// Answer PINGRESP.
    Ping,
    /// End the session without publishing the will.
    Disconnect,
    /// Close the connection; nothing is handed to the broker.
    Close(&'static str),
}

/// Checks the fixed-header flags MQTT 3.1.1 fixes for each packet type.
pub(crate) fn flags_ok(byte1: u8) -> bool {
    match byte1 >> 4 {
        3 => true,                          // PUBLISH: dup/qos/retain, QoS checked by the parser
        6 | 8 | 10 => byte1 & 0x0F == 0x02, // PUBREL, SUBSCRIBE, UNSUBSCRIBE
        _ => byte1 & 0x0F == 0,
    }
}

/// Decides what to do with `packet` from the appliance owning `acl`.
pub(crate) fn judge(acl: &Acl, packet: Packet) -> Verdict {
    match packet {
        Packet::Publish(mut publish) => {
            if publish.qos == QoS::ExactlyOnce {
                return Verdict::Close("QoS 2 PUBLISH");
            }
            if !acl.may_publish(&publish.topic) {
                return Verdict::Close("PUBLISH to a forbidden topic");
            }
            publish.retain = false;
            Verdict::Publish(publish)
        }
        Packet::Subscribe(subscribe) => Verdict::Subscribe(subscribe),
        Packet::Unsubscribe(unsubscribe) if unsubscribe.topics.is_empty() => {
            Verdict::Close("UNSUBSCRIBE without filters")
        }
        Packet::Unsubscribe(unsubscribe) => Verdict::Unsubscribe(unsubscribe),
        Packet::PubAck(ack) => Verdict::PubAck(ack.pkid),
        Packet::PingReq => Verdict::Ping,
        Packet::Disconnect => Verdict::Disconnect,
        Packet::Connect(_) => Verdict::Close("second CONNECT"),
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
            Verdict::Close("server-only packet from a client")
        }
        Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
            Verdict::Close("QoS 2 flow packet")
        }
    }
}

/// Grants the allowed filters of `subscribe` (QoS at most 1) into
/// `subscriptions`; refuses the others with 0x80. Returns the SUBACK.
pub(crate) fn subscribe(
    acl: &Acl,
    subscriptions: &mut Subscriptions,
    subscribe: &Subscribe,
) -> SubAck {
    let codes = subscribe
        .filters
        .iter()
        .map(|filter| {
            let qos = match filter.qos {
                QoS::AtMostOnce => QoS::AtMostOnce,
                QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
            };
            if acl.may_subscribe(&filter.path) && subscriptions.add(&filter.path, qos) {
                SubscribeReasonCode::Success(qos)
            } else {
                SubscribeReasonCode::Failure
            }
        })
        .collect();
    SubAck::new(subscribe.pkid, codes)
}

/// Removes the filters of `unsubscribe`; returns the UNSUBACK.
pub(crate) fn unsubscribe(
    subscriptions: &mut Subscriptions,
    unsubscribe: &Unsubscribe,
) -> UnsubAck {
    for filter in &unsubscribe.topics {
        subscriptions.remove(filter);
    }
    UnsubAck::new(unsubscribe.pkid)
}

#[cfg(test)]
mod tests;
