//! Harness for Fleethub's end-to-end tests: a hub started in-process on
//! port 0 in a temporary data directory, a REST client with the admin
//! token, and appliances played by rumqttc clients. Every wait has a
//! timeout; nothing sleeps to let time pass.

pub mod appliance;
pub mod hub;

pub use appliance::TestAppliance;
pub use hub::TestHub;

use std::future::Future;
use std::time::Duration;

/// How long any single expected event may take before a test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing with `what` after [`EVENT_TIMEOUT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(EVENT_TIMEOUT, future)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
