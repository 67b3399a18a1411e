//! The device edge: the only public MQTT entry of Fleethub, and the
//! security boundary between appliances and the embedded rumqttd.
//!
//! ```text
//! appliance --TLS--> listener --(task per connection)--> admission --> session --TCP--> rumqttd
//!                     accept loop: rate and        TLS handshake,    one loopback connection
//!                     capacity limits, never       CONNECT checks,   per appliance, CONNECT
//!                     waits on a client            authentication    rewritten to `edge`;
//!                                                  (one timeout)     packets checked by `guard`
//! ```
//!
//! Code map:
//! - [`config`]: [`EdgeConfig`] and its defaults.
//! - `listener`: accept loops, new-connection rate and open-connection cap.
//! - `admission`: TLS handshake, CONNECT read and checks, authentication,
//!   refusals with the matching CONNACK, all under one timeout.
//! - `connect`: CONNECT framing, protocol version, client id, keepalive
//!   and will checks (pure).
//! - `acl`, `guard`: topic rights and the per-packet rules (pure).
//! - `sessions`: one live session per appliance (a reconnect closes the
//!   previous session first).
//! - `loopback`: the session's connection to rumqttd: open, failover
//!   across listeners, close.
//! - `session`, `flow`: the two forwarding loops of an admitted appliance
//!   and the state they share.
//! - [`auth`]: the [`Authenticator`] trait the hub implements.
//! - [`presence`]: connect/disconnect events for the hub.
//! - `tls`: the rustls `ServerConfig` and client-certificate identity.
//!
//! Invariants: nothing an appliance sends reaches rumqttd before its
//! CONNECT passed every check and authentication, and after that only
//! packets `guard` accepted, re-encoded by the edge; no input panics (all
//! parsing returns errors); every task is owned (listeners by the
//! [`EdgeHandle`], connections by their listener) and awaited at shutdown.

mod acl;
mod admission;
pub mod auth;
pub mod config;
mod connect;
mod flow;
mod guard;
mod listener;
mod loopback;
pub mod presence;
mod session;
mod sessions;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use auth::{
    AuthDecision, AuthMode, AuthRequest, Authenticator, Credential, DenyReason, Secret,
};
pub use config::{EdgeConfig, TlsListener};
pub use connect::ConnackCode;
pub use presence::{DisconnectReason, PresenceEvent};

use crate::credentials::Credentials;
use listener::{Listener, Transport};
use presence::Presence;

/// Errors of the edge's start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is inconsistent.
    #[error("invalid edge configuration: {0}")]
    Config(String),
    /// A certificate or key file could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A listener could not be bound.
    #[error("could not bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where and how the edge reaches the broker it fronts
/// ([`crate::EmbeddedBroker::edge_endpoint`] fills it).
#[derive(Debug, Clone)]
pub struct BrokerEndpoint {
    /// The broker's loopback listener. When it is the primary listener of
    /// an [`crate::EmbeddedBroker`] of this process, the edge spreads
    /// appliances over all of that broker's listeners.
    pub addr: SocketAddr,
    /// The credentials the edge connects with on behalf of appliances.
    pub credentials: Credentials,
    /// Connections the broker accepts from the edge; the edge's own cap
    /// must stay at or below 90 % of it.
    pub max_connections: usize,
    /// Largest packet the broker sends or accepts.
    pub max_packet_size: usize,
}

/// Counters of the edge, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// Connections open now (handshaking ones included).
    pub open_connections: u64,
    /// TCP connections accepted since start.
    pub accepted: u64,
    /// Connections closed at once by the new-connection rate limit.
    pub refused_rate_limited: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_over_capacity: u64,
    /// Connections that did not finish TLS + CONNECT + authentication in
    /// time.
    pub admission_timeouts: u64,
    /// CONNECTs refused with a CONNACK code (or closed as malformed).
    pub refused_connects: u64,
    /// Appliance sessions started.
    pub sessions: u64,
    /// Presence events dropped because the channel was full.
    pub presence_dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) over_capacity: AtomicU64,
    pub(crate) admission_timeouts: AtomicU64,
    pub(crate) refused_connects: AtomicU64,
    pub(crate) sessions: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: EdgeConfig,
    pub(crate) broker: BrokerEndpoint,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) presence: Presence,
    pub(crate) counters: Counters,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Loopback connections between TCP connect and CONNACK (see
    /// `session::UPSTREAM_OPENING`).
    pub(crate) upstream_opening: tokio::sync::Semaphore,
    /// The live session of each connected appliance.
    pub(crate) sessions: sessions::Sessions,
    /// The broker's listeners, used in turn.
    pub(crate) upstream_addrs: Vec<SocketAddr>,
    pub(crate) next_upstream: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// The broker's listeners in the order to try them for the next
    /// loopback connection: round robin, then the others as fallbacks.
    pub(crate) fn upstream_order(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let turn = self.next_upstream.fetch_add(1, Ordering::Relaxed);
        let n = self.upstream_addrs.len();
        (0..n).filter_map(move |i| self.upstream_addrs.get((turn + i) % n).copied())
    }
}

