//! [`BrokerLimits`]: the sizes the embedded rumqttd runs with, their
//! defaults and their validation, and the translation into rumqttd's own
//! `Config` (which never leaves this crate).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings, Strategy};

use super::BrokerError;
use crate::credentials::Credentials;

/// Size of the in-memory commit log kept by rumqttd for one subscription
/// filter: at most `segment_count` segments of about `segment_size` bytes
/// (a segment may overflow by one packet). When the log is full the oldest
/// segment is dropped, including messages a persistent session has not read
/// yet: this is the offline queue of a filter, and it is lossy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes per segment; rumqttd refuses (panics on) less than 1024.
    pub segment_size: usize,
    /// Segments kept in memory, the active one included; at least 1.
    pub segment_count: usize,
}

impl LogLimits {
    /// Upper bound of the bytes retained by one filter's log.
    pub fn retained_bytes(&self) -> usize {
        self.segment_size.saturating_mul(self.segment_count)
    }
}

/// Limits of the embedded broker. The defaults are sized for 10,000
/// appliances (reached through the edge) plus a handful of internal clients;
/// see the module documentation of [`crate::embedded`] for the reasoning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Plaintext loopback listeners, each with its own accept thread. rumqttd
    /// blocks a listener's thread on its router for every new connection,
    /// so connection storms go about as many times faster as there are
    /// listeners (measured: 2,000 connects in 2.3 s with 1, 0.6 s with 4).
    pub listeners: usize,
    /// Connections rumqttd accepts in total. Beyond it rumqttd drops new
    /// connections *and* breaks its listener for that client id. The hub
    /// and the edge use one each; the rest serves tools and tests that
    /// play appliances directly with internal credentials.
    pub max_connections: usize,
    /// Largest MQTT packet (remaining length) rumqttd accepts from any client.
    pub max_packet_size: usize,
    /// Packets rumqttd reads from one connection before handing them to the
    /// router in one batch (rumqttd's `max_inflight_count`; the outgoing
    /// QoS 1 window is fixed at 100 by rumqttd itself).
    pub read_batch: usize,
    /// QoS 0 messages read from a log per delivery round
    /// (rumqttd's `max_outgoing_packet_count`).
    pub qos0_read_batch: u64,
    /// How long rumqttd waits for CONNECT on a new socket.
    pub connect_timeout: Duration,
    /// Log size of every filter not matched by `fleet_filters` (those of
    /// tools and tests that subscribe directly).
    pub default_log: LogLimits,
    /// Log size of the `fleet_filters`: the hub's subscriptions to the
    /// appliance -> hub topics of the whole fleet, and the edge's to the
    /// hub -> appliance topics of the whole fleet.
    pub fleet_log: LogLimits,
    /// Filters that get `fleet_log`. A subscription filter gets it when it
    /// matches one of these patterns (rumqttd's `custom_segment`).
    pub fleet_filters: Vec<String>,
    /// How long [`super::EmbeddedBroker::start`] waits for the broker to
    /// accept an MQTT connection.
    pub startup_timeout: Duration,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            listeners: 4,
            max_connections: 16_384,
            max_packet_size: 256 * 1024,
            read_batch: 100,
            qos0_read_batch: 200,
            connect_timeout: Duration::from_secs(5),
            default_log: LogLimits {
                segment_size: 16 * 1024,
                segment_count: 4,
            },
            fleet_log: LogLimits {
                segment_size: 4 * 1024 * 1024,
                segment_count: 8,
            },
            fleet_filters: default_fleet_filters(),
            startup_timeout: Duration::from_secs(10),
        }
    }
}

/// The fleet-wide subscriptions: the hub's to appliance -> hub topics
/// (`/sys/+/+/thing/job/update`, ...; shared-subscription prefixes are
/// stripped by rumqttd before the match) and the edge's to hub -> appliance
/// topics (`/sys/va/+/thing/job/notify`, ... match `/sys/+/+/...`).
fn default_fleet_filters() -> Vec<String> {
    let mut filters = protocol::topic::hub_filters(None);
    filters.extend(protocol::topic::edge_filters(None));
    filters
}

