//! The device edge: the only public MQTT entry of Fleethub, and the
//! security boundary between appliances and the embedded rumqttd.
//!
//! ```text
//!                                            sessions (one task each)
//! appliance --TLS--> listener --> admission --> session <--inbox-- link <==MQTT==> rumqttd
//!                    accept loop:  TLS, CONNECT   edge answers as     one connection as
//!                    rate and cap  checks, auth   MQTT server; guard  `edge`: publishes up,
//!                    limits        (one timeout)  checks each packet  routes messages down
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
//! - `session`: an admitted appliance's MQTT 3.1.1 session, served by the
//!   edge itself (CONNACK, PINGRESP, SUBACK, PUBACK, keepalive, will).
//! - `subscriptions`, `inbox`, `flow`: a session's filters and topic
//!   matcher, its bounded queue of hub -> device messages, and its QoS 1
//!   window (pure).
//! - `sessions`: one live session per appliance (a reconnect closes the
//!   previous session first), and the routing of messages to it.
//! - `link`: the edge's single MQTT connection to rumqttd, shared by all
//!   sessions.
//! - [`auth`]: the [`Authenticator`] trait the hub implements.
//! - [`presence`]: connect/disconnect events for the hub.
//! - `tls`: the rustls `ServerConfig` and client-certificate identity.
//!
//! Sessions: the edge keeps no offline session. CONNACK always says
//! session present = 0, whatever `clean_session` asked; messages for an
//! appliance with no live session are dropped, and an appliance pulls
//! `$next` on every connect (topics.md, section 1).
//!
//! Invariants: nothing an appliance sends reaches rumqttd before its
//! CONNECT passed every check and authentication, and after that only
//! PUBLISHes `guard` accepted, re-published by the edge's link; rumqttd
//! never holds a connection or a filter per appliance; no input panics
//! (all parsing returns errors); the link never waits on a session (a full
//! inbox closes that session only); every task is owned (listeners and
//! the link by the [`EdgeHandle`], connections by their listener) and
//! awaited at shutdown.

mod acl;
mod admission;
pub mod auth;
pub mod config;
mod connect;
mod flow;
mod guard;
mod inbox;
mod link;
mod listener;
pub mod presence;
mod session;
mod sessions;
mod subscriptions;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
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
    /// The edge's link to the broker did not come up in time.
    #[error("no link to the broker: {0}")]
    Broker(String),
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
    /// The broker's loopback listener.
    pub addr: SocketAddr,
    /// The credentials of the edge's one connection (its link).
    pub credentials: Credentials,
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
    /// Hub -> device messages handed to a live session.
    pub messages_queued: u64,
    /// Hub -> device messages dropped: no live session for the appliance,
    /// no matching subscription, or a full inbox (which closes the session).
    pub messages_dropped: u64,
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
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) presence: Presence,
    pub(crate) counters: Counters,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The live session of each connected appliance.
    pub(crate) sessions: sessions::Sessions,
    /// The one connection to the broker.
    pub(crate) link: link::Link,
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
    /// listeners, brings the link to the broker up (connected and
    /// subscribed, within `config.upstream_timeout`) and starts accepting.
    /// Presence events go to `presence` (never awaited: see [`presence`]).
    pub async fn start(
        config: EdgeConfig,
        broker: BrokerEndpoint,
        authenticator: Arc<dyn Authenticator>,
        presence: mpsc::Sender<PresenceEvent>,
    ) -> Result<EdgeHandle, EdgeError> {
        config.validate()?;
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
        let filters = protocol::topic::edge_filters(Some(&config.product_key));
        let (link, driver) = link::Link::new(&broker, filters);
        let shared = Arc::new(Shared {
            authenticator,
            presence: Presence::new(presence),
            sessions: sessions::Sessions::default(),
            link,
            counters: Counters::default(),
            shutdown: shutdown_rx,
            config,
        });
        let (link_stop, stop_rx) = oneshot::channel();
        let mut handle = EdgeHandle {
            mqtts_addr: None,
            mqtt_addr: None,
            shutdown: shutdown_tx,
            listeners: JoinSet::new(),
            link: JoinSet::new(),
            link_stop,
            shared: Arc::clone(&shared),
        };
        handle
            .link
            .spawn(link::drive(driver, Arc::clone(&shared), stop_rx));
        let limit = shared.config.upstream_timeout;
        match tokio::time::timeout(limit, shared.link.up()).await {
            Ok(true) => {}
            _ => return Err(EdgeError::Broker(format!("not connected after {limit:?}"))),
        }
        let limits = listener::Limits::new(&shared.config);
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
    link: JoinSet<()>,
    link_stop: oneshot::Sender<()>,
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
            messages_queued: get(&self.shared.link.deliveries.queued),
            messages_dropped: get(&self.shared.link.deliveries.dropped),
        }
    }

    /// Stops accepting, closes every connection (sessions report
    /// [`DisconnectReason::Shutdown`] and hand their wills to the link),
    /// then closes the link and waits for all tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(result) = self.listeners.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "edge listener task failed");
            }
        }
        let _ = self.link_stop.send(());
        while let Some(result) = self.link.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "edge link task failed");
            }
        }
    }
}
