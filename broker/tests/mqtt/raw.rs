//! A deliberately small MQTT 3.1.1 client for tests that need exact control
//! of the bytes and of the timing (when a session is really closed, which
//! packet arrives first). Built on rumqttc's `mqttbytes` codec; every wait
//! has a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, Packet, PubAck, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct RawClient<S> {
    stream: S,
    buf: BytesMut,
    next_pkid: u16,
}

impl RawClient<TcpStream> {
    /// TCP connect + CONNECT; returns the client and the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
        clean_session: bool,
    ) -> Result<(Self, ConnAck)> {
        let stream = timeout(WAIT, TcpStream::connect(addr)).await??;
        let mut client = RawClient::new(stream);
        let ack = client.handshake(client_id, login, clean_session).await?;
        Ok((client, ack))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S) -> Self {
        RawClient {
            stream,
            buf: BytesMut::new(),
            next_pkid: 1,
        }
    }

    pub async fn handshake(
        &mut self,
        client_id: &str,
        login: Option<(&str, &str)>,
        clean_session: bool,
    ) -> Result<ConnAck> {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 30;
        connect.clean_session = clean_session;
        if let Some((user, pass)) = login {
            connect.set_login(user, pass);
        }
        self.send(Packet::Connect(connect)).await?;
        match self.recv().await? {
            Packet::ConnAck(ack) => Ok(ack),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: Packet) -> Result<()> {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20)?;
        self.send_raw(&out).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        timeout(WAIT, self.stream.write_all(bytes)).await??;
        Ok(())
    }

    fn pkid(&mut self) -> u16 {
        let id = self.next_pkid;
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        id
    }

    /// SUBSCRIBE to `filters` at QoS 1 and return the SUBACK codes.
    pub async fn subscribe(&mut self, filters: &[&str]) -> Result<Vec<SubscribeReasonCode>> {
        let mut subscribe = Subscribe::new(filters[0], QoS::AtLeastOnce);
        for f in &filters[1..] {
            subscribe.add((*f).to_owned(), QoS::AtLeastOnce);
        }
        subscribe.pkid = self.pkid();
        self.send(Packet::Subscribe(subscribe)).await?;
        match self.recv().await? {
            Packet::SubAck(ack) => Ok(ack.return_codes),
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    /// QoS 1 PUBLISH, waiting for its PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        publish.pkid = self.pkid();
        let pkid = publish.pkid;
        self.send(Packet::Publish(publish)).await?;
        match self.recv().await? {
            Packet::PubAck(ack) if ack.pkid == pkid => Ok(()),
            other => bail!("expected PUBACK {pkid}, got {other:?}"),
        }
    }

    /// Next PUBLISH (acknowledged if QoS 1), skipping nothing else.
    pub async fn recv_publish(&mut self) -> Result<Publish> {
        match self.recv().await? {
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(PubAck::new(p.pkid))).await?;
                }
                Ok(p)
            }
            other => bail!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Next packet, waiting at most [`WAIT`].
    pub async fn recv(&mut self) -> Result<Packet> {
        self.recv_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("no packet within {WAIT:?}"))
    }

    /// Next packet if one arrives within `wait`; an error if the peer closed.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Ok(Some(p)),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => bail!("bad packet from server: {e}"),
            }
            let read = match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
            {
                Ok(r) => r.context("read")?,
                Err(_) => return Ok(None),
            };
            if read == 0 {
                bail!("connection closed by server");
            }
        }
    }

    /// Waits until the server closes the connection (EOF or reset),
    /// ignoring packets meanwhile; an error if it stays open for [`WAIT`].
    pub async fn wait_closed(&mut self) -> Result<()> {
        let mut scratch = [0u8; 1024];
        loop {
            match timeout(WAIT, self.stream.read(&mut scratch)).await {
                Err(_) => bail!("connection still open after {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends DISCONNECT and waits for the server to close the socket, which
    /// rumqttd does once its router has dropped the session.
    pub async fn disconnect(mut self) -> Result<()> {
        self.send(Packet::Disconnect).await?;
        self.wait_closed().await
    }
}
