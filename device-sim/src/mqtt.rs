//! Where and how appliances connect: the broker URL (`mqtts://` with a CA
//! certificate, from a file or from registration, or plaintext `mqtt://`
//! for local development), the rustls client
//! configuration (ring provider, built once and shared), and the
//! per-appliance rumqttc options.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;

use crate::identity::Identity;

/// Largest packet an appliance accepts or sends (a `$list` reply is the
/// biggest message it gets).
const MAX_PACKET: usize = 256 * 1024;
/// Unacknowledged QoS 1 publishes per connection (rumqttc keeps one slot
/// per possible packet id in flight, so this bounds its memory).
const INFLIGHT: u16 = 8;
/// Requests queued from the appliance to its event loop.
pub const REQUEST_CHANNEL: usize = 16;

/// The broker the fleet connects to.
#[derive(Clone)]
pub struct BrokerTarget {
    /// Host name or address (also the TLS server name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS settings; `None` for plaintext.
    pub tls: Option<Arc<ClientConfig>>,
    /// Username and password for every appliance instead of its own
    /// (internal credentials of an embedded broker in tests).
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long one connection attempt (TCP + TLS + CONNECT) may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for BrokerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl BrokerTarget {
    /// Parses `mqtt://host:port` or `mqtts://host:port`; `mqtts` needs the
    /// CA certificate (PEM) that signed the server's certificate.
    pub fn from_url(url: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid MQTT URL {url}"))?;
        let host = parsed
            .host_str()
            .with_context(|| format!("no host in {url}"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (tls, default_port) = match parsed.scheme() {
            "mqtt" => (None, 1883),
            "mqtts" => {
                let ca = ca_pem.context(
                    "mqtts:// needs the hub's CA certificate: --ca-file, or register with \
                     --register-token",
                )?;
                (Some(tls_config(ca)?), 8883)
            }
            other => bail!("unsupported scheme {other}: use mqtt:// or mqtts://"),
        };
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(default_port),
            tls,
            credentials: None,
            keep_alive: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// rumqttc options for one appliance: client id = username =
    /// applianceId, password = its token (unless overridden), QoS 1
    /// persistent session, small bounded buffers.
    pub fn options(&self, identity: &Identity) -> MqttOptions {
        let id = identity.appliance_id.to_string();
        let mut options = MqttOptions::new(id.clone(), self.host.clone(), self.port);
        match &self.credentials {
            Some((user, password)) => options.set_credentials(user.clone(), password.clone()),
            None => options.set_credentials(id, identity.token.clone()),
        };
        options
            .set_clean_session(false)
            .set_keep_alive(self.keep_alive)
            .set_inflight(INFLIGHT)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_request_channel_capacity(REQUEST_CHANNEL);
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        options
    }

    /// The password an appliance connects with, after a token change.
    pub fn password_for(&self, token: &str) -> Option<String> {
        self.credentials.is_none().then(|| token.to_owned())
    }
}

/// A rustls client configuration trusting only the CA certificates in
/// `ca_pem`, with the ring provider. Session resumption is off: each
/// simulated appliance is its own machine and must pay for its own full
/// handshake.
pub fn tls_config(ca_pem: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.context("parsing the CA certificate (PEM)")?;
        roots.add(cert).context("adding the CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificate in the CA PEM");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() -> anyhow::Result<()> {
        let plain = BrokerTarget::from_url("mqtt://127.0.0.1:18830", None)?;
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 18830));
        assert!(plain.tls.is_none());
        assert_eq!(BrokerTarget::from_url("mqtt://localhost", None)?.port, 1883);
        assert!(BrokerTarget::from_url("mqtts://localhost:8883", None).is_err());
        assert!(BrokerTarget::from_url("http://localhost", None).is_err());
        assert!(BrokerTarget::from_url("not a url", None).is_err());
        Ok(())
    }

    #[test]
    fn options_use_identity_unless_overridden() -> anyhow::Result<()> {
        let mut target = BrokerTarget::from_url("mqtt://127.0.0.1:1", None)?;
        let identity = Identity {
            appliance_id: "0f8fad5b-d9cb-469f-a165-70867728950e".parse()?,
            token: "tok".into(),
            product_key: Default::default(),
        };
        let options = target.options(&identity);
        assert_eq!(options.client_id(), identity.appliance_id.to_string());
        assert_eq!(
            options.credentials(),
            Some(rumqttc::Login::new(
                identity.appliance_id.to_string(),
                "tok"
            ))
        );
        assert!(!options.clean_session());
        target.credentials = Some(("edge".into(), "secret".into()));
        assert_eq!(
            target.options(&identity).credentials(),
            Some(rumqttc::Login::new("edge", "secret"))
        );
        assert_eq!(target.password_for("new"), None);
        Ok(())
    }
}
