//! Fleethub's MQTT side: the embedded rumqttd routing core and (soon) the
//! device edge in front of it.
//!
//! Layout:
//! - [`embedded`]: rumqttd 0.20 on a loopback port with internal principals
//!   only ([`EmbeddedBroker`], [`BrokerLimits`]).
//! - `credentials`: [`Credentials`] of the internal principals.
//! - `upstream`: a loopback MQTT 3.1.1 CONNECT/CONNACK exchange, shared by
//!   the broker's readiness probe and the edge.
//!
//! Only this crate knows rumqttd's types; none appears in its public API.

mod credentials;
pub mod embedded;
mod upstream;

pub use credentials::Credentials;
pub use embedded::{BrokerError, BrokerLimits, EmbeddedBroker, LogLimits};
