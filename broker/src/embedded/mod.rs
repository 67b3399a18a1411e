//! The embedded rumqttd 0.20: Fleethub's routing core, reachable only from
//! inside the process.
//!
//! [`EmbeddedBroker::start`] builds rumqttd's configuration in code (no
//! file), with plaintext MQTT 3.1.1 listeners only, on `127.0.0.1` and
//! ports picked here, and a static username -> password map holding only
//! the internal principals `hub` and `edge`, whose secrets are random and
//! new at each start. Appliances never reach these listeners: they go
//! through the edge (`crate::edge`), which serves their sessions itself
//! and reaches rumqttd through one connection of its own as `edge`.
//!
//! There are 4 listeners by default rather than one: rumqttd's accept thread
//! blocks on its router for each new connection, so a single listener caps
//! connection storms at about 900 per second on a busy 2-core machine (2,000
//! connects took 2.3 s with 1 listener, 0.6 s with 4). The hub and the edge
//! connect to the first ([`EmbeddedBroker::addr`]); tools and tests that
//! play many appliances directly use all of them. All listeners share one
//! router, one session store and one credential map.
//!
//! Fewer listeners are cheaper at a steady rate but have a lower ceiling
//! (pubsub bench, 1,000 publishers spread over the listeners, paced QoS 1):
//! at 12,703 messages/s, 1 listener cost rumqttd about 35 % of a core
//! instead of 55-60 % (one thread reads a publish, answers its PUBACK and
//! writes it to the edge's link in one wake-up); but at 35,000/s that one
//! thread fell seconds behind (p50 2.7 s, against 36 ms with 4), and at
//! 50,000/s the edge's fleet log overflowed and rumqttd dropped 49,216
//! messages it had already acknowledged. Hence 4.
//!
//! # Limits ([`BrokerLimits::default`])
//!
//! | limit | default | why |
//! |---|---|---|
//! | `listeners` | 4 | connect throughput (above) |
//! | `max_connections` | 16,384 | the hub and the edge need one each; tools and tests may play 10,000 appliances directly |
//! | `max_packet_size` | 256 KiB | hub -> appliance replies (a `$list` of tasks); the edge caps appliance packets lower |
//! | `read_batch` | 100 | packets per router hand-off (rumqttd's `max_inflight_count`; its outgoing QoS 1 window is a fixed 100) |
//! | `qos0_read_batch` | 200 | rumqttd's own default |
//! | `connect_timeout` | 5 s | internal clients send CONNECT at once |
//! | `default_log` | 16 KiB x 4 | one log per filter, never freed, filled by everything published to it: <= 64 KiB per filter of a tool or test |
//! | `fleet_log` | 4 MiB x 8 | the fleet-wide filters of the hub (`/sys/+/+/thing/job/update`, ...) and of the edge (`/sys/va/+/thing/job/notify`, ...): 32 MiB each, about 100,000 messages kept while their reader is away |
//!
//! Other rumqttd settings: `next_connection_delay_ms` 0 (rumqttd sleeps that
//! long after *every* accept), `dynamic_filters` false (a publish nobody
//! subscribed to is dropped rather than given a log of its own), no TLS,
//! console, metrics, bridge or cluster, round-robin shared subscriptions.
//!
//! Offline queues are lossy: when a filter's log is full its oldest segment
//! is dropped, unread or not. The protocol copes (a device repeats a request
//! that got no reply; the hub re-sends notifies it has not seen acted on).
//!
//! # Lifetime
//!
//! rumqttd has no shutdown: the broker runs on a named thread
//! (`fleethub-rumqttd`, which itself starts rumqttd's router and listener
//! threads) that lives until the process exits. Dropping the handle does not
//! stop it. Internal client ids must not look like appliance ids (UUIDs),
//! or an appliance connecting would take the internal client's session over.

mod limits;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant};

pub use limits::{BrokerLimits, LogLimits};

use crate::credentials::Credentials;
use crate::upstream;

/// Attempts at binding a port that another process took between our probe
/// bind and rumqttd's.
const BIND_ATTEMPTS: usize = 5;
/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// How long a probe waits for rumqttd to close after its DISCONNECT.
const PROBE_CLOSE: Duration = Duration::from_secs(2);

/// Errors of the embedded broker's start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A limit rumqttd cannot run with.
    #[error("invalid broker limits: {0}")]
    InvalidLimits(String),
    /// No free loopback port could be found or used.
    #[error("could not bind the embedded broker on 127.0.0.1: {0}")]
    Bind(String),
    /// The broker thread could not be created.
    #[error("could not start the embedded broker thread: {0}")]
    Thread(std::io::Error),
    /// The broker did not accept a connection within `startup_timeout`.
    #[error("embedded broker not ready after {0:?}: {1}")]
    NotReady(Duration, String),
}

/// Handle to the running embedded broker. Cloning is not offered: the hub
/// owns it and hands out addresses and credentials.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addrs: Vec<SocketAddr>,
    hub: Credentials,
    edge: Credentials,
    limits: BrokerLimits,
    running: Arc<AtomicBool>,
}

