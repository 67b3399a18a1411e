//! Appliance authentication: the [`Authenticator`] trait the hub implements,
//! and the edge's choice of which credential a connection presents.
//!
//! The edge has already checked, before calling the authenticator, that
//! client id = username = a well-formed appliance id, and (for a client
//! certificate) that the TLS chain leads to the configured CA and that the
//! certificate's CN is that appliance id. The authenticator answers the
//! remaining question: is this appliance known, allowed to connect, and (for
//! a token) is the token right? Implementations store tokens hashed and
//! compare in constant time, and must answer quickly: the edge gives the
//! whole admission (TLS, CONNECT, authentication) one timeout.

use std::fmt;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use protocol::ApplianceId;

/// How appliances prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Password = appliance token (the default). No client certificate is
    /// requested.
    #[default]
    Token,
    /// A client certificate signed by the configured CA whose CN is the
    /// appliance id; the password is ignored. TLS fails without one.
    Certificate,
    /// A valid client certificate if the appliance presents one, else the
    /// token.
    Either,
}

/// A secret received from the network; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret's bytes, to hash and compare in constant time.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// What the connection presented as proof of identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The MQTT password: the appliance token.
    Token(Secret),
    /// A client certificate, already verified against the CA, whose CN is
    /// the appliance id.
    ClientCertificate,
}

/// One authentication question.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The appliance id (= client id = username).
    pub appliance_id: ApplianceId,
    /// The credential the edge decided to check.
    pub credential: Credential,
    /// Remote address of the connection.
    pub peer: SocketAddr,
}

/// Why an appliance was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// Unknown appliance or wrong token: CONNACK 0x04.
    BadCredentials,
    /// Known but not allowed to connect (disabled, unregistered,
    /// certificate no longer accepted): CONNACK 0x05.
    NotAuthorized,
}

/// The authenticator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the appliance in.
    Allow,
    /// Refuse it.
    Deny(DenyReason),
    /// The answer is not available now (database down): CONNACK 0x03, the
    /// appliance retries later.
    Unavailable,
}

/// Checks appliance credentials; implemented by the hub.
///
/// Object safe so the edge can hold an `Arc<dyn Authenticator>`. Example:
///
/// ```
/// use broker::edge::{AuthDecision, AuthRequest, Authenticator, Credential, DenyReason};
/// use futures::future::BoxFuture;
///
/// struct Nobody;
/// impl Authenticator for Nobody {
///     fn authenticate<'a>(&'a self, _request: &'a AuthRequest) -> BoxFuture<'a, AuthDecision> {
///         Box::pin(async { AuthDecision::Deny(DenyReason::BadCredentials) })
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Decides whether `request` may connect. Must not panic; a slow answer
    /// counts against the edge's connect timeout.
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> BoxFuture<'a, AuthDecision>;
}

/// What the connection offers, as seen by the edge before authentication.
#[derive(Debug)]
pub(crate) struct Offered<'a> {
    pub(crate) appliance_id: &'a ApplianceId,
    /// A username (equal to the appliance id) was sent.
    pub(crate) has_username: bool,
    pub(crate) password: Option<&'a [u8]>,
    /// CN of a client certificate that passed TLS verification.
    pub(crate) certificate_cn: Option<&'a str>,
}

/// The edge's own refusals, before the authenticator is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unproven {
    /// No username + password where a token is needed: CONNACK 0x04.
    MissingToken,
    /// No client certificate where one is needed, or one for another
    /// appliance: CONNACK 0x05.
    CertificateMismatch,
}

/// Picks the credential to check under `mode`. A certificate naming
/// another appliance is always refused, whatever the mode.
pub(crate) fn choose_credential(
    mode: AuthMode,
    offered: &Offered<'_>,
) -> Result<Credential, Unproven> {
    let id = offered.appliance_id.to_string();
    let certificate = match offered.certificate_cn {
        Some(cn) if cn == id => Some(Credential::ClientCertificate),
        Some(_) => return Err(Unproven::CertificateMismatch),
        None => None,
    };
    let token = offered
        .password
        .filter(|_| offered.has_username)
        .map(|p| Credential::Token(Secret::new(p.to_vec())));
    match mode {
        AuthMode::Token => token.ok_or(Unproven::MissingToken),
        AuthMode::Certificate => certificate.ok_or(Unproven::CertificateMismatch),
        AuthMode::Either => certificate.or(token).ok_or(Unproven::MissingToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn offered<'a>(
        id: &'a ApplianceId,
        password: Option<&'a [u8]>,
        cn: Option<&'a str>,
    ) -> Offered<'a> {
        Offered {
            appliance_id: id,
            has_username: true,
            password,
            certificate_cn: cn,
        }
    }

    #[test]
    fn each_mode_checks_the_right_credential() {
        let id: ApplianceId = ID.parse().expect("valid id");
        let token = Some(&b"t"[..]);
        let cert = Some(ID);
        let other_cert = Some("6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d");
        let secret = Credential::Token(Secret::new(b"t".to_vec()));
        use AuthMode::*;
        let cases = [
            (Token, token, None, Ok(secret.clone())),
            (Token, None, None, Err(Unproven::MissingToken)),
            (Token, token, other_cert, Err(Unproven::CertificateMismatch)),
            (Certificate, token, None, Err(Unproven::CertificateMismatch)),
            (Certificate, None, cert, Ok(Credential::ClientCertificate)),
            (
                Certificate,
                token,
                other_cert,
                Err(Unproven::CertificateMismatch),
            ),
            (Either, token, cert, Ok(Credential::ClientCertificate)),
            (Either, token, None, Ok(secret)),
            (Either, None, None, Err(Unproven::MissingToken)),
        ];
        for (mode, password, cn, expected) in cases {
            assert_eq!(
                choose_credential(mode, &offered(&id, password, cn)),
                expected,
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_token_needs_the_username() {
        let id: ApplianceId = ID.parse().expect("valid id");
        let mut o = offered(&id, Some(&b"t"[..]), None);
        o.has_username = false;
        assert_eq!(
            choose_credential(AuthMode::Token, &o),
            Err(Unproven::MissingToken)
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        assert_eq!(
            format!("{:?}", Secret::new(b"hunter2".to_vec())),
            "Secret(<7 bytes>)"
        );
    }
}
