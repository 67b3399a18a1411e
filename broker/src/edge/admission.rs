//! Admission of one connection, in its own task: TLS handshake, CONNECT
//! read and checks, authentication, all under one deadline
//! (`connect_timeout`, 10 s by default). A refusal writes the matching
//! CONNACK and closes; nothing of a refused connection reaches the broker.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::auth::{choose_credential, Offered, Unproven};
use super::connect::{
    check_connect, connack_v4, frame_connect, ConnackCode, DeviceConnect, Framed, Refusal,
};
use super::listener::Transport;
use super::{session, tls, AuthDecision, AuthRequest, Counters, DenyReason, Shared};

/// Bytes read from a client at a time while waiting for CONNECT.
const READ_CHUNK: usize = 1024;

/// A connection that passed admission.
pub(crate) struct Admitted<S> {
    pub(crate) stream: S,
    /// Bytes the appliance sent after its CONNECT (it may pipeline).
    pub(crate) buffered: BytesMut,
    pub(crate) device: DeviceConnect,
    pub(crate) peer: SocketAddr,
}

/// Runs one connection from accept to close.
pub(crate) async fn serve(tcp: TcpStream, peer: SocketAddr, transport: Transport, shared: &Shared) {
    let deadline = Instant::now() + shared.config.connect_timeout;
    match transport {
        Transport::Plain => admit_and_run(tcp, peer, None, deadline, shared).await,
        Transport::Tls(acceptor) => {
            let handshake = tokio::select! {
                _ = super::stopped(shared.shutdown.clone()) => return,
                result = timeout_at(deadline, acceptor.accept(tcp)) => result,
            };
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    Counters::bump(&shared.counters.admission_timeouts);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cn = tls::peer_common_name(tls.get_ref().1.peer_certificates());
            admit_and_run(tls, peer, cn, deadline, shared).await;
        }
    }
}

async fn admit_and_run<S>(
    stream: S,
    peer: SocketAddr,
    cn: Option<String>,
    deadline: Instant,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let admitted = tokio::select! {
        _ = super::stopped(shared.shutdown.clone()) => return,
        result = timeout_at(deadline, admit(stream, peer, cn, shared)) => result,
    };
    match admitted {
        Ok(Some(admitted)) => session::run(admitted, shared).await,
        Ok(None) => {}
        Err(_) => {
            Counters::bump(&shared.counters.admission_timeouts);
            tracing::debug!(%peer, "no CONNECT in time");
        }
    }
}

/// Reads and checks CONNECT, authenticates. `None`: refused (answered).
async fn admit<S>(
    mut stream: S,
    peer: SocketAddr,
    cn: Option<String>,
    shared: &Shared,
) -> Option<Admitted<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let mut buffered = BytesMut::with_capacity(READ_CHUNK);
    let connect = loop {
        match frame_connect(&mut buffered, config.max_packet_size) {
            Ok(Framed::Connect(connect)) => break connect,
            Ok(Framed::Incomplete) => {}
            Err(refusal) => return refuse(stream, peer, refusal, shared).await,
        }
        buffered.reserve(READ_CHUNK);
        match stream.read_buf(&mut buffered).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    };
    let device = match check_connect(connect, &config.product_key, &config.keepalive_secs) {
        Ok(device) => device,
        Err(refusal) => return refuse(stream, peer, refusal, shared).await,
    };
    let offered = Offered {
        appliance_id: &device.appliance_id,
        has_username: device.has_username,
        password: device.password.as_deref(),
        certificate_cn: cn.as_deref(),
    };
    let credential = match choose_credential(config.auth_mode, &offered) {
        Ok(credential) => credential,
        Err(Unproven::MissingToken) => {
            let refusal = answer(ConnackCode::BadUsernameOrPassword, "no token");
            return refuse(stream, peer, refusal, shared).await;
        }
        Err(Unproven::CertificateMismatch) => {
            let refusal = answer(
                ConnackCode::NotAuthorized,
                "client certificate missing or for another appliance",
            );
            return refuse(stream, peer, refusal, shared).await;
        }
    };
    let request = AuthRequest {
        appliance_id: device.appliance_id,
        credential,
        peer,
    };
    let code = match ask(shared, &request).await {
        AuthDecision::Allow => None,
        AuthDecision::Deny(DenyReason::BadCredentials) => {
            Some((ConnackCode::BadUsernameOrPassword, "bad credentials"))
        }
        AuthDecision::Deny(DenyReason::NotAuthorized) => {
            Some((ConnackCode::NotAuthorized, "not authorized"))
        }
        AuthDecision::Unavailable => {
            Some((ConnackCode::ServerUnavailable, "authentication unavailable"))
        }
    };
    if let Some((code, reason)) = code {
        return refuse(stream, peer, answer(code, reason), shared).await;
    }
    Some(Admitted {
        stream,
        buffered,
        device,
        peer,
    })
}

/// Asks the authenticator; a panicking authenticator counts as unavailable.
async fn ask(shared: &Shared, request: &AuthRequest) -> AuthDecision {
    let future = shared.authenticator.authenticate(request);
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(decision) => decision,
        Err(_) => {
            tracing::error!(appliance = %request.appliance_id, "authenticator panicked");
            AuthDecision::Unavailable
        }
    }
}

fn answer(code: ConnackCode, reason: &'static str) -> Refusal {
    Refusal::Answer {
        bytes: connack_v4(code).to_vec(),
        reason,
    }
}

/// Writes the refusal's CONNACK (if any) and closes.
async fn refuse<S, T>(
    mut stream: S,
    peer: SocketAddr,
    refusal: Refusal,
    shared: &Shared,
) -> Option<T>
where
    S: AsyncWrite + Unpin,
{
    Counters::bump(&shared.counters.refused_connects);
    tracing::info!(%peer, reason = refusal.reason(), "CONNECT refused");
    if let Refusal::Answer { bytes, .. } = &refusal {
        if stream.write_all(bytes).await.is_ok() {
            let _ = stream.shutdown().await;
        }
    }
    None
}

/// Answers a connection over the open-connection cap with CONNACK 0x03
/// (after its handshake and CONNECT), within `limit`.
pub(crate) async fn refuse_busy(
    tcp: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    limit: Duration,
    shared: &Shared,
) {
    let work = async {
        match transport {
            Transport::Plain => busy(tcp, peer, shared).await,
            Transport::Tls(acceptor) => {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    busy(tls, peer, shared).await;
                }
            }
        }
    };
    tokio::select! {
        _ = super::stopped(shared.shutdown.clone()) => {}
        _ = timeout(limit, work) => {}
    }
}

async fn busy<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, peer: SocketAddr, shared: &Shared) {
    let mut buffered = BytesMut::with_capacity(READ_CHUNK);
    let refusal = loop {
        match frame_connect(&mut buffered, shared.config.max_packet_size) {
            Ok(Framed::Connect(_)) => {
                break answer(ConnackCode::ServerUnavailable, "too many connections")
            }
            Ok(Framed::Incomplete) => {}
            Err(refusal) => break refusal,
        }
        buffered.reserve(READ_CHUNK);
        match stream.read_buf(&mut buffered).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    let _: Option<()> = refuse(stream, peer, refusal, shared).await;
}