impl EmbeddedBroker {
    /// Starts rumqttd on free loopback ports and waits until every
    /// listener accepts an MQTT connection with the hub's credentials.
    pub async fn start(limits: BrokerLimits) -> Result<EmbeddedBroker, BrokerError> {
        limits.validate()?;
        let hub = Credentials::generate("hub");
        let edge = Credentials::generate("edge");
        let mut last_error = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let addrs = (0..limits.listeners)
                .map(|_| free_loopback_port())
                .collect::<Result<Vec<_>, _>>()?;
            let config = limits.rumqttd_config(&addrs, &[&hub, &edge]);
            let running = spawn_broker_thread(config)?;
            match wait_ready(&addrs, &hub, &running, limits.startup_timeout).await {
                Ok(()) => {
                    tracing::info!(?addrs, "embedded broker ready");
                    return Ok(EmbeddedBroker {
                        addrs,
                        hub,
                        edge,
                        limits,
                        running,
                    });
                }
                Err(Readiness::Exited) => {
                    tracing::warn!(
                        ?addrs,
                        "embedded broker listeners exited, retrying other ports"
                    );
                    last_error = format!("listeners on {addrs:?} exited (ports taken?)");
                }
                Err(Readiness::TimedOut(why)) => {
                    return Err(BrokerError::NotReady(limits.startup_timeout, why));
                }
            }
        }
        Err(BrokerError::Bind(last_error))
    }

    /// Address of the first (primary) loopback listener, for the hub and
    /// other internal clients.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0] // never empty: `limits.listeners >= 1` was validated
    }

    /// Every loopback listener, primary first.
    pub fn listener_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Credentials of the hub (publishes notifies, subscribes to updates).
    pub fn hub_credentials(&self) -> &Credentials {
        &self.hub
    }

    /// Credentials of the edge's link to the broker.
    pub fn edge_credentials(&self) -> &Credentials {
        &self.edge
    }

    /// What the edge needs to front this broker: address, the `edge`
    /// credentials and the packet size.
    pub fn edge_endpoint(&self) -> crate::edge::BrokerEndpoint {
        crate::edge::BrokerEndpoint {
            addr: self.addr(),
            credentials: self.edge.clone(),
            max_packet_size: self.limits.max_packet_size,
        }
    }

    /// The limits the broker runs with.
    pub fn limits(&self) -> &BrokerLimits {
        &self.limits
    }

    /// False once the broker's listener has stopped (it should not).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// Binds port 0 on loopback, reads the port, releases it for rumqttd.
fn free_loopback_port() -> Result<SocketAddr, BrokerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| BrokerError::Bind(e.to_string()))?;
    listener
        .local_addr()
        .map_err(|e| BrokerError::Bind(e.to_string()))
}

/// Runs rumqttd on its own thread; the flag turns false when
/// `Broker::start` returns, which it only does when all its listeners died
/// (typically: the ports were taken). A single listener failing while
/// others run shows as that listener never becoming ready.
fn spawn_broker_thread(config: rumqttd::Config) -> Result<Arc<AtomicBool>, BrokerError> {
    let running = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&running);
    thread::Builder::new()
        .name("fleethub-rumqttd".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
            flag.store(false, Ordering::Release);
        })
        .map_err(BrokerError::Thread)?;
    Ok(running)
}

enum Readiness {
    Exited,
    TimedOut(String),
}

/// Waits until every listener answers an MQTT CONNECT.
async fn wait_ready(
    addrs: &[SocketAddr],
    hub: &Credentials,
    running: &AtomicBool,
    limit: Duration,
) -> Result<(), Readiness> {
    let deadline = Instant::now() + limit;
    for addr in addrs {
        wait_listener(*addr, hub, running, deadline).await?;
    }
    Ok(())
}

/// Polls an MQTT CONNECT with the hub's credentials until CONNACK(0).
async fn wait_listener(
    addr: SocketAddr,
    hub: &Credentials,
    running: &AtomicBool,
    deadline: Instant,
) -> Result<(), Readiness> {
    let mut connect = Connect::new(format!("fleethub-probe-{}", addr.port()));
    connect.keep_alive = 5;
    connect.set_login(hub.username.clone(), hub.password.clone());
    let mut last = String::from("no attempt");
    loop {
        if !running.load(Ordering::Acquire) {
            return Err(Readiness::Exited);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Readiness::TimedOut(format!("{addr}: {last}")));
        }
        match timeout(remaining, upstream::open(addr, &connect, 1024)).await {
            Ok(Ok(mut up)) if up.connack.code == ConnectReturnCode::Success => {
                // DISCONNECT, then let rumqttd close (see `upstream`).
                if up.stream.write_all(&[0xE0, 0x00]).await.is_ok() {
                    upstream::wait_closed(&mut up.stream, PROBE_CLOSE).await;
                }
                return Ok(());
            }
            Ok(Ok(up)) => last = format!("CONNACK {:?}", up.connack.code),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => return Err(Readiness::TimedOut(format!("{addr}: {last}"))),
        }
        tokio::time::sleep(PROBE_INTERVAL.min(remaining)).await;
    }
}
