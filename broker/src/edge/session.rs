//! An admitted appliance's session: its place in the per-appliance session
//! registry (`sessions`), one loopback connection to the broker
//! (`loopback`), then two loops run side by side until either side closes:
//!
//! - uplink: appliance -> broker, packet by packet through `guard`,
//!   re-encoded; a refused packet ends the session without a DISCONNECT
//!   upstream, so the broker publishes the appliance's will. PUBACKs must
//!   acknowledge the oldest outstanding QoS 1 PUBLISH (`flow`).
//! - downlink: broker -> appliance, copied frame by frame, except SUBACKs
//!   (merged with the filters the edge refused) and UNSUBACKs (the edge
//!   answers UNSUBSCRIBE itself), plus the answers the uplink asks for.
//!
//! Buffers are bounded by the packet size limits; a write to the appliance
//! that makes no progress for `write_timeout` ends the session, so a slow
//! appliance only ever holds up itself (the broker's outgoing queue for it
//! is bounded by rumqttd's inflight window and its filter logs).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{Packet, SubAck};
use rumqttc::mqttbytes::{check, Error as CodecError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::acl::Acl;
use super::admission::Admitted;
use super::connect::{connack_v4, ConnackCode};
use super::flow::{publish_pkid, Flow};
use super::guard::{encode, flags_ok, judge, Verdict};
use super::loopback;
use super::{Counters, DisconnectReason, PresenceEvent, Shared};
use crate::upstream::Upstream;

/// Time given to a closing handshake (TLS close_notify) with the appliance.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Smallest read of both loops; a packet known to be larger is read whole.
const READ_CHUNK: usize = 1024;
/// Largest buffer capacity kept by an idle session.
const KEEP_CAPACITY: usize = 16 * 1024;

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
    let ticket = shared
        .sessions
        .enter(id, session, loopback::BROKER_CLOSE)
        .await;
    if ticket.superseded() {
        return; // the same appliance connected again meanwhile
    }
    let mut upstream = match loopback::open(&device, shared).await {
        Ok(upstream) => upstream,
        Err(why) => {
            tracing::warn!(appliance = %id, %peer, why, "broker unavailable for appliance");
            Counters::bump(&shared.counters.refused_connects);
            let refused = connack_v4(ConnackCode::ServerUnavailable);
            if let Ok(Ok(())) = timeout(CLOSE_GRACE, stream.write_all(&refused)).await {
                let _ = timeout(CLOSE_GRACE, stream.shutdown()).await;
            }
            return;
        }
    };
    let session_present = upstream.connack.session_present;
    let accepted = [0x20, 0x02, u8::from(session_present), 0x00];
    if !matches!(
        timeout(shared.config.write_timeout, stream.write_all(&accepted)).await,
        Ok(Ok(()))
    ) {
        let (mut rx, mut tx) = upstream.stream.split();
        loopback::close(&mut rx, &mut tx, DisconnectReason::ConnectionLost).await;
        return;
    }
    Counters::bump(&shared.counters.sessions);
    tracing::debug!(appliance = %id, %peer, session, "session started");
    shared.presence.report(PresenceEvent::Connected {
        appliance_id: id,
        session,
        peer,
        session_present,
        at: SystemTime::now(),
    });
    let acl = Acl::new(&shared.config.product_key, &id);
    let stop = ticket.stop_requested();
    let reason = forward(stream, buffered, upstream, &acl, stop, shared).await;
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

async fn forward<S>(
    client: S,
    buffered: BytesMut,
    upstream: Upstream,
    acl: &Acl,
    stop: impl std::future::Future<Output = ()>,
    shared: &Shared,
) -> DisconnectReason
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let Upstream {
        stream: mut broker,
        pending: from_broker,
        ..
    } = upstream;
    let (mut broker_rx, mut broker_tx) = broker.split();
    let flow = Mutex::new(Flow::default());
    let (answers_tx, mut answers_rx) = mpsc::channel(shared.config.max_pending_subscribes + 2);
    let reason = {
        let up = uplink(
            &mut client_rx,
            buffered,
            &mut broker_tx,
            acl,
            &flow,
            answers_tx,
            shared,
        );
        let down = downlink(
            &mut broker_rx,
            from_broker,
            &mut client_tx,
            &flow,
            &mut answers_rx,
            shared,
        );
        tokio::select! {
            reason = up => reason,
            reason = down => reason,
            _ = stop => DisconnectReason::TakenOver,
            _ = super::stopped(shared.shutdown.clone()) => DisconnectReason::Shutdown,
        }
    };
    let _ = timeout(CLOSE_GRACE, client_tx.shutdown()).await;
    loopback::close(&mut broker_rx, &mut broker_tx, reason).await;
    reason
}

