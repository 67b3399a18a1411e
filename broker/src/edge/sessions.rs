//! One live session per appliance, and the way to it for hub -> device
//! messages. When an appliance connects again while its previous session
//! is still open (a reconnect after a network flap, two devices with the
//! same identity), the edge closes the previous session *completely*
//! (its will published, its `Disconnected` reported) before the new one
//! answers CONNACK, so presence events of one appliance never interleave
//! and a will can never follow the new session's first message.
//!
//! Each entry holds the session's [`Inbox`]: the edge's link to the broker
//! hands every hub -> device message to the inbox of the appliance its
//! topic names ([`Sessions::deliver`]), without ever waiting. A message for
//! an appliance with no live session is dropped: the edge keeps no offline
//! session, and an appliance pulls `$next` on every connect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::ApplianceId;
use rumqttc::mqttbytes::v4::Publish;
use tokio::sync::watch;

use super::inbox::{Inbox, Offer};

struct Entry {
    token: u64,
    stop: watch::Sender<bool>,
    done: watch::Receiver<()>,
    inbox: Arc<Inbox>,
}

/// The live session of every connected appliance.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<ApplianceId, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// A session's place in [`Sessions`]; dropping it tells a successor that
/// this session is fully closed.
pub(crate) struct Ticket<'a> {
    sessions: &'a Sessions,
    id: ApplianceId,
    token: u64,
    stop: watch::Receiver<bool>,
    inbox: Arc<Inbox>,
    _done: watch::Sender<()>,
}

impl Sessions {
    /// Registers session `token` of `id`; if another session of `id` is
    /// live, asks it to stop and waits (at most `limit`) until it is closed.
    pub(crate) async fn enter(&self, id: ApplianceId, token: u64, limit: Duration) -> Ticket<'_> {
        let (stop_tx, stop) = watch::channel(false);
        let (done, done_rx) = watch::channel(());
        let inbox = Arc::new(Inbox::default());
        let entry = Entry {
            token,
            stop: stop_tx,
            done: done_rx,
            inbox: Arc::clone(&inbox),
        };
        let previous = self.lock().insert(id, entry);
        if let Some(mut previous) = previous {
            let _ = previous.stop.send(true);
            // Resolves (with an error) once the previous ticket is dropped.
            let _ = tokio::time::timeout(limit, previous.done.changed()).await;
        }
        Ticket {
            sessions: self,
            id,
            token,
            stop,
            inbox,
            _done: done,
        }
    }

    /// Hands a hub -> device message to the live session of `id`; `None`
    /// when the appliance has no live session (the message is dropped).
    pub(crate) fn deliver(&self, id: &ApplianceId, publish: Publish) -> Option<Offer> {
        let inbox = self.lock().get(id).map(|entry| Arc::clone(&entry.inbox))?;
        Some(inbox.offer(publish))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ApplianceId, Entry>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ticket<'_> {
    /// Whether a newer session of the same appliance asked this one to stop.
    pub(crate) fn superseded(&self) -> bool {
        *self.stop.borrow()
    }

    /// The session's inbox.
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Resolves when a newer session asks this one to stop.
    pub(crate) fn stop_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut live = self.sessions.lock();
        if live.get(&self.id).is_some_and(|e| e.token == self.token) {
            live.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_new_session_waits_for_the_old_one_to_close() {
        let sessions = Sessions::default();
        let id = ApplianceId::new_random();
        let old = sessions.enter(id, 1, LIMIT).await;
        assert!(!old.superseded());
        let stop = old.stop_requested();
        let new = async { sessions.enter(id, 2, LIMIT).await };
        let closer = async {
            stop.await; // the new session asked...
            assert!(old.superseded());
            drop(old); // ...and the old one closes
        };
        let (new, ()) = tokio::join!(new, closer);
        assert!(!new.superseded());
        drop(new);
        assert!(sessions.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_old_session_delays_the_new_one_at_most_the_limit() {
        let sessions = Sessions::default();
        let id = ApplianceId::new_random();
        let _stuck = sessions.enter(id, 1, LIMIT).await;
        let started = tokio::time::Instant::now();
        let _new = sessions.enter(id, 2, LIMIT).await;
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test]
    async fn other_appliances_do_not_wait() {
        let sessions = Sessions::default();
        let _a = sessions.enter(ApplianceId::new_random(), 1, LIMIT).await;
        let b = tokio::time::timeout(
            Duration::from_millis(100),
            sessions.enter(ApplianceId::new_random(), 2, LIMIT),
        );
        assert!(b.await.is_ok());
    }

    #[tokio::test]
    async fn messages_reach_only_the_live_session_of_their_appliance() {
        use rumqttc::mqttbytes::QoS;
        let sessions = Sessions::default();
        let id = ApplianceId::new_random();
        let topic = format!("/sys/va/{id}/thing/job/notify");
        let message = || Publish::new(topic.clone(), QoS::AtLeastOnce, "{}");
        assert_eq!(sessions.deliver(&id, message()), None, "offline: dropped");
        let ticket = sessions.enter(id, 1, LIMIT).await;
        ticket
            .inbox()
            .subscriptions(|s| s.add(&topic, QoS::AtLeastOnce));
        assert_eq!(sessions.deliver(&id, message()), Some(Offer::Queued));
        let other = ApplianceId::new_random();
        assert_eq!(sessions.deliver(&other, message()), None);
        assert!(ticket.inbox().take().expect("no overflow").is_some());
        drop(ticket);
        assert_eq!(sessions.deliver(&id, message()), None);
        assert!(sessions.lock().is_empty());
    }
}
