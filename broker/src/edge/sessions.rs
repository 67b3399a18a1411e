//! One live session per appliance. When an appliance connects again while
//! its previous session is still open (a reconnect after a network flap,
//! two devices with the same identity), the edge closes the previous
//! session *completely* (rumqttd has closed its loopback connection) before
//! opening the new one, instead of leaving the takeover to rumqttd.
//!
//! Why: rumqttd's takeover frees the old connection's id and may hand it to
//! the new connection at once; if the old connection's socket breaks at
//! that moment, rumqttd reports its disconnect for the recycled id and
//! kills the new connection, which leaves that rumqttd listener one
//! reconnect away from a permanent failure (see `crate::upstream`).
//! Serializing sessions per appliance id at the edge rules that out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use protocol::ApplianceId;
use tokio::sync::watch;

struct Entry {
    token: u64,
    stop: watch::Sender<bool>,
    done: watch::Receiver<()>,
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
    _done: watch::Sender<()>,
}

impl Sessions {
    /// Registers session `token` of `id`; if another session of `id` is
    /// live, asks it to stop and waits (at most `limit`) until it is closed.
    pub(crate) async fn enter(&self, id: ApplianceId, token: u64, limit: Duration) -> Ticket<'_> {
        let (stop_tx, stop) = watch::channel(false);
        let (done, done_rx) = watch::channel(());
        let entry = Entry {
            token,
            stop: stop_tx,
            done: done_rx,
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
            _done: done,
        }
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
}