/// Appliance -> broker. Returns why the session ends.
async fn uplink<R, W>(
    client: &mut R,
    mut buf: BytesMut,
    broker: &mut W,
    acl: &Acl,
    flow: &Mutex<Flow>,
    answers: mpsc::Sender<Bytes>,
    shared: &Shared,
) -> DisconnectReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use DisconnectReason::{BrokerClosed, ClientDisconnect, ConnectionLost, ProtocolViolation};
    let max_packet = shared.config.max_packet_size;
    let max_pending = shared.config.max_pending_subscribes;
    let mut out = BytesMut::new();
    let mut needed = READ_CHUNK;
    loop {
        while let Some(&byte1) = buf.first() {
            let packet = match Packet::read(&mut buf, max_packet) {
                Ok(packet) => packet,
                Err(CodecError::InsufficientBytes(more)) => {
                    needed = more;
                    break;
                }
                Err(CodecError::PayloadSizeLimitExceeded(_)) => {
                    return ProtocolViolation("packet over the size limit")
                }
                Err(_) => return ProtocolViolation("malformed packet"),
            };
            if !flags_ok(byte1) {
                return ProtocolViolation("malformed fixed header flags");
            }
            let mut answer = None;
            match judge(acl, packet) {
                Verdict::Forward(packet) => {
                    if let Packet::PubAck(ack) = &packet {
                        if !lock(flow).acked(ack.pkid) {
                            return ProtocolViolation("PUBACK out of order or unsolicited");
                        }
                    }
                    encode(&packet, &mut out);
                }
                Verdict::Subscribe {
                    forward: Some(subscribe),
                    plan,
                } => {
                    if !lock(flow).subacks.insert(plan, max_pending) {
                        return ProtocolViolation("SUBSCRIBE packet id reused or too many pending");
                    }
                    encode(&Packet::Subscribe(subscribe), &mut out);
                }
                Verdict::Subscribe {
                    forward: None,
                    plan,
                } => {
                    answer = Some(Packet::SubAck(plan.refuse_all()));
                }
                Verdict::Unsubscribe {
                    forward,
                    answer: ack,
                } => {
                    if let Some(packet) = forward {
                        encode(&packet, &mut out);
                    }
                    answer = Some(Packet::UnsubAck(ack));
                }
                Verdict::Disconnect => {
                    encode(&Packet::Disconnect, &mut out);
                    let _ = broker.write_all(&out).await;
                    return ClientDisconnect;
                }
                Verdict::Close(why) => return ProtocolViolation(why),
            }
            if let Some(packet) = answer {
                // What was forwarded so far goes first (an UNSUBACK must
                // not overtake its UNSUBSCRIBE).
                if !out.is_empty() && broker.write_all(&out).await.is_err() {
                    return BrokerClosed;
                }
                out.clear();
                let mut bytes = BytesMut::new();
                encode(&packet, &mut bytes);
                if answers.send(bytes.freeze()).await.is_err() {
                    return BrokerClosed;
                }
            }
        }
        if !out.is_empty() {
            if broker.write_all(&out).await.is_err() {
                return BrokerClosed;
            }
            recycle(&mut out, 0);
        }
        recycle(&mut buf, needed);
        needed = READ_CHUNK;
        match client.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return ConnectionLost,
            Ok(_) => {}
        }
    }
}

/// Broker -> appliance. Returns why the session ends.
async fn downlink<R, W>(
    broker: &mut R,
    mut buf: BytesMut,
    client: &mut W,
    flow: &Mutex<Flow>,
    answers: &mut mpsc::Receiver<Bytes>,
    shared: &Shared,
) -> DisconnectReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use DisconnectReason::{BrokerClosed, ConnectionLost, SlowConsumer};
    let max_packet = shared.broker.max_packet_size;
    let mut out = BytesMut::new();
    loop {
        let needed = loop {
            let header = match check(buf.iter(), max_packet) {
                Ok(header) => header,
                Err(CodecError::InsufficientBytes(more)) => break more,
                Err(_) => return BrokerClosed,
            };
            let kind = buf.first().map_or(0, |b| b >> 4);
            let frame = buf.split_to(header.frame_length());
            match kind {
                9 => match SubAck::read(header, frame.freeze()) {
                    Ok(ack) => {
                        let merged = lock(flow).subacks.resolve(ack);
                        encode(&Packet::SubAck(merged), &mut out);
                    }
                    Err(_) => return BrokerClosed,
                },
                11 => {} // UNSUBACK: the edge answered already
                3 => {
                    if let Some(pkid) = publish_pkid(&frame) {
                        if !lock(flow).sent(pkid) {
                            return BrokerClosed;
                        }
                    }
                    out.extend_from_slice(&frame);
                }
                _ => out.extend_from_slice(&frame),
            }
        };
        if !out.is_empty() {
            match timeout(shared.config.write_timeout, client.write_all(&out)).await {
                Ok(Ok(())) => recycle(&mut out, 0),
                Ok(Err(_)) => return ConnectionLost,
                Err(_) => return SlowConsumer,
            }
        }
        recycle(&mut buf, needed);
        tokio::select! {
            read = broker.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return BrokerClosed,
                Ok(_) => {}
            },
            Some(answer) = answers.recv() => out.extend_from_slice(&answer),
        }
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

fn lock(flow: &Mutex<Flow>) -> std::sync::MutexGuard<'_, Flow> {
    flow.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_shrink_back_after_a_large_packet() {
        let mut buf = BytesMut::new();
        recycle(&mut buf, 64 * 1024);
        assert!(buf.capacity() >= 64 * 1024);
        buf.extend_from_slice(&[1; 100]);
        recycle(&mut buf, 0);
        assert!(buf.is_empty() && buf.capacity() <= KEEP_CAPACITY);
        recycle(&mut buf, 10);
        assert!(buf.capacity() >= READ_CHUNK);
    }
}
