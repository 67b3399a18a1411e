//! The test harness of the edge: an embedded broker, an edge in front of it
//! (TLS and plaintext listeners on 127.0.0.1:0, dev certificates in a temp
//! dir), a static-map authenticator and the presence channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use broker::certs::{ensure_dev_certs, DevCertPaths};
use broker::edge::{
    AuthDecision, AuthMode, AuthRequest, Authenticator, Credential, DenyReason, Edge, EdgeConfig,
    EdgeHandle, PresenceEvent, TlsListener,
};
use broker::{BrokerLimits, EmbeddedBroker};
use futures::future::BoxFuture;
use protocol::ApplianceId;
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::raw::{RawClient, WAIT};

/// Appliance id -> token, compared in constant time.
pub struct StaticAuthenticator(HashMap<ApplianceId, Vec<u8>>);

impl Authenticator for StaticAuthenticator {
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> BoxFuture<'a, AuthDecision> {
        let decision = match (self.0.get(&request.appliance_id), &request.credential) {
            (None, _) => AuthDecision::Deny(DenyReason::BadCredentials),
            (Some(_), Credential::ClientCertificate) => AuthDecision::Allow,
            (Some(token), Credential::Token(given)) => {
                if bool::from(token.as_slice().ct_eq(given.expose())) {
                    AuthDecision::Allow
                } else {
                    AuthDecision::Deny(DenyReason::BadCredentials)
                }
            }
        };
        Box::pin(async move { decision })
    }
}

/// One provisioned appliance.
#[derive(Clone)]
pub struct Appliance {
    pub id: ApplianceId,
    pub token: String,
}

impl Appliance {
    pub fn topic(&self, suffix: &str) -> String {
        format!("/sys/va/{}/thing/{suffix}", self.id)
    }
}

pub struct Fleet {
    pub certs: DevCertPaths,
    pub dir: tempfile::TempDir,
    pub broker: EmbeddedBroker,
    pub edge: EdgeHandle,
    pub presence: mpsc::Receiver<PresenceEvent>,
    pub appliances: Vec<Appliance>,
}

impl Fleet {
    /// A fleet of `count` appliances with token authentication.
    pub async fn start(count: usize) -> Result<Fleet> {
        Fleet::start_with(count, AuthMode::Token).await
    }

    pub async fn start_with(count: usize, auth_mode: AuthMode) -> Result<Fleet> {
        Fleet::start_tuned(count, |config| config.auth_mode = auth_mode).await
    }

    /// A fleet whose edge configuration `tune` adjusts.
    pub async fn start_tuned(count: usize, tune: impl FnOnce(&mut EdgeConfig)) -> Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let certs = ensure_dev_certs(dir.path(), &[])?;
        let appliances: Vec<Appliance> = (0..count)
            .map(|i| Appliance {
                id: ApplianceId::new_random(),
                token: format!("token-{i}-{}", ApplianceId::new_random()),
            })
            .collect();
        let tokens = appliances
            .iter()
            .map(|a| (a.id, a.token.as_bytes().to_vec()))
            .collect();
        let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
        let mut config = EdgeConfig {
            mqtts: Some(TlsListener {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                cert_chain: certs.server_cert.clone(),
                private_key: certs.server_key.clone(),
                client_ca: Some(certs.ca_cert.clone()),
            }),
            mqtt_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..EdgeConfig::default()
        };
        tune(&mut config);
        let (tx, presence) = mpsc::channel(1024);
        let authenticator = Arc::new(StaticAuthenticator(tokens));
        let edge = Edge::start(config, broker.edge_endpoint(), authenticator, tx).await?;
        Ok(Fleet {
            certs,
            dir,
            broker,
            edge,
            presence,
            appliances,
        })
    }

    pub fn tls_port(&self) -> u16 {
        self.edge.mqtts_addr().map_or(0, |a| a.port())
    }

    pub fn plain_addr(&self) -> SocketAddr {
        self.edge
            .mqtt_addr()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.ca_cert.clone()
    }

    /// An internal client on the broker itself, with the hub's credentials.
    pub async fn hub(&self, name: &str) -> Result<RawClient<TcpStream>> {
        let hub = self.broker.hub_credentials();
        let login = Some((hub.username.as_str(), hub.password.as_str()));
        let (client, ack) = RawClient::connect(self.broker.addr(), name, login, true).await?;
        anyhow::ensure!(ack.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
        Ok(client)
    }

    /// A TLS connection to the edge trusting the dev CA (no MQTT yet).
    pub async fn tls(&self) -> Result<RawClient<TlsStream<TcpStream>>> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.certs.ca_cert)?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", self.tls_port())).await?;
        let name = ServerName::try_from("localhost")?;
        let tls = timeout(
            WAIT,
            TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await??;
        Ok(RawClient::new(tls))
    }

    /// Next presence event, within [`WAIT`].
    pub async fn next_presence(&mut self) -> Result<PresenceEvent> {
        timeout(WAIT, self.presence.recv())
            .await
            .context("no presence event in time")?
            .ok_or_else(|| anyhow!("presence channel closed"))
    }
}
