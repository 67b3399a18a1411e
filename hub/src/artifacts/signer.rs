//! Signed, expiring links: `<public url><path>?expires=<epoch s>&sig=<hex>`
//! where `sig` = HMAC-SHA256(key, "<path>\n<expires>") in lowercase hex.
//!
//! The canonical text holds the path and the expiry only, never the
//! method: one link serves GET and HEAD alike. Uploads and downloads live
//! under different paths (`/uploads/logs/{task}` and `/logs/{task}`), so a
//! download link can never be used to upload, nor the other way round.
//! The key is 32 random bytes generated once in `<data dir>/url-secret`
//! (mode 0600); links survive restarts and stay valid across replicas that
//! share the data directory.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use protocol::TaskId;
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;

use super::{FileName, Sha256Digest};
use crate::clock::SharedClock;

type HmacSha256 = Hmac<Sha256>;

/// Default lifetime of a link: 7 days, as the original backend's links.
pub const DEFAULT_TTL_SECS: u64 = 7 * 24 * 3600;

/// Why a link is refused (all answered 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LinkError {
    /// No `expires` or no `sig`.
    #[error("the link is not signed: expected ?expires=<epoch seconds>&sig=<hex>")]
    Unsigned,
    /// A parameter appears twice, or is not of its form.
    #[error("the link's signature parameters are malformed")]
    Malformed,
    /// The signature does not match the path and expiry.
    #[error("the link's signature is invalid")]
    BadSignature,
    /// Signed, but its time is over.
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks links.
pub struct UrlSigner {
    /// The HMAC keyed once; cloned for each signature.
    mac: HmacSha256,
    base: String,
    ttl_secs: u64,
    clock: SharedClock,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base", &self.base)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl UrlSigner {
    /// A signer with a known key (tests).
    pub fn new(key: [u8; 32], base: &str, ttl_secs: u64, clock: SharedClock) -> Self {
        let mac = match HmacSha256::new_from_slice(&key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        Self {
            mac,
            base: base.trim_end_matches('/').to_owned(),
            ttl_secs,
            clock,
        }
    }

    /// Loads `<data_dir>/url-secret`, creating it (0600) when absent.
    pub fn load_or_create(
        data_dir: &Path,
        base: &str,
        ttl_secs: u64,
        clock: SharedClock,
    ) -> std::io::Result<Self> {
        Ok(Self::new(load_key(data_dir)?, base, ttl_secs, clock))
    }

    /// The public base URL links start with (no trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How long a new link is valid, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now() / 1000).unwrap_or(0)
    }

    fn signature(&self, path: &str, expires: u64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// `sig` for `path` valid until `expires` (epoch seconds).
    pub fn sign(&self, path: &str, expires: u64) -> String {
        hex::encode(self.signature(path, expires).finalize().into_bytes())
    }

    /// The full URL of `path`, valid for the signer's lifetime from now.
    pub fn url(&self, path: &str) -> String {
        let expires = self.now_secs().saturating_add(self.ttl_secs);
        self.url_until(path, expires)
    }

    /// The full URL of `path`, valid until `expires` (epoch seconds).
    pub fn url_until(&self, path: &str, expires: u64) -> String {
        format!(
            "{}{path}?expires={expires}&sig={}",
            self.base,
            self.sign(path, expires)
        )
    }

    /// Checks the `expires` and `sig` of a request's raw query for `path`.
    /// Other query parameters are ignored (they are not signed, and change
    /// nothing). The signature is checked in constant time, before expiry.
    pub fn verify(&self, path: &str, query: Option<&str>) -> Result<(), LinkError> {
        let (mut expires, mut sig) = (None, None);
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "expires" => &mut expires,
                "sig" => &mut sig,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(LinkError::Malformed);
            }
        }
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(LinkError::Unsigned);
        };
        let expires = parse_expires(expires).ok_or(LinkError::Malformed)?;
        let sig = decode_sig(sig).ok_or(LinkError::Malformed)?;
        self.signature(path, expires)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if self.now_secs() >= expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

