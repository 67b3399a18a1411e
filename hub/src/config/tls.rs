//! The device edge's TLS files: the operator's own (`--tls-cert`,
//! `--tls-key`, `--client-ca`, `--registration-ca`), or, when none is
//! given, the dev certificates that `hub serve` creates in `--certs-dir`
//! (see `certs/README.md`). Only which files and their consistency are
//! decided here; the edge reads and checks their contents when it starts.

use std::path::PathBuf;

use super::{invalid, ConfigError, DeviceAuth};

/// The operator's certificate files; the hub never creates nor modifies
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The edge's certificate chain, PEM, leaf first.
    pub cert_chain: PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// CA certificates that sign appliances' client certificates (needed
    /// for `--device-auth certificate` or `either`).
    pub client_ca: Option<PathBuf>,
    /// The CA certificate handed to appliances by `POST /va/register/` as
    /// `caCert`; None: appliances verify the edge with the roots they
    /// already have.
    pub registration_ca: Option<PathBuf>,
}

/// The four settings as given (flags over the file).
#[derive(Debug, Default)]
pub(super) struct Given {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
    pub(super) registration_ca: Option<PathBuf>,
}

/// The operator's files, None for the dev certificates; refuses a
/// certificate without its key (or the reverse), CA files without a
/// certificate (the dev CA plays both parts then), and certificate
/// authentication without a client CA.
pub(super) fn tls_files(given: Given, auth: DeviceAuth) -> Result<Option<TlsFiles>, ConfigError> {
    let (cert_chain, private_key) = match (given.cert, given.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if given.client_ca.is_some() || given.registration_ca.is_some() {
                return Err(invalid(
                    "client-ca / registration-ca",
                    "only with --tls-cert and --tls-key; the dev CA in --certs-dir is used otherwise"
                        .into(),
                ));
            }
            return Ok(None);
        }
        _ => {
            return Err(invalid(
                "tls-cert / tls-key",
                "give both the certificate chain and its private key, or neither".into(),
            ))
        }
    };
    if auth != DeviceAuth::Token && given.client_ca.is_none() {
        return Err(invalid(
            "client-ca",
            "--device-auth certificate or either needs the CA that signs the appliances' certificates"
                .into(),
        ));
    }
    Ok(Some(TlsFiles {
        cert_chain,
        private_key,
        client_ca: given.client_ca,
        registration_ca: given.registration_ca,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(files: [Option<&str>; 4]) -> Given {
        let [cert, key, client_ca, registration_ca] = files.map(|f| f.map(PathBuf::from));
        Given {
            cert,
            key,
            client_ca,
            registration_ca,
        }
    }

    #[test]
    fn operator_files_or_dev_certificates() {
        let none = tls_files(given([None; 4]), DeviceAuth::Token).expect("dev certificates");
        assert_eq!(none, None);
        let files = tls_files(
            given([Some("c.pem"), Some("k.pem"), Some("ca.pem"), Some("r.pem")]),
            DeviceAuth::Either,
        )
        .expect("complete");
        assert_eq!(
            files,
            Some(TlsFiles {
                cert_chain: "c.pem".into(),
                private_key: "k.pem".into(),
                client_ca: Some("ca.pem".into()),
                registration_ca: Some("r.pem".into()),
            })
        );
        let token_only = tls_files(
            given([Some("c.pem"), Some("k.pem"), None, None]),
            DeviceAuth::Token,
        )
        .expect("token authentication needs no client CA");
        assert!(token_only.is_some_and(|f| f.client_ca.is_none()));
    }

    #[test]
    fn inconsistent_files_are_refused_by_name() {
        for (files, auth, setting) in [
            (
                [Some("c.pem"), None, None, None],
                DeviceAuth::Token,
                "tls-cert / tls-key",
            ),
            (
                [None, Some("k.pem"), None, None],
                DeviceAuth::Token,
                "tls-cert / tls-key",
            ),
            (
                [None, None, Some("ca.pem"), None],
                DeviceAuth::Token,
                "client-ca / registration-ca",
            ),
            (
                [None, None, None, Some("r.pem")],
                DeviceAuth::Token,
                "client-ca / registration-ca",
            ),
            (
                [Some("c.pem"), Some("k.pem"), None, None],
                DeviceAuth::Certificate,
                "client-ca",
            ),
            (
                [Some("c.pem"), Some("k.pem"), None, None],
                DeviceAuth::Either,
                "client-ca",
            ),
        ] {
            match tls_files(given(files), auth) {
                Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, setting, "{files:?}"),
                other => panic!("{files:?} {auth:?}: expected {setting} refused, got {other:?}"),
            }
        }
    }
}
