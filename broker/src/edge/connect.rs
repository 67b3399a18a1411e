//! The first packet of a device connection: framing, protocol version,
//! parsing and the syntactic checks of CONNECT, and the CONNACK bytes of
//! every refusal. Pure functions; the I/O lives in `admission`.
//!
//! Rules (the codes are MQTT 3.1.1 CONNACK return codes):
//! - the first packet must be a CONNECT with reserved flags 0, else close;
//! - protocol `MQTT` level 4 is served; `MQTT` level 5 gets a v5 CONNACK
//!   with reason 0x84 (unsupported protocol version); any other level, or
//!   MQTT 3.1 (`MQIsdp`), gets 0x01; anything else is closed unanswered;
//! - client id must be an appliance id (a lowercase hyphenated UUID, so
//!   never `/`, `+`, `#`, `$`, whitespace or control characters), else 0x02;
//! - a username, when present, must equal the client id, else 0x04;
//! - keepalive must lie in the configured range (default 5..=1200 s), else
//!   0x02, as Mosquitto does for `max_keepalive`: MQTT 3.1.1 has no way to
//!   tell a client to use another value, and rumqttd refuses 0 outright;
//! - a will must target one of the appliance's own device -> hub topics at
//!   QoS 0 or 1, else 0x05; its retain flag is cleared;
//! - `clean_session` is accepted either way: the edge keeps no offline
//!   session (see `session`).

use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};
use protocol::{ApplianceId, ProductKey};
use rumqttc::mqttbytes::v4::{Connect, LastWill};
use rumqttc::mqttbytes::{check, PacketType, QoS};

use super::acl::Acl;

/// MQTT 3.1.1 CONNACK return codes the edge sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnackCode {
    /// 0x00: connection accepted.
    Accepted = 0x00,
    /// 0x01: unacceptable protocol version.
    UnacceptableProtocol = 0x01,
    /// 0x02: identifier rejected.
    IdentifierRejected = 0x02,
    /// 0x03: server unavailable.
    ServerUnavailable = 0x03,
    /// 0x04: bad user name or password.
    BadUsernameOrPassword = 0x04,
    /// 0x05: not authorized.
    NotAuthorized = 0x05,
}

/// CONNACK of MQTT 3.1.1 with `code` and no session.
pub(crate) fn connack_v4(code: ConnackCode) -> [u8; 4] {
    [0x20, 0x02, 0x00, code as u8]
}

/// MQTT 5 CONNACK with reason 0x84 (unsupported protocol version) and no
/// properties.
pub(crate) const CONNACK_V5_UNSUPPORTED: [u8; 5] = [0x20, 0x03, 0x00, 0x84, 0x00];

/// Why a first packet was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Answer with these CONNACK bytes, then close.
    Answer {
        bytes: Vec<u8>,
        reason: &'static str,
    },
    /// Close without answering (not MQTT, or malformed).
    Close(&'static str),
}

impl Refusal {
    fn v4(code: ConnackCode, reason: &'static str) -> Refusal {
        Refusal::Answer {
            bytes: connack_v4(code).to_vec(),
            reason,
        }
    }

    /// Short description for logs and presence.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::Answer { reason, .. } | Refusal::Close(reason) => reason,
        }
    }
}

/// Result of looking at the bytes received so far.
#[derive(Debug)]
pub(crate) enum Framed {
    /// More bytes are needed.
    Incomplete,
    /// A complete MQTT 3.1.1 CONNECT.
    Connect(Connect),
}

/// Frames and parses the first packet from `buf` (consuming it when
/// complete). Never panics on any input.
pub(crate) fn frame_connect(buf: &mut BytesMut, max_size: usize) -> Result<Framed, Refusal> {
    let header = match check(buf.iter(), max_size) {
        Ok(h) => h,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(Framed::Incomplete),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)) => {
            return Err(Refusal::Close("CONNECT larger than the packet size limit"))
        }
        Err(_) => return Err(Refusal::Close("malformed fixed header")),
    };
    if buf.first() != Some(&0x10) || header.packet_type().ok() != Some(PacketType::Connect) {
        return Err(Refusal::Close("first packet is not CONNECT"));
    }
    let frame = buf.split_to(header.frame_length()).freeze();
    protocol_gate(&frame)?;
    Connect::read(header, frame)
        .map(Framed::Connect)
        .map_err(|_| Refusal::Close("malformed CONNECT"))
}

