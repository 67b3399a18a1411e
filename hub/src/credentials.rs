//! Secrets: appliance tokens and the admin token. Tokens are 32 random
//! bytes in hex; only their sha256 is stored, and comparisons run in
//! constant time.

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random token (64 hex digits).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token: its sha256, in hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// True when `token` hashes to `stored_hash`, compared in constant time.
pub fn verify_token(token: &str, stored_hash: &str) -> bool {
    let computed = hash_token(token);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// The operators' admin token: from `HUB_ADMIN_TOKEN` when set, otherwise
/// read from `<data dir>/admin-token`, created there (mode 0600) and
/// printed once on first start.
#[derive(Clone)]
pub struct AdminToken {
    hash: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token known in advance (from the environment, or in tests).
    pub fn from_secret(secret: &str) -> Self {
        Self {
            hash: hash_token(secret),
        }
    }

    /// Loads `<data_dir>/admin-token`, creating it when absent. Returns the
    /// token and, when it was just created, its secret (to print once).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<(Self, Option<String>)> {
        let path = data_dir.join("admin-token");
        match std::fs::read_to_string(&path) {
            Ok(secret) => Ok((Self::from_secret(secret.trim()), None)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secret = generate_token();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path)?;
                file.write_all(secret.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()?;
                Ok((Self::from_secret(&secret), Some(secret)))
            }
            Err(err) => Err(err),
        }
    }

    /// True when `presented` is the admin token.
    pub fn verify(&self, presented: &str) -> bool {
        verify_token(presented, &self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_against_their_hash() {
        let token = generate_token();
        assert_eq!(token.len(), 64);
        let hash = hash_token(&token);
        assert!(verify_token(&token, &hash));
        assert!(!verify_token(&generate_token(), &hash));
        assert!(!verify_token("", &hash));
    }

    #[test]
    fn admin_token_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first, secret) = AdminToken::load_or_create(dir.path()).expect("created");
        let secret = secret.expect("a new token is returned once");
        let (second, again) = AdminToken::load_or_create(dir.path()).expect("reloaded");
        assert!(again.is_none());
        assert!(first.verify(&secret) && second.verify(&secret));
        assert!(!second.verify("wrong"));
    }
}
