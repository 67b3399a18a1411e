//! [`EdgeConfig`]: listeners, TLS files, authentication mode and limits of
//! the device edge, with defaults and validation. The hub fills it from its
//! own flags / environment / TOML (`broker/` stays free of clap and serde).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use protocol::ProductKey;

use super::{AuthMode, EdgeError};

/// The public MQTT-over-TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// PEM file with the server certificate chain (leaf first).
    pub cert_chain: PathBuf,
    /// PEM file with the server's private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// PEM file with the CA(s) client certificates must chain to; required
    /// by [`AuthMode::Certificate`] and [`AuthMode::Either`].
    pub client_ca: Option<PathBuf>,
}

/// Configuration of the device edge. See [`EdgeConfig::default`] for the
/// values and their reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// MQTT over TLS; `None` only makes sense in development.
    pub mqtts: Option<TlsListener>,
    /// Plaintext MQTT for local development; off by default.
    pub mqtt_addr: Option<SocketAddr>,
    /// How appliances authenticate.
    pub auth_mode: AuthMode,
    /// First level of every appliance namespace.
    pub product_key: ProductKey,
    /// Time a new connection gets for its TLS handshake, its CONNECT and
    /// its authentication together.
    pub connect_timeout: Duration,
    /// Time the edge's link to the broker may take to connect and
    /// subscribe when the edge starts.
    pub upstream_timeout: Duration,
    /// A session whose appliance does not accept bytes for this long is
    /// closed as a slow consumer (it must not hold the edge's memory).
    pub write_timeout: Duration,
    /// Open device connections, handshaking ones included.
    pub max_connections: usize,
    /// New connections accepted per second (token bucket, burst of one
    /// second's worth); above it sockets are closed at once.
    pub max_new_connections_per_sec: u32,
    /// Largest MQTT packet (remaining length) an appliance may send.
    pub max_packet_size: usize,
    /// Keepalive values accepted in CONNECT, in seconds. The edge closes a
    /// session that sends nothing for 1.5 times its keepalive.
    pub keepalive_secs: RangeInclusive<u16>,
}

impl Default for EdgeConfig {
    /// - `0.0.0.0:8883` with `certs/dev/server.pem`, `server-key.pem` and
    ///   `ca.pem` (what `hub serve` creates), no plaintext listener;
    /// - token authentication, product key `va`;
    /// - 10 s to connect (TLS + CONNECT + authentication), 10 s for the
    ///   link to the broker at start, 30 s write timeout;
    /// - 12,000 connections (10,000 appliances + 20 % for reconnect
    ///   overlap), 2,500 new connections per second (10,000 in 4 s);
    /// - 64 KiB packets (updates, metrics), keepalive 5..=1200 s.
    fn default() -> Self {
        let dev = PathBuf::from("certs/dev");
        EdgeConfig {
            mqtts: Some(TlsListener {
                addr: SocketAddr::from(([0, 0, 0, 0], 8883)),
                cert_chain: dev.join("server.pem"),
                private_key: dev.join("server-key.pem"),
                client_ca: Some(dev.join("ca.pem")),
            }),
            mqtt_addr: None,
            auth_mode: AuthMode::Token,
            product_key: ProductKey::default(),
            connect_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 12_000,
            max_new_connections_per_sec: 2_500,
            max_packet_size: 64 * 1024,
            keepalive_secs: 5..=1200,
        }
    }
}

impl EdgeConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), EdgeError> {
        let fail = |what: String| Err(EdgeError::Config(what));
        if self.mqtts.is_none() && self.mqtt_addr.is_none() {
            return fail("no listener configured".into());
        }
        let has_client_ca = self.mqtts.as_ref().is_some_and(|t| t.client_ca.is_some());
        if self.auth_mode != AuthMode::Token && !has_client_ca {
            return fail(format!(
                "auth mode {:?} needs a client CA file",
                self.auth_mode
            ));
        }
        if self.max_connections == 0 || self.max_new_connections_per_sec == 0 {
            return fail("max_connections and max_new_connections_per_sec must be > 0".into());
        }
        if self.max_packet_size < 128 {
            return fail("max_packet_size must be >= 128".into());
        }
        if self.keepalive_secs.is_empty() || *self.keepalive_secs.start() == 0 {
            return fail("keepalive_secs must be a non-empty range above 0".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("upstream_timeout", self.upstream_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return fail(format!("{name} must be > 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(EdgeConfig::default().validate().is_ok());
    }

    #[test]
    fn refuses_inconsistent_settings() {
        let bad = [
            EdgeConfig {
                mqtts: None,
                ..EdgeConfig::default()
            },
            EdgeConfig {
                max_connections: 0,
                ..EdgeConfig::default()
            },
            EdgeConfig {
                keepalive_secs: 0..=10,
                ..EdgeConfig::default()
            },
            EdgeConfig {
                auth_mode: AuthMode::Either,
                mqtts: EdgeConfig::default().mqtts.map(|t| TlsListener {
                    client_ca: None,
                    ..t
                }),
                ..EdgeConfig::default()
            },
            EdgeConfig {
                connect_timeout: Duration::ZERO,
                ..EdgeConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
