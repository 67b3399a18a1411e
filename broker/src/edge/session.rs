//! An admitted appliance's session. The edge is the appliance's MQTT 3.1.1
//! server: it answers every packet itself and talks to the broker only
//! through its shared link (`link`); no connection to rumqttd is opened per
//! appliance.
//!
//! [`run`] takes the appliance's place in the registry (`sessions`), which
//! first closes an older session of the same appliance, answers CONNACK
//! (session present = 0: the edge keeps no offline session), reports
//! presence, serves the session until it ends, publishes the will unless
//! the appliance said DISCONNECT, and reports the end.
//!
//! One task serves a session, in a loop:
//! - appliance -> edge: packets framed from the socket and judged by
//!   `guard`; a PUBLISH is handed to the link (QoS 1) before its PUBACK is
//!   written; SUBSCRIBE / UNSUBSCRIBE change the session's subscriptions in
//!   its `inbox`; PINGREQ is answered; any refused packet ends the session.
//! - edge -> appliance: messages the link put in the inbox, at most
//!   `flow::WINDOW` QoS 1 ones unacknowledged.
//! - keepalive: 1.5 x the CONNECT's keepalive without a packet ends it.
//!
//! A write that makes no progress for `write_timeout`, or an inbox that
//! overflows, ends the session as a slow consumer: a slow appliance only
//! ever holds up itself.

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{LastWill, Packet, PubAck};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::AsyncClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use super::acl::Acl;
use super::admission::Admitted;
use super::connect::{connack_v4, ConnackCode};
use super::flow::Flow;
use super::guard::{self, flags_ok, judge, Verdict};
use super::inbox::Inbox;
use super::{Counters, DisconnectReason, PresenceEvent, Shared};

/// Time given to a closing handshake (TLS close_notify) with the appliance,
/// and to handing its will to the link.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Time an older session of the same appliance gets to close.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(5);
/// Smallest read; a packet known to be larger is read whole.
const READ_CHUNK: usize = 1024;
/// Largest buffer capacity kept by an idle session.
const KEEP_CAPACITY: usize = 16 * 1024;
/// Bytes of outgoing packets gathered before a write.
const WRITE_BATCH: usize = 16 * 1024;

/// Runs the session of an admitted appliance to its end.
pub(crate) async fn run<S>(admitted: Admitted<S>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Admitted {
        mut stream,
        buffered,
        device,
        peer,
    } = admitted;
    let id = device.appliance_id;
    let session = shared.presence.next_session();
    let ticket = shared.sessions.enter(id, session, TAKEOVER_LIMIT).await;
    if ticket.superseded() {
        return; // the same appliance connected again meanwhile
    }
    let Some(epoch) = shared.link.epoch() else {
        tracing::warn!(appliance = %id, %peer, "broker link down, appliance refused");
        Counters::bump(&shared.counters.refused_connects);
        let refused = connack_v4(ConnackCode::ServerUnavailable);
        if let Ok(Ok(())) = timeout(CLOSE_GRACE, stream.write_all(&refused)).await {
            let _ = timeout(CLOSE_GRACE, stream.shutdown()).await;
        }
        return;
    };
    let accepted = connack_v4(ConnackCode::Accepted);
    let written = async {
        stream.write_all(&accepted).await?;
        stream.flush().await
    };
    if !matches!(
        timeout(shared.config.write_timeout, written).await,
        Ok(Ok(()))
    ) {
        return;
    }
    Counters::bump(&shared.counters.sessions);
    tracing::debug!(appliance = %id, %peer, session, "session started");
    shared.presence.report(PresenceEvent::Connected {
        appliance_id: id,
        session,
        peer,
        at: SystemTime::now(),
    });
    let acl = Acl::new(&shared.config.product_key, &id);
    let wiring = Wiring {
        acl: &acl,
        inbox: ticket.inbox(),
        uplink: shared.link.client(),
        max_packet_size: shared.config.max_packet_size,
        write_timeout: shared.config.write_timeout,
        idle_limit: Duration::from_secs(device.keep_alive.into()) * 3 / 2,
    };
    let stop = ticket.stop_requested();
    let ended = async {
        tokio::select! {
            () = stop => DisconnectReason::TakenOver,
            () = super::stopped(shared.shutdown.clone()) => DisconnectReason::Shutdown,
            () = shared.link.lost(epoch) => DisconnectReason::BrokerClosed,
        }
    };
    let reason = serve(&mut stream, buffered, &wiring, ended).await;
    let _ = timeout(CLOSE_GRACE, stream.shutdown()).await;
    if reason != DisconnectReason::ClientDisconnect {
        if let Some(will) = device.will {
            publish_will(shared.link.client(), will).await;
        }
    }
    tracing::debug!(appliance = %id, %peer, session, ?reason, "session ended");
    shared.presence.report(PresenceEvent::Disconnected {
        appliance_id: id,
        session,
        peer,
        reason,
        at: SystemTime::now(),
    });
    drop(ticket); // only now may a newer session of this appliance start
}

