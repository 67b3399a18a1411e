//! Register tokens: the JWTs (HS256) a customer's appliances present to
//! `POST /va/register/`. Claims: the customer id (`sub`), the expiry
//! (`exp`) and the issue time (`iat`), in seconds as JWT says. The HMAC
//! secret is generated once and kept in `<data dir>/jwt-secret` (0600).
//!
//! Expiry is checked against the hub's [`crate::clock::Clock`], not the
//! system time, so that tests move time instead of waiting.

use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::Millis;
use crate::credentials::generate_token;
use crate::model::CustomerId;

/// Default lifetime of a register token: 30 days.
pub const DEFAULT_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// Why a register token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Well formed and signed by this hub, but past its expiry.
    #[error("the register token has expired")]
    Expired,
    /// Not a token this hub signed (malformed, forged, other algorithm).
    #[error("invalid register token")]
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
}

/// Issues and verifies register tokens.
#[derive(Clone)]
pub struct RegisterTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime_ms: i64,
}

impl std::fmt::Debug for RegisterTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterTokens")
            .field("lifetime_ms", &self.lifetime_ms)
            .finish_non_exhaustive()
    }
}

impl RegisterTokens {
    /// Tokens signed with `secret`, valid for `lifetime_ms`.
    pub fn from_secret(secret: &[u8], lifetime_ms: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime_ms,
        }
    }

    /// Loads `<data_dir>/jwt-secret`, creating it (0600) when absent.
    pub fn load_or_create(data_dir: &Path, lifetime_ms: i64) -> std::io::Result<Self> {
        let path = data_dir.join("jwt-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(secret) => secret.trim().to_owned(),
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
                secret
            }
            Err(err) => return Err(err),
        };
        if secret.len() < 32 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds less than 32 characters", path.display()),
            ));
        }
        Ok(Self::from_secret(secret.as_bytes(), lifetime_ms))
    }

    /// How long a new token is valid.
    pub fn lifetime_ms(&self) -> i64 {
        self.lifetime_ms
    }

    /// A new token for `customer`, and when it expires (epoch ms).
    pub fn issue(&self, customer: CustomerId, now: Millis) -> (String, Millis) {
        let iat = now.div_euclid(1000);
        let exp = now.saturating_add(self.lifetime_ms).div_euclid(1000);
        let claims = Claims {
            sub: customer.to_string(),
            exp,
            iat,
        };
        // HMAC signing of a small struct cannot fail; an empty token would
        // only ever be refused.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, exp.saturating_mul(1000))
    }

    /// The customer a token names, when this hub signed it and it has not
    /// expired at `now`.
    pub fn verify(&self, token: &str, now: Millis) -> Result<CustomerId, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.exp.saturating_mul(1000) <= now {
            return Err(TokenError::Expired);
        }
        data.claims.sub.parse().map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn a_token_names_its_customer_until_it_expires() {
        let tokens = RegisterTokens::from_secret(b"0123456789abcdef0123456789abcdef", 60_000);
        let customer = CustomerId::new_random();
        let (token, expires_at) = tokens.issue(customer, NOW);
        assert_eq!(expires_at, NOW + 60_000);
        assert_eq!(tokens.verify(&token, NOW), Ok(customer));
        assert_eq!(tokens.verify(&token, NOW + 59_999), Ok(customer));
        assert_eq!(
            tokens.verify(&token, NOW + 60_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_invalid() {
        let ours = RegisterTokens::from_secret(b"0123456789abcdef0123456789abcdef", 60_000);
        let theirs = RegisterTokens::from_secret(b"fedcba9876543210fedcba9876543210", 60_000);
        let (forged, _) = theirs.issue(CustomerId::new_random(), NOW);
        assert_eq!(ours.verify(&forged, NOW), Err(TokenError::Invalid));
        for garbage in ["", "a.b.c", "not a token", "eyJhbGciOiJub25lIn0.e30."] {
            assert_eq!(
                ours.verify(garbage, NOW),
                Err(TokenError::Invalid),
                "{garbage}"
            );
        }
        let (token, _) = ours.issue(CustomerId::new_random(), NOW);
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(ours.verify(&tampered, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn the_secret_is_created_once_with_owner_only_access() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = RegisterTokens::load_or_create(dir.path(), 60_000).expect("created");
        let (token, _) = first.issue(CustomerId::new_random(), NOW);
        let second = RegisterTokens::load_or_create(dir.path(), 60_000).expect("reloaded");
        assert!(second.verify(&token, NOW).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt-secret"))
                .expect("secret file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
