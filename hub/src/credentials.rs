//! Secrets: appliance tokens and the admin token. Tokens are 32 random
//! bytes in hex; only their sha256 is stored, and comparisons run in
//! constant time.
//!
//! Appliance tokens expire ([`TokenPolicy`]); before one does, the hub
//! sends the appliance a new one and, until the appliance confirmed it or
//! the old one expired, accepts both ([`accepts`]).

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

/// Default lifetime of an appliance token: 60 days.
pub const DEFAULT_TOKEN_LIFETIME_MS: i64 = 60 * 24 * 3600 * 1000;
/// Default time before expiry at which a new token is sent: 10 days.
pub const DEFAULT_RENEW_BEFORE_MS: i64 = 10 * 24 * 3600 * 1000;

/// When appliance tokens expire and are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Lifetime of a new token.
    pub lifetime_ms: i64,
    /// How long before expiry the renewal starts.
    pub renew_before_ms: i64,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            lifetime_ms: DEFAULT_TOKEN_LIFETIME_MS,
            renew_before_ms: DEFAULT_RENEW_BEFORE_MS,
        }
    }
}

impl TokenPolicy {
    /// Whether a token expiring at `expires_at` is due for renewal at
    /// `now` (an expired one is not: its appliance cannot connect to
    /// receive a new one).
    pub fn renewal_due(&self, expires_at: i64, now: i64) -> bool {
        now < expires_at && now >= expires_at.saturating_sub(self.renew_before_ms)
    }

    /// The earliest time a token expiring at `expires_at` is due.
    pub fn due_at(&self, expires_at: i64) -> i64 {
        expires_at.saturating_sub(self.renew_before_ms)
    }

    /// The expiry of a token issued at `now`.
    pub fn expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.lifetime_ms)
    }
}

/// A stored token: its hash and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// sha256 hex.
    pub hash: String,
    /// Epoch ms.
    pub expires_at: i64,
}

/// Whether `presented` opens an appliance whose token is `current` and
/// whose renewal, if one is under way, is `next`: either one, unexpired.
/// Both are always checked, so the answer takes as long either way.
pub fn accepts(
    presented: &str,
    current: &StoredToken,
    next: Option<&StoredToken>,
    now: i64,
) -> bool {
    let current_ok = verify_token(presented, &current.hash) && current.expires_at > now;
    let next_ok = next.is_some_and(|n| verify_token(presented, &n.hash) && n.expires_at > now);
    current_ok | next_ok
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
    fn both_tokens_open_the_appliance_while_each_is_unexpired() {
        let (old, new) = (generate_token(), generate_token());
        let current = StoredToken {
            hash: hash_token(&old),
            expires_at: 100,
        };
        let next = StoredToken {
            hash: hash_token(&new),
            expires_at: 1000,
        };
        assert!(accepts(&old, &current, Some(&next), 50));
        assert!(accepts(&new, &current, Some(&next), 50));
        assert!(!accepts(&new, &current, None, 50), "no renewal under way");
        assert!(
            !accepts(&old, &current, Some(&next), 100),
            "the old one expired"
        );
        assert!(accepts(&new, &current, Some(&next), 100));
        assert!(!accepts(&generate_token(), &current, Some(&next), 50));
    }

    #[test]
    fn renewal_is_due_in_the_last_ten_days() {
        let policy = TokenPolicy::default();
        let expires = policy.expiry(0);
        assert_eq!(expires, DEFAULT_TOKEN_LIFETIME_MS);
        assert!(!policy.renewal_due(expires, expires - DEFAULT_RENEW_BEFORE_MS - 1));
        assert!(policy.renewal_due(expires, expires - DEFAULT_RENEW_BEFORE_MS));
        assert!(policy.renewal_due(expires, expires - 1));
        assert!(!policy.renewal_due(expires, expires), "expired");
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