/// Resolves once the edge is shutting down (or its handle is gone).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The device edge.
#[derive(Debug)]
pub struct Edge;

impl Edge {
    /// Validates `config`, builds the TLS configuration, binds the
    /// listeners and starts accepting. Presence events go to `presence`
    /// (never awaited: see [`presence`]).
    pub async fn start(
        config: EdgeConfig,
        broker: BrokerEndpoint,
        authenticator: Arc<dyn Authenticator>,
        presence: mpsc::Sender<PresenceEvent>,
    ) -> Result<EdgeHandle, EdgeError> {
        config.validate(broker.max_connections)?;
        let mut bound = Vec::new();
        if let Some(tls) = &config.mqtts {
            let server_config = tls::server_config(tls, config.auth_mode)?;
            let transport = Transport::Tls(tokio_rustls::TlsAcceptor::from(server_config));
            bound.push((bind(tls.addr).await?, transport));
        }
        if let Some(addr) = config.mqtt_addr {
            bound.push((bind(addr).await?, Transport::Plain));
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let upstream_addrs = crate::embedded::listeners_of(broker.addr);
        let shared = Arc::new(Shared {
            broker,
            authenticator,
            presence: Presence::new(presence),
            upstream_opening: tokio::sync::Semaphore::new(loopback::UPSTREAM_OPENING),
            sessions: sessions::Sessions::default(),
            upstream_addrs,
            next_upstream: std::sync::atomic::AtomicUsize::new(0),
            counters: Counters::default(),
            shutdown: shutdown_rx,
            config,
        });
        let limits = listener::Limits::new(&shared.config);
        let mut handle = EdgeHandle {
            mqtts_addr: None,
            mqtt_addr: None,
            shutdown: shutdown_tx,
            listeners: JoinSet::new(),
            shared: Arc::clone(&shared),
        };
        for (tcp, transport) in bound {
            let addr = tcp.local_addr().map_err(|source| EdgeError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            match transport {
                Transport::Tls(_) => handle.mqtts_addr = Some(addr),
                Transport::Plain => handle.mqtt_addr = Some(addr),
            }
            tracing::info!(%addr, tls = matches!(transport, Transport::Tls(_)), "edge listening");
            let listener = Listener::new(tcp, transport, Arc::clone(&shared), limits.clone());
            handle.listeners.spawn(listener.run());
        }
        Ok(handle)
    }
}

/// Accept queue of the public listeners (the kernel caps it at
/// `net.core.somaxconn`): thousands of appliances reconnect at once after a
/// restart, and a full queue drops SYNs, which costs each a 1 s retransmit.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    let error = |source| EdgeError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

/// The running edge. Dropping it aborts every task; [`EdgeHandle::shutdown`]
/// closes sessions first (appliances see their connection close and
/// reconnect elsewhere or later).
#[derive(Debug)]
pub struct EdgeHandle {
    mqtts_addr: Option<SocketAddr>,
    mqtt_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: JoinSet<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EdgeHandle {
    /// Bound address of the TLS listener, if configured.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// Bound address of the plaintext listener, if configured.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// Current counters.
    pub fn stats(&self) -> EdgeStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EdgeStats {
            open_connections: get(&c.open),
            accepted: get(&c.accepted),
            refused_rate_limited: get(&c.rate_limited),
            refused_over_capacity: get(&c.over_capacity),
            admission_timeouts: get(&c.admission_timeouts),
            refused_connects: get(&c.refused_connects),
            sessions: get(&c.sessions),
            presence_dropped: self.shared.presence.dropped(),
        }
    }

    /// Stops accepting, closes every connection (sessions report
    /// [`DisconnectReason::Shutdown`]) and waits for all tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(result) = self.listeners.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "edge listener task failed");
            }
        }
    }
}
