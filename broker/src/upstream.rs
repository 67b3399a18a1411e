//! A loopback MQTT 3.1.1 connection to the embedded broker: write a CONNECT,
//! read the CONNACK, hand back the socket.
//!
//! Used by the start-up probe of [`crate::EmbeddedBroker`].
//!
//! Closing after DISCONNECT: let rumqttd close first ([`wait_closed`]).
//! rumqttd frees a connection's id when its router handles the DISCONNECT
//! and may give it at once to a new connection; if the client's socket
//! closes before rumqttd's link noticed, that link reports a second
//! disconnect for the id, which kills the *new* connection before its
//! CONNACK and leaves rumqttd's listener one reconnect away from a panic
//! that breaks it for good (measured with 4 listeners and parallel tests).
//! The edge's link (`crate::edge`) follows the same rule.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a loopback connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("i/o with the embedded broker: {0}")]
    Io(#[from] io::Error),
    #[error("could not encode CONNECT: {0}")]
    Encode(rumqttc::mqttbytes::Error),
    #[error("embedded broker sent an invalid packet: {0}")]
    Decode(rumqttc::mqttbytes::Error),
    #[error("embedded broker answered CONNECT with {0}")]
    NotConnAck(&'static str),
    #[error("embedded broker closed the connection before CONNACK")]
    Closed,
}

/// An open, acknowledged connection to the embedded broker.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    pub(crate) connack: ConnAck,
}

/// Connects to `addr`, sends `connect` and waits for the CONNACK (whatever
/// its code: the caller decides). No timeout here: callers wrap it, and
/// should not cancel it casually (rumqttd's per-client-id state can break
/// when a connection closes between CONNECT and CONNACK).
pub(crate) async fn open(
    addr: SocketAddr,
    connect: &Connect,
    max_packet_size: usize,
) -> Result<Upstream, UpstreamError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::with_capacity(connect.size());
    connect.write(&mut out).map_err(UpstreamError::Encode)?;
    stream.write_all(&out).await?;

    let mut pending = BytesMut::with_capacity(256);
    loop {
        match Packet::read(&mut pending, max_packet_size) {
            Ok(Packet::ConnAck(connack)) => return Ok(Upstream { stream, connack }),
            Ok(_) => return Err(UpstreamError::NotConnAck("another packet")),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(UpstreamError::Decode(e)),
        }
        if stream.read_buf(&mut pending).await? == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}

/// Reads and discards until the broker closes the connection (or `limit`
/// passes): after a DISCONNECT, the broker must be the one to close.
pub(crate) async fn wait_closed<R: AsyncRead + Unpin>(reader: &mut R, limit: Duration) {
    let drain = async {
        let mut scratch = [0u8; 512];
        while let Ok(read) = reader.read(&mut scratch).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(limit, drain).await;
}
