//! The two brokers under test: Fleethub (embedded rumqttd + device edge on
//! a runtime of their own) and Debian's Mosquitto (a child process with a
//! generated configuration).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use broker::certs::DevCertPaths;
use broker::edge::{
    AuthDecision, AuthRequest, Authenticator, Credential, DenyReason, Edge, EdgeConfig, EdgeHandle,
    EdgeStats, PresenceEvent, TlsListener,
};
use broker::{BrokerLimits, EmbeddedBroker};
use futures::future::BoxFuture;
use protocol::ApplianceId;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::load::{Pair, Target};

/// Appliance id -> token (a bench needs no constant-time comparison).
struct Tokens(HashMap<ApplianceId, String>);

impl Authenticator for Tokens {
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> BoxFuture<'a, AuthDecision> {
        let known = self.0.get(&request.appliance_id).map(String::as_bytes);
        let decision = match (&request.credential, known) {
            (Credential::Token(given), Some(token)) if given.expose() == token => {
                AuthDecision::Allow
            }
            _ => AuthDecision::Deny(DenyReason::BadCredentials),
        };
        Box::pin(std::future::ready(decision))
    }
}

/// Fleethub's MQTT side as `hub serve` runs it: the embedded broker with
/// its default limits and the edge with `EdgeConfig::default()` plus a TLS
/// listener on 127.0.0.1:0, every task on `runtime`.
pub struct Fleethub {
    runtime: Handle,
    broker: EmbeddedBroker,
    edge: EdgeHandle,
    /// Kept open so presence events are counted, never awaited.
    _presence: mpsc::Receiver<PresenceEvent>,
}

impl Fleethub {
    pub async fn start(
        runtime: Handle,
        certs: &DevCertPaths,
        pairs: &[Pair],
    ) -> anyhow::Result<Fleethub> {
        let tokens = Tokens(pairs.iter().map(|p| (p.id, p.token.clone())).collect());
        let config = EdgeConfig {
            mqtts: Some(TlsListener {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                cert_chain: certs.server_cert.clone(),
                private_key: certs.server_key.clone(),
                client_ca: Some(certs.ca_cert.clone()),
            }),
            ..EdgeConfig::default()
        };
        let presence_room = 4 * pairs.len() + 16;
        let started = runtime.spawn(async move {
            let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
            let (tx, presence) = mpsc::channel(presence_room);
            let edge = Edge::start(config, broker.edge_endpoint(), Arc::new(tokens), tx).await?;
            anyhow::Ok((broker, edge, presence))
        });
        let (broker, edge, presence) = started.await??;
        Ok(Fleethub {
            runtime,
            broker,
            edge,
            _presence: presence,
        })
    }

    /// Subscribers to the edge's TLS listener, publishers spread over the
    /// broker's loopback listeners with the hub's credentials.
    pub fn target(&self, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Target> {
        let hub = self.broker.hub_credentials();
        Ok(Target {
            subscribers: self.edge.mqtts_addr().context("no TLS listener")?,
            publishers: self.broker.listener_addrs().to_vec(),
            login: Some((hub.username.clone(), hub.password.clone())),
            tls,
        })
    }

    pub fn stats(&self) -> EdgeStats {
        self.edge.stats()
    }

    /// Shuts the edge down (rumqttd has no shutdown: its threads stay idle
    /// until the process exits).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.runtime.spawn(self.edge.shutdown()).await?;
        Ok(())
    }
}

/// Mosquitto's limits, written into its configuration and the report.
pub const MOSQUITTO_SETTINGS: &str = "max_inflight_messages 20, max_queued_messages 1000 \
     (its defaults), set_tcp_nodelay true (the edge sets it too), persistence false";

/// Mosquitto as a child process, killed when dropped.
pub struct Mosquitto {
    child: Child,
    pub version: String,
    pub tls: SocketAddr,
    pub plain: SocketAddr,
}

impl Mosquitto {
    /// Starts `mosquitto` with a TLS listener (the dev server certificate)
    /// and a plaintext one, both on free loopback ports; `None` when it is
    /// not installed.
    pub fn start(dir: &Path, certs: &DevCertPaths) -> anyhow::Result<Option<Mosquitto>> {
        let version = match Command::new("mosquitto").arg("-h").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("mosquitto")
                .to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("running mosquitto -h"),
        };
        let (tls, plain) = (free_port()?, free_port()?);
        let conf = dir.join("mosquitto.conf");
        let text = format!(
            "per_listener_settings false\n\
             allow_anonymous true\n\
             persistence false\n\
             log_dest none\n\
             user root\n\
             max_inflight_messages 20\n\
             max_queued_messages 1000\n\
             set_tcp_nodelay true\n\
             listener {} 127.0.0.1\n\
             max_connections -1\n\
             cafile {}\n\
             certfile {}\n\
             keyfile {}\n\
             listener {} 127.0.0.1\n\
             max_connections -1\n",
            tls.port(),
            certs.ca_cert.display(),
            certs.server_cert.display(),
            certs.server_key.display(),
            plain.port(),
        );
        std::fs::write(&conf, text)?;
        let log = std::fs::File::create(dir.join("mosquitto.log"))?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting mosquitto")?;
        let mut mosquitto = Mosquitto {
            child,
            version,
            tls,
            plain,
        };
        mosquitto.wait_listening(dir)?;
        Ok(Some(mosquitto))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn target(&self, tls: Arc<rustls::ClientConfig>) -> Target {
        Target {
            subscribers: self.tls,
            publishers: vec![self.plain],
            login: None,
            tls,
        }
    }

    fn wait_listening(&mut self, dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                bail!("mosquitto exited ({status}): {log}");
            }
            let up = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            if up(self.tls) && up(self.plain) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("mosquitto not listening after 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?)
}
