//! Harness for Fleethub's end-to-end tests: a hub started in-process on
//! port 0 in a temporary data directory, a REST client with the admin
//! token, and appliances played by rumqttc clients. Every wait has a
//! timeout; nothing sleeps to let time pass.

pub mod appliance;
pub mod hub;

pub use appliance::TestAppliance;
pub use hub::{HubOptions, TestHub};

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

/// Checks `condition` every 20 ms until it holds, failing with `what`
/// after [`EVENT_TIMEOUT`]. For state that changes without an event the
/// test can observe (a row written by a background task).
pub async fn wait_until<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    within(what, async {
        loop {
            tick.tick().await;
            if condition().await? {
                return Ok(());
            }
        }
    })
    .await?
}

/// Installs the TLS crypto provider, and logs to the test output when
/// `RUST_LOG` is set.
pub fn init_logging() {
    // reqwest and rumqttc use rustls without a built-in provider choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