async fn publish_will(uplink: &AsyncClient, will: LastWill) {
    let handed = uplink.publish_bytes(will.topic, QoS::AtLeastOnce, false, will.message);
    if !matches!(timeout(CLOSE_GRACE, handed).await, Ok(Ok(()))) {
        tracing::warn!("will not handed to the broker link in time; dropped");
    }
}

/// What one session is connected to, besides its socket.
pub(crate) struct Wiring<'a> {
    pub(crate) acl: &'a Acl,
    pub(crate) inbox: &'a Inbox,
    /// The link's client: device -> hub messages go there.
    pub(crate) uplink: &'a AsyncClient,
    pub(crate) max_packet_size: usize,
    pub(crate) write_timeout: Duration,
    /// Longest time without a packet from the appliance.
    pub(crate) idle_limit: Duration,
}

/// Serves an established session until it ends; `ended` resolves with a
/// reason when something outside the session ends it (takeover, shutdown,
/// link lost). `input` holds bytes already read after the CONNECT.
pub(crate) async fn serve<S>(
    stream: &mut S,
    input: BytesMut,
    wiring: &Wiring<'_>,
    ended: impl Future<Output = DisconnectReason>,
) -> DisconnectReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session {
        stream,
        wiring,
        input,
        out: BytesMut::new(),
        flow: Flow::default(),
        last_packet: Instant::now(),
    };
    tokio::pin!(ended);
    loop {
        tokio::select! {
            step = session.step() => {
                if let Err(reason) = step {
                    return reason;
                }
            }
            reason = &mut ended => return reason,
        }
    }
}

struct Session<'a, 'w, S> {
    stream: &'a mut S,
    wiring: &'a Wiring<'w>,
    input: BytesMut,
    out: BytesMut,
    flow: Flow,
    last_packet: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, '_, S> {
    /// One round: handle what the appliance sent, send what waits, then
    /// wait for more of either (or the keepalive deadline).
    async fn step(&mut self) -> Result<(), DisconnectReason> {
        let needed = self.consume().await?;
        self.collect()?;
        self.flush().await?;
        recycle(&mut self.input, needed);
        let deadline = self.last_packet + self.wiring.idle_limit;
        tokio::select! {
            read = self.stream.read_buf(&mut self.input) => match read {
                Ok(0) | Err(_) => Err(DisconnectReason::ConnectionLost),
                Ok(_) => Ok(()),
            },
            () = self.wiring.inbox.ready() => Ok(()),
            () = sleep_until(deadline) => Err(DisconnectReason::KeepaliveTimeout),
        }
    }

    /// Handles every complete packet in `input`; returns how many more
    /// bytes the next packet needs.
    async fn consume(&mut self) -> Result<usize, DisconnectReason> {
        use DisconnectReason::ProtocolViolation;
        while let Some(&byte1) = self.input.first() {
            let packet = match Packet::read(&mut self.input, self.wiring.max_packet_size) {
                Ok(packet) => packet,
                Err(CodecError::InsufficientBytes(more)) => return Ok(more),
                Err(CodecError::PayloadSizeLimitExceeded(_)) => {
                    return Err(ProtocolViolation("packet over the size limit"))
                }
                Err(_) => return Err(ProtocolViolation("malformed packet")),
            };
            if !flags_ok(byte1) {
                return Err(ProtocolViolation("malformed fixed header flags"));
            }
            self.last_packet = Instant::now();
            self.apply(judge(self.wiring.acl, packet)).await?;
        }
        Ok(READ_CHUNK)
    }

