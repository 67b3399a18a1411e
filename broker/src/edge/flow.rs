//! What the two loops of one session share: the SUBSCRIBEs awaiting their
//! SUBACK, and the QoS 1 PUBLISHes the broker sent the appliance that
//! await its PUBACK.
//!
//! PUBACKs are checked here because rumqttd drops a connection that sends
//! an unsolicited or out-of-order PUBACK from inside its router, and a
//! connection dropped that way while the appliance also closes its socket
//! can make rumqttd report a second disconnect for a connection id it has
//! already given to someone else (see `crate::upstream`). MQTT 3.1.1
//! requires PUBACKs in the order of the PUBLISHes (4.6), so the edge
//! closes an appliance that acknowledges anything but the oldest.

use std::collections::VecDeque;

use super::guard::PendingSubacks;

/// Most unacknowledged QoS 1 PUBLISHes tracked (rumqttd sends at most 100).
const MAX_INFLIGHT: usize = 1024;

/// Shared state of one session.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    pub(crate) subacks: PendingSubacks,
    inflight: VecDeque<u16>,
}

impl Flow {
    /// The broker sent a QoS 1 PUBLISH with `pkid`; false if more are
    /// outstanding than any broker sends.
    pub(crate) fn sent(&mut self, pkid: u16) -> bool {
        if self.inflight.len() >= MAX_INFLIGHT {
            return false;
        }
        self.inflight.push_back(pkid);
        true
    }

    /// The appliance acknowledged `pkid`: true if it is the oldest
    /// outstanding one (which is then forgotten).
    pub(crate) fn acked(&mut self, pkid: u16) -> bool {
        if self.inflight.front() == Some(&pkid) {
            self.inflight.pop_front();
            true
        } else {
            false
        }
    }
}

/// Packet id of a PUBLISH frame (fixed header included) with QoS 1 or 2;
/// `None` for QoS 0 or a frame too short to hold one.
pub(crate) fn publish_pkid(frame: &[u8]) -> Option<u16> {
    let qos = (frame.first()? & 0b0110) >> 1;
    if qos == 0 {
        return None;
    }
    let mut at = 1;
    while frame.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1; // last byte of the remaining length
    let topic_len = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let id = at + 2 + topic_len;
    Some(u16::from_be_bytes([*frame.get(id)?, *frame.get(id + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Packet, Publish};
    use rumqttc::mqttbytes::QoS;

    fn frame(qos: QoS, pkid: u16, payload: usize) -> BytesMut {
        let mut p = Publish::new("/sys/va/x/thing/job/notify", qos, vec![7u8; payload]);
        p.pkid = pkid;
        let mut buf = BytesMut::new();
        Packet::Publish(p)
            .write(&mut buf, usize::MAX)
            .expect("encodable");
        buf
    }

    #[test]
    fn reads_the_packet_id_of_qos1_publishes() {
        assert_eq!(publish_pkid(&frame(QoS::AtLeastOnce, 513, 10)), Some(513));
        assert_eq!(publish_pkid(&frame(QoS::AtLeastOnce, 9, 300)), Some(9)); // 2-byte length
        assert_eq!(publish_pkid(&frame(QoS::AtMostOnce, 0, 10)), None);
        let full = frame(QoS::AtLeastOnce, 1, 0);
        for len in 0..full.len() - 1 {
            let _ = publish_pkid(&full[..len]); // never panics
        }
    }

    #[test]
    fn pubacks_must_come_in_order() {
        let mut flow = Flow::default();
        assert!(flow.sent(1) && flow.sent(2));
        assert!(!flow.acked(2), "out of order");
        assert!(flow.acked(1) && flow.acked(2));
        assert!(!flow.acked(3), "unsolicited");
    }
}
