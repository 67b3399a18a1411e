//! Fleethub's MQTT side: the embedded rumqttd routing core and the device
//! edge in front of it, plus the dev certificate tooling.
//!
//! Layout:
//! - [`embedded`]: rumqttd 0.20 on a loopback port with internal principals
//!   only ([`EmbeddedBroker`], [`BrokerLimits`]).
//! - [`edge`]: the only public MQTT entry: TLS, CONNECT checks and
//!   appliance authentication, per-appliance topic ACL, the appliances'
//!   MQTT sessions, one multiplexed link to rumqttd ([`edge::Edge`]).
//! - [`certs`]: dev CA, server and client certificates (rcgen).
//! - `credentials`: [`Credentials`] of the internal principals.
//! - `upstream`: a loopback MQTT 3.1.1 CONNECT/CONNACK exchange, for the
//!   broker's readiness probe.
//!
//! Only this crate knows rumqttd's types; none appears in its public API.

pub mod certs;
mod credentials;
pub mod edge;
pub mod embedded;
mod upstream;

pub use credentials::Credentials;
pub use embedded::{BrokerError, BrokerLimits, EmbeddedBroker, LogLimits};
