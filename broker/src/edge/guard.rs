//! What the edge does with each packet of an established session, as pure
//! state (no I/O, in the manner of rumqttc's `state.rs`): the appliance's
//! packets become [`Verdict`]s, and the broker's SUBACKs are merged with
//! the filters the edge refused itself.
//!
//! Appliance -> broker:
//! - PUBLISH: QoS 0 or 1 to one of its own device -> hub topics, retain
//!   flag cleared (device -> hub messages are never retained); anything
//!   else closes the connection. QoS 2 is not offered.
//! - SUBSCRIBE: each filter is checked by [`Acl::may_subscribe`]; the
//!   allowed ones are forwarded at QoS <= 1 under the same packet id, the
//!   others get 0x80 in the SUBACK the appliance receives. If none is
//!   allowed nothing is forwarded and the edge answers alone.
//! - UNSUBSCRIBE: allowed filters are forwarded; the edge sends the UNSUBACK
//!   itself and drops rumqttd's (which sends one per filter actually
//!   subscribed, so zero or several).
//! - PUBACK, PINGREQ: forwarded. DISCONNECT: forwarded, then the end.
//! - CONNECT, CONNACK, SUBACK, UNSUBACK, PINGRESP, PUBREC, PUBREL, PUBCOMP,
//!   malformed or oversize packets, wrong fixed-header flags: close.

use std::collections::HashMap;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, SubAck, Subscribe, SubscribeReasonCode, UnsubAck};
use rumqttc::mqttbytes::QoS;

use super::acl::Acl;

/// What to do with one packet from the appliance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Re-encode and send to the broker.
    Forward(Packet),
    /// Send this SUBSCRIBE (if any) and remember the plan; with no
    /// SUBSCRIBE, answer the appliance with `plan.refuse_all()`.
    Subscribe {
        forward: Option<Subscribe>,
        plan: SubackPlan,
    },
    /// Send the UNSUBSCRIBE (if any), then this UNSUBACK to the appliance.
    Unsubscribe {
        forward: Option<Packet>,
        answer: UnsubAck,
    },
    /// Forward DISCONNECT, then end the session.
    Disconnect,
    /// Close the connection; nothing is forwarded.
    Close(&'static str),
}

/// Which filters of one SUBSCRIBE were forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubackPlan {
    pub(crate) pkid: u16,
    /// One entry per filter of the original SUBSCRIBE: was it forwarded?
    forwarded: Vec<bool>,
}

impl SubackPlan {
    /// The SUBACK the appliance gets when nothing was forwarded.
    pub(crate) fn refuse_all(&self) -> SubAck {
        SubAck::new(
            self.pkid,
            vec![SubscribeReasonCode::Failure; self.forwarded.len()],
        )
    }

    /// Puts the broker's codes (for the forwarded filters, in order) back
    /// among the refused ones. Missing codes count as failures.
    pub(crate) fn merge(&self, broker: &SubAck) -> SubAck {
        let mut codes = broker.return_codes.iter();
        let merged = self
            .forwarded
            .iter()
            .map(|&sent| match sent {
                true => codes
                    .next()
                    .copied()
                    .unwrap_or(SubscribeReasonCode::Failure),
                false => SubscribeReasonCode::Failure,
            })
            .collect();
        SubAck::new(self.pkid, merged)
    }
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
            Verdict::Forward(Packet::Publish(publish))
        }
        Packet::Subscribe(subscribe) => judge_subscribe(acl, subscribe),
        Packet::Unsubscribe(mut unsubscribe) => {
            if unsubscribe.topics.is_empty() {
                return Verdict::Close("UNSUBSCRIBE without filters");
            }
            let answer = UnsubAck::new(unsubscribe.pkid);
            unsubscribe.topics.retain(|f| acl.may_unsubscribe(f));
            let forward =
                (!unsubscribe.topics.is_empty()).then_some(Packet::Unsubscribe(unsubscribe));
            Verdict::Unsubscribe { forward, answer }
        }
        Packet::PubAck(_) | Packet::PingReq => Verdict::Forward(packet),
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

fn judge_subscribe(acl: &Acl, subscribe: Subscribe) -> Verdict {
    let mut forwarded = Vec::with_capacity(subscribe.filters.len());
    let mut allowed = Vec::new();
    for mut filter in subscribe.filters {
        let ok = acl.may_subscribe(&filter.path);
        forwarded.push(ok);
        if ok {
            if filter.qos == QoS::ExactlyOnce {
                filter.qos = QoS::AtLeastOnce;
            }
            allowed.push(filter);
        }
    }
    let plan = SubackPlan {
        pkid: subscribe.pkid,
        forwarded,
    };
    let forward = (!allowed.is_empty()).then(|| {
        let mut s = Subscribe::new_many(allowed);
        s.pkid = plan.pkid;
        s
    });
    Verdict::Subscribe { forward, plan }
}

/// SUBSCRIBEs forwarded and awaiting the broker's SUBACK, by packet id.
#[derive(Debug, Default)]
pub(crate) struct PendingSubacks {
    plans: HashMap<u16, SubackPlan>,
}

impl PendingSubacks {
    /// Remembers a plan; false if its packet id is already pending or
    /// `limit` plans are (both protocol abuse).
    pub(crate) fn insert(&mut self, plan: SubackPlan, limit: usize) -> bool {
        if self.plans.len() >= limit || self.plans.contains_key(&plan.pkid) {
            return false;
        }
        self.plans.insert(plan.pkid, plan);
        true
    }

    /// The SUBACK to send for the broker's `broker` SUBACK.
    pub(crate) fn resolve(&mut self, broker: SubAck) -> SubAck {
        match self.plans.remove(&broker.pkid) {
            Some(plan) => plan.merge(&broker),
            None => broker,
        }
    }
}

/// Encodes a packet the edge itself produced or re-encodes a checked one.
/// Only fails on sizes the parser would not have produced.
pub(crate) fn encode(packet: &Packet, out: &mut BytesMut) -> bool {
    packet.write(out, usize::MAX).is_ok()
}

#[cfg(test)]
mod tests;