/// Looks at protocol name and level before the v4 parser does (it would
/// misread an MQTT 5 CONNECT's properties as the client id).
fn protocol_gate(frame: &Bytes) -> Result<(), Refusal> {
    let mut at = 1;
    while frame.get(at).is_some_and(|b| b & 0x80 != 0) {
        at += 1;
    }
    at += 1; // last byte of the remaining length
    let name_len = match (frame.get(at), frame.get(at + 1)) {
        (Some(hi), Some(lo)) => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(Refusal::Close("truncated CONNECT")),
    };
    let name = frame
        .get(at + 2..at + 2 + name_len)
        .ok_or(Refusal::Close("truncated CONNECT"))?;
    let level = *frame
        .get(at + 2 + name_len)
        .ok_or(Refusal::Close("truncated CONNECT"))?;
    let flags = *frame
        .get(at + 3 + name_len)
        .ok_or(Refusal::Close("truncated CONNECT"))?;
    match (name, level) {
        (b"MQTT", 4) if flags & 0x01 == 0 => Ok(()),
        (b"MQTT", 4) => Err(Refusal::Close("reserved CONNECT flag set")),
        (b"MQTT", 5) => Err(Refusal::Answer {
            bytes: CONNACK_V5_UNSUPPORTED.to_vec(),
            reason: "MQTT 5 is not supported",
        }),
        (b"MQTT", _) | (b"MQIsdp", _) => Err(Refusal::v4(
            ConnackCode::UnacceptableProtocol,
            "unsupported MQTT protocol level",
        )),
        _ => Err(Refusal::Close("unknown protocol name")),
    }
}

/// The parts of a CONNECT the edge keeps once it passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct DeviceConnect {
    pub(crate) appliance_id: ApplianceId,
    /// Whether a username was sent (it then equals the client id).
    pub(crate) has_username: bool,
    /// The password (the appliance token), if any.
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) keep_alive: u16,
    pub(crate) will: Option<LastWill>,
}

/// Syntactic checks of a parsed CONNECT (credentials are checked later).
pub(crate) fn check_connect(
    connect: Connect,
    product_key: &ProductKey,
    keepalive: &RangeInclusive<u16>,
) -> Result<DeviceConnect, Refusal> {
    let appliance_id: ApplianceId = connect.client_id.parse().map_err(|_| {
        Refusal::v4(
            ConnackCode::IdentifierRejected,
            "client id is not an appliance id",
        )
    })?;
    let (has_username, password) = match &connect.login {
        None => (false, None),
        Some(login) => {
            if !login.username.is_empty() && login.username != connect.client_id {
                return Err(Refusal::v4(
                    ConnackCode::BadUsernameOrPassword,
                    "username differs from client id",
                ));
            }
            let password = (!login.password.is_empty()).then(|| login.password.as_bytes().to_vec());
            (!login.username.is_empty(), password)
        }
    };
    if !keepalive.contains(&connect.keep_alive) {
        return Err(Refusal::v4(
            ConnackCode::IdentifierRejected,
            "keepalive outside the allowed range",
        ));
    }
    let will = match connect.last_will {
        None => None,
        Some(mut will) => {
            let acl = Acl::new(product_key, &appliance_id);
            if !acl.may_publish(&will.topic) || will.qos == QoS::ExactlyOnce {
                return Err(Refusal::v4(ConnackCode::NotAuthorized, "will not allowed"));
            }
            will.retain = false;
            Some(will)
        }
    };
    Ok(DeviceConnect {
        appliance_id,
        has_username,
        password,
        keep_alive: connect.keep_alive,
        will,
    })
}

#[cfg(test)]
mod tests;
