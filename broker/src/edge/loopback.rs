//! The loopback connection of one appliance's session to rumqttd: opened
//! with the appliance's CONNECT rewritten to the edge's credentials (client
//! id, clean session, keepalive and will kept), spread over the broker's
//! listeners with failover, and closed so that rumqttd closes last.
//!
//! Closing: after forwarding the appliance's DISCONNECT, the edge only
//! waits; otherwise it half-closes (FIN, no DISCONNECT, so rumqttd
//! publishes the will) and waits. Either way rumqttd has dropped the
//! session when its side closes; see `crate::upstream` for why the order
//! matters.

use std::time::Duration;

use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::connect::DeviceConnect;
use super::{DisconnectReason, Shared};
use crate::upstream::{self, Upstream, UpstreamError};

/// Loopback connections the edge opens at once. rumqttd accepts on a
/// thread per listener that blocks on its router for every new connection,
/// behind a kernel accept queue of 1024: opening more at once only
/// overflows that queue, and a dropped SYN costs the appliance a 1 s
/// retransmission.
pub(crate) const UPSTREAM_OPENING: usize = 128;

/// Time rumqttd gets to close a session once asked to.
pub(crate) const BROKER_CLOSE: Duration = Duration::from_secs(5);

/// Opens the loopback connection and checks rumqttd's CONNACK. Not
/// cancelled by shutdown: closing it between CONNECT and CONNACK can leave
/// rumqttd's per-client-id state broken.
pub(crate) async fn open(device: &DeviceConnect, shared: &Shared) -> Result<Upstream, String> {
    let broker = &shared.broker;
    let mut connect = Connect::new(device.appliance_id.to_string());
    connect.keep_alive = device.keep_alive;
    connect.clean_session = device.clean_session;
    connect.last_will = device.will.clone();
    connect.set_login(
        broker.credentials.username.clone(),
        broker.credentials.password.clone(),
    );
    let opened = timeout(shared.config.upstream_timeout, async {
        let _slot = shared.upstream_opening.acquire().await;
        let mut failed = UpstreamError::Closed;
        for addr in shared.upstream_order() {
            match upstream::open(addr, &connect, broker.max_packet_size).await {
                Ok(up) => return Ok(up),
                // A listener that refuses or drops connections (rumqttd
                // listeners can break for good): try the next one.
                Err(e @ (UpstreamError::Io(_) | UpstreamError::Closed)) => {
                    tracing::warn!(%addr, error = %e, "broker listener failed, trying the next");
                    failed = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(failed)
    })
    .await;
    match opened {
        Err(_) => Err("no CONNACK in time".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(up)) if up.connack.code == ConnectReturnCode::Success => Ok(up),
        Ok(Ok(up)) => Err(format!("CONNACK {:?}", up.connack.code)),
    }
}

/// Closes the loopback connection after a session ended for `reason`,
/// returning once rumqttd has closed its side (or after [`BROKER_CLOSE`]).
pub(crate) async fn close<R, W>(rx: &mut R, tx: &mut W, reason: DisconnectReason)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if reason != DisconnectReason::ClientDisconnect {
        let _ = timeout(BROKER_CLOSE, tx.shutdown()).await;
    }
    upstream::wait_closed(rx, BROKER_CLOSE).await;
}
