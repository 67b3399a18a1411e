//! Accept loops. A loop only accepts, applies the two limits and spawns:
//! it never performs I/O with a client, so one stalled client cannot delay
//! another's accept.
//!
//! - New connections per second: a token bucket (burst = one second's
//!   worth). A socket over the rate is closed at once: the limit exists to
//!   save the CPU a TLS handshake costs.
//! - Open connections: a semaphore of `max_connections` permits, held from
//!   accept to close. A socket over the cap gets, while fewer than
//!   [`REFUSAL_SLOTS`] such refusals are running, its handshake and a
//!   CONNACK 0x03 (server unavailable) so the appliance backs off knowingly;
//!   beyond that it is closed at once.
//!
//! Connection tasks live in the loop's `JoinSet`; finished ones are reaped
//! as the loop runs, and at shutdown the loop waits for all of them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{admission, EdgeConfig, Shared};
use crate::edge::Counters;

/// Concurrent "server unavailable" answers to connections over the cap.
pub(crate) const REFUSAL_SLOTS: usize = 64;
/// Time a refusal may take (handshake, CONNECT, CONNACK).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How a listener speaks to clients.
#[derive(Clone)]
pub(crate) enum Transport {
    Tls(tokio_rustls::TlsAcceptor),
    Plain,
}

/// A token bucket: `rate` tokens per second, at most `rate` stored.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_sec: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate_per_sec);
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes a token if one is available at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Limits shared by every listener of one edge.
#[derive(Clone)]
pub(crate) struct Limits {
    rate: Arc<Mutex<TokenBucket>>,
    open: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl Limits {
    pub(crate) fn new(config: &EdgeConfig) -> Limits {
        Limits {
            rate: Arc::new(Mutex::new(TokenBucket::new(
                config.max_new_connections_per_sec,
                Instant::now(),
            ))),
            open: Arc::new(Semaphore::new(config.max_connections)),
            refusals: Arc::new(Semaphore::new(REFUSAL_SLOTS)),
        }
    }

    fn rate_allows(&self) -> bool {
        match self.rate.lock() {
            Ok(mut bucket) => bucket.try_take(Instant::now()),
            Err(poisoned) => poisoned.into_inner().try_take(Instant::now()),
        }
    }
}

/// One bound listener and its connection tasks.
pub(crate) struct Listener {
    tcp: TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    limits: Limits,
    tasks: JoinSet<()>,
}

impl Listener {
    pub(crate) fn new(
        tcp: TcpListener,
        transport: Transport,
        shared: Arc<Shared>,
        limits: Limits,
    ) -> Listener {
        Listener {
            tcp,
            transport,
            shared,
            limits,
            tasks: JoinSet::new(),
        }
    }

    /// Accepts until shutdown, then waits for every connection task.
    pub(crate) async fn run(mut self) {
        loop {
            tokio::select! {
                _ = super::stopped(self.shared.shutdown.clone()) => break,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "edge connection task failed");
                    }
                }
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(self.tcp);
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "edge connection task failed");
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let counters = &self.shared.counters;
        Counters::bump(&counters.accepted);
        if !self.limits.rate_allows() {
            Counters::bump(&counters.rate_limited);
            return; // dropped: closed at once
        }
        let _ = stream.set_nodelay(true);
        let transport = self.transport.clone();
        let shared = Arc::clone(&self.shared);
        match Arc::clone(&self.limits.open).try_acquire_owned() {
            Ok(permit) => {
                let open = Open::new(permit, Arc::clone(&shared));
                self.tasks.spawn(async move {
                    admission::serve(stream, peer, transport, &shared).await;
                    drop(open);
                });
            }
            Err(_) => {
                Counters::bump(&counters.over_capacity);
                if let Ok(slot) = Arc::clone(&self.limits.refusals).try_acquire_owned() {
                    self.tasks.spawn(async move {
                        admission::refuse_busy(stream, peer, transport, REFUSAL_TIMEOUT, &shared)
                            .await;
                        drop(slot);
                    });
                }
            }
        }
    }
}

/// One open connection: holds its permit and keeps the gauge right even
/// if the task is aborted.
struct Open {
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Open {
    fn new(permit: OwnedSemaphorePermit, shared: Arc<Shared>) -> Open {
        Counters::bump(&shared.counters.open);
        Open {
            _permit: permit,
            shared,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!((0..20).filter(|_| bucket.try_take(start)).count(), 10);
        assert!(!bucket.try_take(start + Duration::from_millis(50)));
        assert!(bucket.try_take(start + Duration::from_millis(150)));
        // Idle time refills to the burst, never beyond.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 10);
    }
}
