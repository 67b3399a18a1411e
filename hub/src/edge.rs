//! The hub's side of the device edge: it authenticates appliances against
//! the store and records their presence.
//!
//! Tokens are stored as sha256 hashes and compared in constant time; an
//! expired token or a removed appliance is refused. While a token renewal
//! is under way, the new token opens the appliance too. Presence events carry
//! the edge's session number: an appliance is marked offline only when the
//! session that ends is the one it last connected with, so a reconnect that
//! overlaps the old session never leaves it wrongly offline.

use std::collections::HashMap;
use std::sync::Arc;

use broker::edge::{
    AuthDecision, AuthRequest, Authenticator, Credential, DenyReason, PresenceEvent,
};
use futures::future::BoxFuture;
use protocol::ApplianceId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::credentials::{accepts, StoredToken};
use crate::model::ApplianceStatus;
use crate::store::Store;

/// Presence events waiting for the store.
pub const PRESENCE_QUEUE: usize = 16_384;

/// Checks appliance credentials against the store.
pub struct StoreAuthenticator {
    store: Store,
    clock: SharedClock,
}

impl StoreAuthenticator {
    /// An authenticator over `store`.
    pub fn new(store: Store, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self { store, clock })
    }

    async fn decide(&self, request: &AuthRequest) -> AuthDecision {
        let credentials = match self.store.appliance_credentials(request.appliance_id).await {
            Ok(Some(credentials)) => credentials,
            Ok(None) => return AuthDecision::Deny(DenyReason::BadCredentials),
            Err(err) => {
                tracing::error!(%err, "authentication: store unavailable");
                return AuthDecision::Unavailable;
            }
        };
        if credentials.status == ApplianceStatus::Removed {
            return AuthDecision::Deny(DenyReason::NotAuthorized);
        }
        match &request.credential {
            Credential::ClientCertificate => AuthDecision::Allow,
            Credential::Token(secret) => {
                let token = std::str::from_utf8(secret.expose()).unwrap_or_default();
                let current = StoredToken {
                    hash: credentials.token_hash,
                    expires_at: credentials.expires_at,
                };
                let next = credentials
                    .next_token_hash
                    .zip(credentials.next_token_expires_at)
                    .map(|(hash, expires_at)| StoredToken { hash, expires_at });
                if accepts(token, &current, next.as_ref(), self.clock.now()) {
                    AuthDecision::Allow
                } else {
                    AuthDecision::Deny(DenyReason::BadCredentials)
                }
            }
        }
    }
}

impl Authenticator for StoreAuthenticator {
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> BoxFuture<'a, AuthDecision> {
        Box::pin(self.decide(request))
    }
}

/// Most presence events written in one round (one group commit).
const PRESENCE_BATCH: usize = 1024;

/// Starts the task that records presence events; returns the sender the
/// edge reports to. Events are taken in rounds of up to
/// [`PRESENCE_BATCH`]; the writes of a round run concurrently so that they
/// share one group commit.
pub fn start_presence(
    store: Store,
    clock: SharedClock,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> mpsc::Sender<PresenceEvent> {
    let (tx, mut rx) = mpsc::channel(PRESENCE_QUEUE);
    tracker.spawn(async move {
        let mut sessions = Sessions::default();
        let mut events = Vec::with_capacity(PRESENCE_BATCH);
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                n = rx.recv_many(&mut events, PRESENCE_BATCH) => n,
            };
            if received == 0 {
                break;
            }
            let mut latest: HashMap<ApplianceId, bool> = HashMap::new();
            for event in events.drain(..) {
                if let Some((appliance, online)) = sessions.apply(event) {
                    latest.insert(appliance, online);
                }
            }
            let now = clock.now();
            let writes = latest
                .into_iter()
                .map(|(appliance, online)| store.record_presence(appliance, online, now));
            for result in futures::future::join_all(writes).await {
                if let Err(err) = result {
                    tracing::warn!(%err, "recording presence failed");
                }
            }
        }
    });
    tx
}

/// The session each appliance last connected with.
#[derive(Default)]
struct Sessions(HashMap<ApplianceId, u64>);

impl Sessions {
    /// The presence change an event makes, if any: a disconnect of a
    /// session that was already replaced by a newer one changes nothing.
    fn apply(&mut self, event: PresenceEvent) -> Option<(ApplianceId, bool)> {
        match event {
            PresenceEvent::Connected {
                appliance_id,
                session,
                ..
            } => {
                self.0.insert(appliance_id, session);
                Some((appliance_id, true))
            }
            PresenceEvent::Disconnected {
                appliance_id,
                session,
                reason,
                ..
            } => {
                if self.0.get(&appliance_id) != Some(&session) {
                    return None;
                }
                self.0.remove(&appliance_id);
                tracing::debug!(appliance = %appliance_id, ?reason, "appliance disconnected");
                Some((appliance_id, false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use broker::edge::DisconnectReason;

    use super::*;

    fn connected(appliance_id: ApplianceId, session: u64) -> PresenceEvent {
        PresenceEvent::Connected {
            appliance_id,
            session,
            peer: ([127, 0, 0, 1], 1).into(),
            at: SystemTime::now(),
        }
    }

    fn disconnected(appliance_id: ApplianceId, session: u64) -> PresenceEvent {
        PresenceEvent::Disconnected {
            appliance_id,
            session,
            peer: ([127, 0, 0, 1], 1).into(),
            reason: DisconnectReason::ConnectionLost,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn a_late_disconnect_of_a_replaced_session_changes_nothing() {
        let id = ApplianceId::new_random();
        let mut sessions = Sessions::default();
        assert_eq!(sessions.apply(connected(id, 1)), Some((id, true)));
        assert_eq!(sessions.apply(connected(id, 2)), Some((id, true)));
        assert_eq!(sessions.apply(disconnected(id, 1)), None);
        assert_eq!(sessions.apply(disconnected(id, 2)), Some((id, false)));
        assert_eq!(sessions.apply(disconnected(id, 2)), None);
    }
}
