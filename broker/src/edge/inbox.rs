//! The inbox of one appliance session: its subscriptions and its bounded
//! queue of hub -> device messages, shared between the edge's link to the
//! broker (which offers messages) and the session (which takes them).
//!
//! Delivery rules, decided when a message is offered:
//! - a message whose topic matches none of the session's filters is
//!   dropped (the appliance did not ask for it);
//! - it is delivered with QoS = min(QoS of the message, highest QoS granted
//!   among the matching filters), never retained, never a duplicate;
//! - at most [`CAPACITY`] messages wait; one more marks the inbox as
//!   overflowed, and the session then closes as a slow consumer (it is the
//!   only one to suffer: the link never waits on an inbox).
//!
//! No I/O here: the session is woken through a [`Notify`].

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use rumqttc::mqttbytes::v4::Publish;
use rumqttc::mqttbytes::QoS;
use tokio::sync::Notify;

use super::subscriptions::Subscriptions;

/// Messages one session may have waiting for the appliance (beyond its
/// in-flight window, see `flow`).
pub(crate) const CAPACITY: usize = 64;

/// What became of an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued for the appliance.
    Queued,
    /// No filter of the session matches its topic: dropped.
    NotSubscribed,
    /// The queue was full: dropped, and the session will close.
    Overflow,
}

/// The session's queue is over capacity: it must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflowed;

#[derive(Debug, Default)]
struct State {
    subscriptions: Subscriptions,
    queue: VecDeque<Publish>,
    overflowed: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    ready: Notify,
}

impl Inbox {
    /// Offers a message from the broker (never waits).
    pub(crate) fn offer(&self, mut publish: Publish) -> Offer {
        let mut state = self.lock();
        let Some(granted) = state.subscriptions.qos_for(&publish.topic) else {
            return Offer::NotSubscribed;
        };
        if state.overflowed || state.queue.len() >= CAPACITY {
            state.overflowed = true;
            drop(state);
            self.ready.notify_one();
            return Offer::Overflow;
        }
        publish.qos = lower(lower(publish.qos, granted), QoS::AtLeastOnce);
        publish.retain = false;
        publish.dup = false;
        publish.pkid = 0;
        state.queue.push_back(publish);
        drop(state);
        self.ready.notify_one();
        Offer::Queued
    }

    /// The oldest waiting message, if any.
    pub(crate) fn take(&self) -> Result<Option<Publish>, Overflowed> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(Overflowed);
        }
        let next = state.queue.pop_front();
        if state.queue.is_empty() && state.queue.capacity() > 8 {
            state.queue = VecDeque::new(); // an idle session keeps no large buffer
        }
        Ok(next)
    }

    /// Whether the queue overflowed.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Resolves when a message was offered since the last call (or a
    /// permit is stored); see [`Notify::notified`].
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Runs `change` on the session's subscriptions.
    pub(crate) fn subscriptions<T>(&self, change: impl FnOnce(&mut Subscriptions) -> T) -> T {
        change(&mut self.lock().subscriptions)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lower(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "/sys/va/0f8fad5b-d9cb-469f-a165-70867728950e/thing/job";

    fn message(kind: &str, qos: QoS) -> Publish {
        let mut p = Publish::new(format!("{NS}/{kind}"), qos, "{}");
        p.pkid = 77;
        p.retain = true;
        p.dup = true;
        p
    }

    #[test]
    fn only_messages_on_subscribed_topics_are_queued() {
        let inbox = Inbox::default();
        assert_eq!(
            inbox.offer(message("notify", QoS::AtLeastOnce)),
            Offer::NotSubscribed
        );
        inbox.subscriptions(|s| s.add(&format!("{NS}/notify"), QoS::AtLeastOnce));
        assert_eq!(
            inbox.offer(message("get_reply", QoS::AtLeastOnce)),
            Offer::NotSubscribed
        );
        assert_eq!(
            inbox.offer(message("notify", QoS::AtLeastOnce)),
            Offer::Queued
        );
        let got = inbox.take().expect("no overflow").expect("a message");
        assert_eq!(got.topic, format!("{NS}/notify"));
        assert_eq!(
            (got.qos, got.retain, got.dup, got.pkid),
            (QoS::AtLeastOnce, false, false, 0)
        );
        assert_eq!(inbox.take(), Ok(None));
    }

    #[test]
    fn delivery_qos_is_the_lower_of_message_and_grant_and_at_most_1() {
        let inbox = Inbox::default();
        inbox.subscriptions(|s| s.add(&format!("{NS}/notify"), QoS::AtMostOnce));
        inbox.subscriptions(|s| s.add(&format!("{NS}/+"), QoS::AtLeastOnce));
        inbox.subscriptions(|s| s.add(&format!("{NS}/update_reply"), QoS::AtMostOnce));
        inbox.offer(message("notify", QoS::ExactlyOnce));
        inbox.offer(message("get_reply", QoS::AtMostOnce));
        let qos: Vec<QoS> = std::iter::from_fn(|| inbox.take().ok().flatten())
            .map(|p| p.qos)
            .collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::AtMostOnce]);
    }

    #[test]
    fn a_full_queue_overflows_and_stays_overflowed() {
        let inbox = Inbox::default();
        inbox.subscriptions(|s| s.add(&format!("{NS}/notify"), QoS::AtLeastOnce));
        for _ in 0..CAPACITY {
            assert_eq!(
                inbox.offer(message("notify", QoS::AtLeastOnce)),
                Offer::Queued
            );
        }
        assert_eq!(
            inbox.offer(message("notify", QoS::AtLeastOnce)),
            Offer::Overflow
        );
        assert!(inbox.overflowed());
        assert_eq!(inbox.take(), Err(Overflowed));
    }

    #[tokio::test]
    async fn an_offer_wakes_the_session_even_if_it_was_not_waiting_yet() {
        let inbox = Inbox::default();
        inbox.subscriptions(|s| s.add(&format!("{NS}/notify"), QoS::AtLeastOnce));
        inbox.offer(message("notify", QoS::AtLeastOnce));
        tokio::time::timeout(std::time::Duration::from_secs(1), inbox.ready())
            .await
            .expect("a stored wake-up");
    }
}
