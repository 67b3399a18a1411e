//! Jobs over MQTT: the hub's one client connection to the broker (the
//! embedded one, or an external broker given by URL).
//!
//! - [`link`] drives rumqttc's event loop and never waits on anything else:
//!   incoming publishes go to a bounded queue, (re)subscriptions to a task.
//! - [`dispatch`] takes publishes off that queue and handles each in a task
//!   of its own, at most `max_in_flight` at once, so one slow appliance
//!   never stalls the others. The reply, sent after the commit, is the
//!   acknowledgement that counts (see [`dispatch`]).
//! - [`throttle`] answers 429 to an appliance that sends too fast.
//! - [`outbox`] publishes the notifications the store saved with their
//!   transitions, and deletes them once handed to the client.

pub mod dispatch;
pub mod link;
pub mod outbox;
pub mod throttle;

use std::time::Duration;

use rumqttc::MqttOptions;

/// How the hub reaches its broker.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Username, if the broker wants one.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Client id of this hub replica; its session is persistent.
    pub client_id: String,
    /// Shared subscription group, for several hub replicas.
    pub share_group: Option<String>,
    /// Most device messages handled at once.
    pub max_in_flight: usize,
}

impl MqttSettings {
    pub(crate) fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            .set_request_channel_capacity(10_000)
            .set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(username) = &self.username {
            options.set_credentials(username, self.password.clone().unwrap_or_default());
        }
        options
    }
}
