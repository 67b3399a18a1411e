//! The two names an artifact has: its [`Sha256Digest`] (its identity and
//! the name of its file) and its [`FileName`] (the last segment of its
//! download URL). Both are validated newtypes with one spelling, safe to
//! put in a URL path or a file name as they are.

use std::fmt;
use std::str::FromStr;

use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A text that is not a digest or a file name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Not 64 lowercase hex digits.
    #[error("invalid sha256: expected 64 lowercase hex digits")]
    Sha256,
    /// Not a file name this hub serves.
    #[error(
        "invalid name: expected 1-128 characters of A-Z, a-z, 0-9, '.', '-' and '_', \
         not starting with '.'"
    )]
    FileName,
}

/// A sha256 digest in its one text form: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// The digest of what `hasher` was fed.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hex::encode(hasher.finalize()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sha256Digest {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Sha256)
        }
    }
}

/// The name an artifact is downloaded as: 1-128 characters of `A-Z a-z
/// 0-9 . - _`, not starting with `.` (so never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

impl FileName {
    /// Longest name.
    pub const MAX_LEN: usize = 128;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FileName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::FileName)
        }
    }
}

macro_rules! text_form {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                raw.parse().map_err(de::Error::custom)
            }
        }
    )*};
}

text_form!(Sha256Digest, FileName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_have_one_spelling() {
        let empty = Sha256Digest::of(b"");
        assert_eq!(
            empty.as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.as_str().parse::<Sha256Digest>(), Ok(empty.clone()));
        let json = serde_json::to_string(&empty).expect("serialize");
        assert_eq!(
            serde_json::from_str::<Sha256Digest>(&json).ok(),
            Some(empty)
        );
        for bad in [
            "",
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "../../../../../../../../../../../../../../../../../../etc/passwd",
        ] {
            assert_eq!(bad.parse::<Sha256Digest>(), Err(NameError::Sha256), "{bad}");
        }
    }

    #[test]
    fn file_names_are_safe_path_segments() {
        for good in ["va-3.2.0.img", "a", "dns_1.4.2.tar", &"x".repeat(128)] {
            assert_eq!(
                good.parse::<FileName>().map(|n| n.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "a%2fb",
            "é",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert_eq!(bad.parse::<FileName>(), Err(NameError::FileName), "{bad:?}");
        }
    }
}
