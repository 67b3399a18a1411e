//! QoS 1 flow from the edge to one appliance: packet ids and the in-flight
//! window. Pure state, no I/O.
//!
//! The edge sends at most [`WINDOW`] QoS 1 PUBLISHes the appliance has not
//! acknowledged yet; further messages wait in the session's inbox (and a
//! full inbox closes the session, see `inbox`). MQTT 3.1.1 requires PUBACKs
//! in the order of the PUBLISHes (4.6), so the edge closes an appliance that
//! acknowledges anything but the oldest outstanding one. Packet ids run
//! 1, 2, ..., 65535, 1, ...: with in-order acknowledgements and a window far
//! below 65,535 an id is never reused while still in flight.

use std::collections::VecDeque;

/// Unacknowledged QoS 1 PUBLISHes per session.
pub(crate) const WINDOW: usize = 32;

/// Outgoing QoS 1 state of one session.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    last_pkid: u16,
    inflight: VecDeque<u16>,
}

impl Flow {
    /// Whether one more QoS 1 PUBLISH may be sent now.
    pub(crate) fn has_room(&self) -> bool {
        self.inflight.len() < WINDOW
    }

    /// Allocates the packet id of the next QoS 1 PUBLISH; `None` when the
    /// window is full.
    pub(crate) fn send(&mut self) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
        self.inflight.push_back(self.last_pkid);
        Some(self.last_pkid)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubacks_must_come_in_order() {
        let mut flow = Flow::default();
        let (a, b) = (flow.send(), flow.send());
        assert_eq!((a, b), (Some(1), Some(2)));
        assert!(!flow.acked(2), "out of order");
        assert!(flow.acked(1) && flow.acked(2));
        assert!(!flow.acked(3), "unsolicited");
    }

    #[test]
    fn the_window_is_bounded_and_reopens_on_ack() {
        let mut flow = Flow::default();
        for _ in 0..WINDOW {
            assert!(flow.send().is_some());
        }
        assert!(!flow.has_room());
        assert_eq!(flow.send(), None);
        assert!(flow.acked(1));
        assert_eq!(flow.send(), Some(WINDOW as u16 + 1));
    }

    #[test]
    fn packet_ids_wrap_and_skip_zero() {
        let mut flow = Flow {
            last_pkid: u16::MAX - 1,
            ..Flow::default()
        };
        assert_eq!(flow.send(), Some(u16::MAX));
        assert_eq!(flow.send(), Some(1));
    }
}
