//! Presence: the edge tells the hub when an appliance's session starts and
//! ends, through a bounded channel the hub reads. The edge never waits on
//! it: when the channel is full the event is dropped and counted
//! ([`super::EdgeStats::presence_dropped`]), so a slow hub cannot stall
//! device traffic.
//!
//! Sessions of one appliance can overlap (a reconnect takes the old session
//! over, and the old one's `Disconnected` may arrive after the new one's
//! `Connected`): every event carries the edge's `session` number, increasing
//! with each accepted connection, and the hub should only mark an appliance
//! offline when the `Disconnected` is for the session it last saw connect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use protocol::ApplianceId;
use tokio::sync::mpsc;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The appliance sent DISCONNECT.
    ClientDisconnect,
    /// The appliance closed the connection (or it broke) without DISCONNECT.
    ConnectionLost,
    /// The edge's link to the broker was lost (messages for the appliance
    /// may have been lost with it; it pulls `$next` when it reconnects).
    BrokerClosed,
    /// No packet from the appliance for 1.5 times its keepalive.
    KeepaliveTimeout,
    /// The same appliance connected again; this older session was closed
    /// first.
    TakenOver,
    /// The appliance broke a rule (forbidden topic, malformed or oversize
    /// packet, a packet a client may not send); the edge closed it.
    ProtocolViolation(&'static str),
    /// The appliance did not read what it was sent within the write timeout.
    SlowConsumer,
    /// The edge is shutting down.
    Shutdown,
}

/// One presence event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// The appliance's session started (CONNACK 0 was sent).
    Connected {
        /// The appliance.
        appliance_id: ApplianceId,
        /// Edge-wide session number (see the module documentation).
        session: u64,
        /// Remote address.
        peer: SocketAddr,
        /// When.
        at: SystemTime,
    },
    /// The session ended.
    Disconnected {
        /// The appliance.
        appliance_id: ApplianceId,
        /// The session number of the matching `Connected`.
        session: u64,
        /// Remote address.
        peer: SocketAddr,
        /// Why.
        reason: DisconnectReason,
        /// When.
        at: SystemTime,
    },
}

/// The edge's side of the presence channel.
#[derive(Debug)]
pub(crate) struct Presence {
    tx: mpsc::Sender<PresenceEvent>,
    next_session: AtomicU64,
    dropped: AtomicU64,
}

impl Presence {
    pub(crate) fn new(tx: mpsc::Sender<PresenceEvent>) -> Presence {
        Presence {
            tx,
            next_session: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// A new session number.
    pub(crate) fn next_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends without waiting; counts what could not be sent.
    pub(crate) fn report(&self, event: PresenceEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Logged at 1, 2, 4, 8... drops: visible, never a log flood.
                if dropped.is_power_of_two() {
                    tracing::warn!(?event, dropped, "presence channel full, event dropped");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(session: u64) -> PresenceEvent {
        PresenceEvent::Disconnected {
            appliance_id: "0f8fad5b-d9cb-469f-a165-70867728950e".parse().expect("id"),
            session,
            peer: ([127, 0, 0, 1], 1).into(),
            reason: DisconnectReason::ConnectionLost,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let presence = Presence::new(tx);
        presence.report(event(1));
        presence.report(event(2));
        assert_eq!(presence.dropped(), 1);
        assert_eq!(rx.try_recv().ok(), Some(event(1)));
        drop(rx);
        presence.report(event(3));
        assert_eq!(presence.dropped(), 2);
    }

    #[test]
    fn session_numbers_increase() {
        let (tx, _rx) = mpsc::channel(1);
        let presence = Presence::new(tx);
        let a = presence.next_session();
        assert!(presence.next_session() > a);
    }
}
