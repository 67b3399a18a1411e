//! A loopback MQTT 3.1.1 connection to the embedded broker: write a CONNECT,
//! read the CONNACK, hand back the socket with whatever bytes already
//! followed the CONNACK (a persistent session may be sent its queued
//! messages in the same TCP segment).
//!
//! Used by the start-up probe of [`crate::EmbeddedBroker`] and by the edge,
//! which opens one such connection per appliance.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// Bytes received after the CONNACK, not yet consumed.
    pub(crate) pending: BytesMut,
    pub(crate) connack: ConnAck,
}

/// Connects to `addr`, sends `connect` and waits for the CONNACK (whatever
/// its code: the caller decides). No timeout here: callers wrap it, and
/// should not cancel it casually (see `edge::session`).
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
            Ok(Packet::ConnAck(connack)) => {
                return Ok(Upstream {
                    stream,
                    pending,
                    connack,
                })
            }
            Ok(_) => return Err(UpstreamError::NotConnAck("another packet")),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(UpstreamError::Decode(e)),
        }
        if stream.read_buf(&mut pending).await? == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}
