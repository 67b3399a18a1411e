//! TLS of the public listener: one rustls `ServerConfig` (ring provider),
//! built once at start from PEM files, and the identity a verified client
//! certificate carries (its subject CN).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use super::{AuthMode, EdgeError, TlsListener};

/// TLS sessions remembered for resumption (about one per appliance).
const SESSION_CACHE: usize = 16_384;

fn tls_error(path: &Path, what: impl std::fmt::Display) -> EdgeError {
    EdgeError::Tls(format!("{}: {what}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, EdgeError> {
    let file = File::open(path).map_err(|e| tls_error(path, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, EdgeError> {
    let file = File::open(path).map_err(|e| tls_error(path, e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_error(path, e))?
        .ok_or_else(|| tls_error(path, "no private key in file"))
}

/// Builds the listener's `ServerConfig`. Client certificates are requested
/// only in [`AuthMode::Certificate`] (required) and [`AuthMode::Either`]
/// (optional, but verified when presented).
pub(crate) fn server_config(
    listener: &TlsListener,
    mode: AuthMode,
) -> Result<Arc<ServerConfig>, EdgeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| EdgeError::Tls(e.to_string()))?;
    let builder = match (mode, &listener.client_ca) {
        (AuthMode::Token, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(EdgeError::Config(format!(
                "auth mode {mode:?} needs a client CA file"
            )))
        }
        (_, Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_path)? {
                roots.add(cert).map_err(|e| tls_error(ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == AuthMode::Either {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| tls_error(ca_path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = read_certs(&listener.cert_chain)?;
    let key = read_key(&listener.private_key)?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&listener.cert_chain, e))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(config))
}

/// Subject CN of the first (leaf) certificate a client presented. rustls
/// has verified the chain before this is called; the DER is parsed by
/// x509-parser, which returns errors rather than panicking.
pub(crate) fn peer_common_name(peer_certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = peer_certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{ensure_dev_certs, issue_client_cert};

    #[test]
    fn builds_from_dev_certs_in_every_mode_and_reads_a_client_cn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ensure_dev_certs(dir.path(), &[]).expect("dev certs");
        let listener = TlsListener {
            addr: ([127, 0, 0, 1], 0).into(),
            cert_chain: paths.server_cert.clone(),
            private_key: paths.server_key.clone(),
            client_ca: Some(paths.ca_cert.clone()),
        };
        for mode in [AuthMode::Token, AuthMode::Certificate, AuthMode::Either] {
            assert!(server_config(&listener, mode).is_ok(), "{mode:?}");
        }
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().expect("id");
        let client = issue_client_cert(dir.path(), &id).expect("client cert");
        let der = rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("pem");
        assert_eq!(
            peer_common_name(Some(&der)).as_deref(),
            Some(id.to_string().as_str())
        );
        assert_eq!(peer_common_name(None), None);
        assert_eq!(
            peer_common_name(Some(&[CertificateDer::from(vec![0x30, 0x00])])),
            None
        );
    }

    #[test]
    fn missing_files_are_errors_not_panics() {
        let listener = TlsListener {
            addr: ([127, 0, 0, 1], 0).into(),
            cert_chain: "/nonexistent/server.pem".into(),
            private_key: "/nonexistent/server-key.pem".into(),
            client_ca: None,
        };
        assert!(matches!(
            server_config(&listener, AuthMode::Token),
            Err(EdgeError::Tls(_))
        ));
    }
}
