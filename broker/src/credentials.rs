//! Username/password pairs of the internal principals (`hub`, `edge`) of the
//! embedded broker. Secrets are random, generated at each start, and never
//! printed: `Debug` redacts the password.

use std::fmt;

use rand::RngCore;

/// Length in bytes of a generated secret (hex encoded, so twice as many
/// characters).
const SECRET_BYTES: usize = 32;

/// MQTT username and password of one internal principal.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// MQTT username.
    pub username: String,
    /// MQTT password (a random hex string for the embedded broker).
    pub password: String,
}

impl Credentials {
    /// Credentials for `username` with a fresh random secret from the
    /// operating system's CSPRNG (via `rand`'s thread RNG, reseeded from it).
    pub(crate) fn generate(username: &str) -> Credentials {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        Credentials {
            username: username.to_owned(),
            password: hex::encode(secret),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_random_and_redacted() {
        let a = Credentials::generate("hub");
        let b = Credentials::generate("hub");
        assert_eq!(a.username, "hub");
        assert_eq!(a.password.len(), SECRET_BYTES * 2);
        assert_ne!(a.password, b.password);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&a.password));
        assert!(shown.contains("redacted"));
    }
}
