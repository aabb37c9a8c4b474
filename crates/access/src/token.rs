//! API keys as clients hold them and as they are stored.
//!
//! A key is `cbk_` followed by 32 random bytes in unpadded base64url (43
//! characters). The prefix makes a leaked key recognisable to secret
//! scanners and to people; the first 12 characters (`cbk_` and 8 more) are
//! stored in clear to name the key in listings. The key itself is stored only
//! as its SHA-256 digest: with 256 random bits a fast hash is enough (no
//! password-style stretching is needed to resist guessing), and it lets the
//! gateway check a key with one hash and one map lookup.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// The recognisable start of every key.
pub const PREFIX: &str = "cbk_";
/// Random bytes in a key.
const RANDOM_BYTES: usize = 32;
/// Characters of the key stored in clear to name it.
const SHOWN: usize = PREFIX.len() + 8;

/// The SHA-256 digest a key is stored and looked up by.
pub type Digest = [u8; 32];

/// A newly made key: shown once, then only its digest remains.
pub struct Token(String);

impl Token {
    /// A new random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random)?;
        Ok(Self(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random))))
    }

    /// The key, to hand to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The part kept in clear to name the key (`cbk_` and 8 characters).
    pub fn shown_prefix(&self) -> &str {
        &self.0[..SHOWN]
    }

    /// What is stored.
    pub fn digest(&self) -> Digest {
        digest(&self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}…)", self.shown_prefix())
    }
}

/// The digest of what a client presented.
pub fn digest(presented: &str) -> Digest {
    Sha256::digest(presented.as_bytes()).into()
}

/// Whether `presented` has the shape of a key (so a malformed credential is
/// told apart from an unknown one in logs and metrics).
pub fn well_formed(presented: &str) -> bool {
    presented.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_well_formed_distinct_and_digested() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert!(well_formed(a.expose()), "{}", a.expose());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.digest(), digest(a.expose()));
        assert_ne!(a.digest(), b.digest());
        assert!(a.expose().starts_with(a.shown_prefix()));
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn malformed_keys_are_recognised() {
        for bad in [
            "",
            "cbk_",
            "cbk_short",
            "Bearer x",
            &format!("xyz_{}", "a".repeat(43)),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert!(!well_formed(&format!("cbk_{}!", "a".repeat(42))));
    }
}