impl BrokerLimits {
    /// Checks every value rumqttd would panic on or misbehave with.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let fail = |what: &str| Err(BrokerError::InvalidLimits(what.to_owned()));
        if !(1..=16).contains(&self.listeners) {
            return fail("listeners must be between 1 and 16");
        }
        if self.max_connections == 0 {
            return fail("max_connections must be > 0 (0 rejects every connection)");
        }
        if self.max_packet_size < 1024 {
            return fail("max_packet_size must be >= 1024");
        }
        if self.read_batch == 0 || self.qos0_read_batch == 0 {
            return fail("read_batch and qos0_read_batch must be > 0");
        }
        let timeout_ms = self.connect_timeout.as_millis();
        if timeout_ms == 0 || timeout_ms > u128::from(u16::MAX) {
            return fail("connect_timeout must be between 1 ms and 65.535 s");
        }
        for log in [self.default_log, self.fleet_log] {
            if log.segment_size < 1024 || log.segment_count == 0 {
                return fail("log segment_size must be >= 1024 and segment_count >= 1");
            }
        }
        if self.fleet_filters.iter().any(|f| f.is_empty()) {
            return fail("fleet_filters must not contain an empty filter");
        }
        if self.startup_timeout.is_zero() {
            return fail("startup_timeout must be > 0");
        }
        Ok(())
    }

    /// rumqttd's configuration: plaintext MQTT 3.1.1 listeners on `listen`
    /// (one thread each), a static credential map, every router field set.
    pub(super) fn rumqttd_config(
        &self,
        listen: &[SocketAddr],
        principals: &[&Credentials],
    ) -> Config {
        let auth: HashMap<String, String> = principals
            .iter()
            .map(|c| (c.username.clone(), c.password.clone()))
            .collect();
        let connections = ConnectionSettings {
            connection_timeout_ms: u16::try_from(self.connect_timeout.as_millis())
                .unwrap_or(u16::MAX),
            max_payload_size: self.max_packet_size,
            max_inflight_count: self.read_batch,
            auth: Some(auth),
            external_auth: None,
            // Publishes with no matching filter are dropped instead of
            // creating a log per topic (which would never be freed).
            dynamic_filters: false,
        };
        let servers = listen
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let server = ServerSettings {
                    name: format!("fleethub-rumqttd-{i}"),
                    listen: *addr,
                    tls: None,
                    // rumqttd sleeps this long after each accept: 0, or
                    // 10,000 connections would take 10,000 times as long.
                    next_connection_delay_ms: 0,
                    connections: connections.clone(),
                };
                (format!("internal-{i}"), server)
            })
            .collect();
        let fleet = SegmentConfig {
            max_segment_size: self.fleet_log.segment_size,
            max_segment_count: self.fleet_log.segment_count,
        };
        let router = RouterConfig {
            max_connections: self.max_connections,
            max_outgoing_packet_count: self.qos0_read_batch,
            max_segment_size: self.default_log.segment_size,
            max_segment_count: self.default_log.segment_count,
            custom_segment: Some(
                self.fleet_filters
                    .iter()
                    .map(|f| (f.clone(), fleet.clone()))
                    .collect(),
            ),
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
        };
        Config {
            id: 0,
            router,
            v4: Some(servers),
            v5: None,
            ws: None,
            cluster: None,
            console: None,
            bridge: None,
            prometheus: None,
            metrics: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(change: impl FnOnce(&mut BrokerLimits)) -> bool {
        let mut limits = BrokerLimits::default();
        change(&mut limits);
        limits.validate().is_err()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(BrokerLimits::default().validate().is_ok());
    }

    #[test]
    fn values_rumqttd_cannot_run_with_are_refused() {
        assert!(invalid(|l| l.max_connections = 0));
        assert!(invalid(|l| l.listeners = 0));
        assert!(invalid(|l| l.default_log.segment_size = 0));
        assert!(invalid(|l| l.fleet_log.segment_count = 0));
        assert!(invalid(|l| l.connect_timeout = Duration::from_secs(100)));
        assert!(invalid(|l| l.read_batch = 0));
        assert!(invalid(|l| l.fleet_filters.push(String::new())));
    }

    #[test]
    fn config_sets_plaintext_v4_listeners_with_static_auth() {
        let hub = Credentials::generate("hub");
        let listen: [SocketAddr; 2] =
            [([127, 0, 0, 1], 1883).into(), ([127, 0, 0, 1], 1884).into()];
        let config = BrokerLimits::default().rumqttd_config(&listen, &[&hub]);
        let v4 = config.v4.expect("v4 listeners");
        assert_eq!(v4.len(), 2);
        for server in v4.values() {
            assert!(listen.contains(&server.listen));
            assert!(server.tls.is_none());
            assert_eq!(server.next_connection_delay_ms, 0);
            let auth = server.connections.auth.as_ref().expect("auth map");
            assert_eq!(auth.get("hub"), Some(&hub.password));
            assert_eq!(auth.len(), 1);
        }
        assert!(config.v5.is_none() && config.ws.is_none() && config.console.is_none());
        assert_eq!(config.router.max_segment_size, 16 * 1024);
        assert_eq!(config.router.custom_segment.map(|c| c.len()), Some(6));
    }
}