    async fn apply(&mut self, verdict: Verdict) -> Result<(), DisconnectReason> {
        let answer = match verdict {
            Verdict::Publish(publish) => {
                let (qos, pkid) = (publish.qos, publish.pkid);
                let uplink = self.wiring.uplink;
                uplink
                    .publish_bytes(publish.topic, QoS::AtLeastOnce, false, publish.payload)
                    .await
                    .map_err(|_| DisconnectReason::BrokerClosed)?;
                if qos == QoS::AtMostOnce {
                    return Ok(());
                }
                Packet::PubAck(PubAck::new(pkid))
            }
            Verdict::Subscribe(subscribe) => {
                let acl = self.wiring.acl;
                let ack = self
                    .wiring
                    .inbox
                    .subscriptions(|subs| guard::subscribe(acl, subs, &subscribe));
                Packet::SubAck(ack)
            }
            Verdict::Unsubscribe(unsubscribe) => {
                let inbox = self.wiring.inbox;
                Packet::UnsubAck(inbox.subscriptions(|s| guard::unsubscribe(s, &unsubscribe)))
            }
            Verdict::PubAck(pkid) => {
                if !self.flow.acked(pkid) {
                    let why = "PUBACK out of order or unsolicited";
                    return Err(DisconnectReason::ProtocolViolation(why));
                }
                return Ok(());
            }
            Verdict::Ping => Packet::PingResp,
            Verdict::Disconnect => return Err(DisconnectReason::ClientDisconnect),
            Verdict::Close(why) => return Err(DisconnectReason::ProtocolViolation(why)),
        };
        encode(answer, &mut self.out);
        Ok(())
    }

    /// Moves waiting messages from the inbox into `out`, as far as the
    /// in-flight window and the write batch allow.
    fn collect(&mut self) -> Result<(), DisconnectReason> {
        let inbox = self.wiring.inbox;
        if inbox.overflowed() {
            return Err(DisconnectReason::SlowConsumer);
        }
        while self.out.len() < WRITE_BATCH && self.flow.has_room() {
            let Some(mut publish) = inbox.take().map_err(|_| DisconnectReason::SlowConsumer)?
            else {
                break;
            };
            if publish.qos == QoS::AtLeastOnce {
                match self.flow.send() {
                    Some(pkid) => publish.pkid = pkid,
                    None => break, // unreachable: `has_room` was checked
                }
            }
            encode(Packet::Publish(publish), &mut self.out);
        }
        Ok(())
    }

    /// Writes `out` to the appliance within the write timeout.
    async fn flush(&mut self) -> Result<(), DisconnectReason> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match timeout(self.wiring.write_timeout, write).await {
            Ok(Ok(())) => {
                recycle(&mut self.out, 0);
                Ok(())
            }
            Ok(Err(_)) => Err(DisconnectReason::ConnectionLost),
            Err(_) => Err(DisconnectReason::SlowConsumer),
        }
    }
}

/// Encodes a packet the edge produced (sizes are bounded by the broker's
/// and the edge's packet limits, so this does not fail).
fn encode(packet: Packet, out: &mut BytesMut) {
    if let Err(e) = packet.write(out, usize::MAX) {
        tracing::error!(error = %e, "could not encode a packet for an appliance");
    }
}

/// With `needed == 0`, empties `buf` (a written output buffer); otherwise
/// makes room for at least `needed` more bytes (at least [`READ_CHUNK`]).
/// An empty buffer that grew beyond [`KEEP_CAPACITY`] for a large packet
/// is released, so an idle session holds only small buffers.
fn recycle(buf: &mut BytesMut, needed: usize) {
    if needed == 0 {
        buf.clear();
    }
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = BytesMut::new();
    }
    if needed > 0 {
        buf.reserve(needed.max(READ_CHUNK));
    }
}

#[cfg(test)]
mod tests;
