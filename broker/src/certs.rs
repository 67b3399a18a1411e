//! Development certificates (rcgen, ECDSA P-256): a dev CA, a server
//! certificate for the edge, client certificates for appliances.
//!
//! [`ensure_dev_certs`] creates, in one directory, whatever is missing of
//! `ca.pem` + `ca-key.pem` (the CA, 10 years) and `server.pem` +
//! `server-key.pem` (the server, 2 years, SANs `localhost`, `127.0.0.1`,
//! `::1` and the configured host names), and never overwrites a file: to
//! renew the server certificate (new host name, expiry) delete the two
//! `server*` files. [`issue_client_cert`] signs a client certificate whose
//! CN is an appliance id with that CA. Keys are written with mode 0600.
//! `hub certs init` and `hub serve` call these; `certs/README.md` explains
//! production certificates.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::ApplianceId;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 730;
const CLIENT_DAYS: i64 = 730;

/// Errors of certificate generation.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rcgen could not build, sign or parse a certificate or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// One file of a certificate/key pair exists without the other.
    #[error("{0} exists without its pair; delete it or restore the missing file")]
    HalfPair(PathBuf),
}

/// Where the dev certificates live inside a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertPaths {
    /// The CA certificate appliances trust (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The CA's private key (`ca-key.pem`).
    pub ca_key: PathBuf,
    /// The edge's certificate (`server.pem`).
    pub server_cert: PathBuf,
    /// The edge's private key (`server-key.pem`).
    pub server_key: PathBuf,
}

impl DevCertPaths {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> DevCertPaths {
        DevCertPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }
}

/// A client certificate for one appliance.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The appliance (the certificate's CN).
    pub appliance_id: ApplianceId,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("appliance_id", &self.appliance_id)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ClientCertificate {
    /// Writes `{id}.pem` and `{id}-key.pem` (0600) into `dir`; returns both
    /// paths.
    pub fn write_to(&self, dir: &Path) -> Result<(PathBuf, PathBuf), CertsError> {
        create_dir(dir)?;
        let cert = dir.join(format!("{}.pem", self.appliance_id));
        let key = dir.join(format!("{}-key.pem", self.appliance_id));
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }
}

/// Creates the dev CA and server certificate in `dir` where absent.
pub fn ensure_dev_certs(dir: &Path, hostnames: &[String]) -> Result<DevCertPaths, CertsError> {
    let paths = DevCertPaths::in_dir(dir);
    create_dir(dir)?;
    let ca_present = pair_present(&paths.ca_cert, &paths.ca_key)?;
    let server_present = pair_present(&paths.server_cert, &paths.server_key)?;
    if !ca_present {
        if server_present {
            return Err(CertsError::HalfPair(paths.server_cert));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        write_file(&paths.ca_key, &key.serialize_pem(), true)?;
        write_file(&paths.ca_cert, &cert.pem(), false)?;
        tracing::info!(path = %paths.ca_cert.display(), "created dev CA");
    }
    if !server_present {
        let issuer = load_issuer(&paths)?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(
            hostnames
                .iter()
                .filter(|h| !names.contains(h))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut params = leaf_params(names, "localhost", SERVER_DAYS)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        write_file(&paths.server_key, &key.serialize_pem(), true)?;
        write_file(&paths.server_cert, &cert.pem(), false)?;
        tracing::info!(path = %paths.server_cert.display(), "created dev server certificate");
    }
    Ok(paths)
}

/// Signs a client certificate (CN = `appliance_id`, clientAuth) with the CA
/// in `ca_dir` (`ca.pem`, `ca-key.pem`).
pub fn issue_client_cert(
    ca_dir: &Path,
    appliance_id: &ApplianceId,
) -> Result<ClientCertificate, CertsError> {
    let issuer = load_issuer(&DevCertPaths::in_dir(ca_dir))?;
    let mut params = leaf_params(Vec::new(), &appliance_id.to_string(), CLIENT_DAYS)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClientCertificate {
        appliance_id: *appliance_id,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn ca_params() -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("Fleethub development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_DAYS);
    Ok(params)
}

fn leaf_params(sans: Vec<String>, cn: &str, days: i64) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    Ok(params)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Fleethub");
    dn.push(DnType::CommonName, cn);
    dn
}

/// From yesterday (clock skew) for `days`, with a random serial number.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let date = |day: i64| {
        let (y, m, d) = civil_from_days(day);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = date(today - 1);
    params.not_after = date(today + days);
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7F; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

fn load_issuer(paths: &DevCertPaths) -> Result<Issuer<'static, KeyPair>, CertsError> {
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| CertsError::Io {
            path: p.to_owned(),
            source,
        })
    };
    let key = KeyPair::from_pem(&read(&paths.ca_key)?)?;
    Ok(Issuer::from_ca_cert_pem(&read(&paths.ca_cert)?, key)?)
}

/// Both files present: true; neither: false; one: an error.
fn pair_present(cert: &Path, key: &Path) -> Result<bool, CertsError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(CertsError::HalfPair(cert.to_owned())),
        (false, true) => Err(CertsError::HalfPair(key.to_owned())),
    }
}

fn create_dir(dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written certificate; `secret` files get mode 0600.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn creates_once_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ensure_dev_certs(dir.path(), &["hub.example.com".to_owned()]).expect("create");
        let ca = fs::read_to_string(&paths.ca_cert).expect("ca");
        let server = fs::read_to_string(&paths.server_cert).expect("server");
        ensure_dev_certs(dir.path(), &[]).expect("again");
        assert_eq!(fs::read_to_string(&paths.ca_cert).expect("ca"), ca);
        assert_eq!(
            fs::read_to_string(&paths.server_cert).expect("server"),
            server
        );

        // A new server certificate from the existing CA once deleted.
        fs::remove_file(&paths.server_cert).expect("rm");
        fs::remove_file(&paths.server_key).expect("rm");
        ensure_dev_certs(dir.path(), &[]).expect("renew");
        assert_ne!(
            fs::read_to_string(&paths.server_cert).expect("server"),
            server
        );
        assert_eq!(fs::read_to_string(&paths.ca_cert).expect("ca"), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&paths.ca_key)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    #[test]
    fn half_pairs_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ensure_dev_certs(dir.path(), &[]).expect("create");
        fs::remove_file(&paths.ca_key).expect("rm");
        assert!(matches!(
            ensure_dev_certs(dir.path(), &[]),
            Err(CertsError::HalfPair(_))
        ));
    }

    #[test]
    fn issues_client_certificates_for_an_appliance() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure_dev_certs(dir.path(), &[]).expect("create");
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().expect("id");
        let client = issue_client_cert(dir.path(), &id).expect("issue");
        assert!(client.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(!format!("{client:?}").contains("PRIVATE"));
        let out = dir.path().join("clients");
        let (cert, key) = client.write_to(&out).expect("write");
        assert!(cert.exists() && key.exists());
    }
}