fn parse_expires(text: &str) -> Option<u64> {
    let ok = (1..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

fn decode_sig(text: &str) -> Option<Vec<u8>> {
    let ok = text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| hex::decode(text).ok()).flatten()
}

/// `/artifacts/{sha256}/{name}`: where a local artifact is downloaded.
pub fn artifact_path(sha256: &Sha256Digest, name: &FileName) -> String {
    format!("/artifacts/{sha256}/{name}")
}

/// `/uploads/logs/{task}`: where an appliance PUTs a log archive.
pub fn log_upload_path(task: &TaskId) -> String {
    format!("/uploads/logs/{task}")
}

/// `/logs/{task}`: where an uploaded log archive is downloaded.
pub fn log_download_path(task: &TaskId) -> String {
    format!("/logs/{task}")
}

fn load_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = data_dir.join("url-secret");
    let parse = |text: &str| -> std::io::Result<[u8; 32]> {
        let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
        bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
            std::io::Error::other(format!("{} is not 64 hex digits", path.display()))
        })
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(mut file) => {
                    file.write_all(hex::encode(key).as_bytes())?;
                    file.write_all(b"\n")?;
                    file.sync_all()?;
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    parse(&std::fs::read_to_string(&path)?)
                }
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn signer() -> (UrlSigner, ManualClock) {
        let clock = ManualClock::new(NOW_MS);
        let signer = UrlSigner::new([7; 32], "http://hub:8080/", 3600, Arc::new(clock.clone()));
        (signer, clock)
    }

    fn query(url: &str) -> &str {
        url.split_once('?').map(|(_, q)| q).unwrap_or_default()
    }

    #[test]
    fn a_signed_url_verifies_until_it_expires() {
        let (signer, clock) = signer();
        let url = signer.url("/artifacts/x/y");
        assert!(url.starts_with("http://hub:8080/artifacts/x/y?expires=1800003600&sig="));
        assert_eq!(signer.verify("/artifacts/x/y", Some(query(&url))), Ok(()));
        clock.advance(3_599_999);
        assert_eq!(signer.verify("/artifacts/x/y", Some(query(&url))), Ok(()));
        clock.advance(1);
        assert_eq!(
            signer.verify("/artifacts/x/y", Some(query(&url))),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn tampering_with_anything_signed_is_refused() {
        let (signer, _) = signer();
        let url = signer.url("/logs/t1");
        let q = query(&url);
        assert_eq!(
            signer.verify("/logs/t2", Some(q)),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify("/uploads/logs/t1", Some(q)),
            Err(LinkError::BadSignature)
        );
        let later = q.replace("expires=1800003600", "expires=1800007200");
        assert_eq!(
            signer.verify("/logs/t1", Some(&later)),
            Err(LinkError::BadSignature)
        );
        let mut flipped = q.to_owned();
        let last = flipped.pop().expect("a digit");
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            signer.verify("/logs/t1", Some(&flipped)),
            Err(LinkError::BadSignature)
        );
        let other = UrlSigner::new(
            [8; 32],
            "http://hub:8080",
            3600,
            Arc::new(ManualClock::new(NOW_MS)),
        );
        assert_eq!(
            other.verify("/logs/t1", Some(q)),
            Err(LinkError::BadSignature)
        );
        // Unsigned extra parameters change nothing.
        assert_eq!(signer.verify("/logs/t1", Some(&format!("{q}&x=1"))), Ok(()));
    }

    #[test]
    fn malformed_queries_are_refused_without_panicking() {
        let (signer, _) = signer();
        let sig = "a".repeat(64);
        for (q, expected) in [
            (None, LinkError::Unsigned),
            (Some(""), LinkError::Unsigned),
            (Some("&&&=&"), LinkError::Unsigned),
            (Some("expires=1"), LinkError::Unsigned),
            (Some(&*format!("sig={sig}")), LinkError::Unsigned),
            (Some(&*format!("expires=&sig={sig}")), LinkError::Malformed),
            (
                Some(&*format!("expires=-1&sig={sig}")),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=99999999999999999999&sig={sig}")),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=+5&sig={sig}")),
                LinkError::Malformed,
            ),
            (Some("expires=5&sig=zz"), LinkError::Malformed),
            (
                Some(&*format!("expires=5&sig={}", "A".repeat(64))),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=5&expires=6&sig={sig}")),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=5&sig={sig}&sig={sig}")),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=18446744073709551615&sig={sig}")),
                LinkError::Malformed,
            ),
            (
                Some(&*format!("expires=9999999999999999999&sig={sig}")),
                LinkError::BadSignature,
            ),
            (Some("expires=5&sig=%61"), LinkError::Malformed),
        ] {
            assert_eq!(signer.verify("/p", q), Err(expected), "{q:?}");
        }
    }

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock: SharedClock = Arc::new(ManualClock::new(NOW_MS));
        let first =
            UrlSigner::load_or_create(dir.path(), "http://a", 60, clock.clone()).expect("create");
        let second = UrlSigner::load_or_create(dir.path(), "http://a", 60, clock).expect("reload");
        assert_eq!(first.sign("/p", 1), second.sign("/p", 1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("url-secret"))
                .expect("secret file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("url-secret"), "short").expect("overwrite");
        let clock: SharedClock = Arc::new(ManualClock::new(NOW_MS));
        assert!(UrlSigner::load_or_create(dir.path(), "http://a", 60, clock).is_err());
    }
}
