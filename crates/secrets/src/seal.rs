//! Sealing one value: ChaCha20-Poly1305, a fresh random 96-bit nonce per write, the secret's
//! path as associated data (a ciphertext moved to another path does not open).

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use crate::key::SecretKey;

/// A sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce it was sealed with.
    pub nonce: [u8; 12],
    /// Ciphertext with the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decrypt the secret {path}: wrong key, or the stored ciphertext was altered")]
pub struct OpenError {
    /// The secret's path.
    pub path: String,
}

/// Encrypts `plaintext` for the secret at `path`.
pub fn seal(key: &SecretKey, path: &str, plaintext: &[u8]) -> Sealed {
    let cipher = ChaCha20Poly1305::new(key.bytes().into());
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let payload = Payload {
        msg: plaintext,
        aad: path.as_bytes(),
    };
    // Encryption fails only for messages beyond ChaCha20's 256 GiB block counter.
    let ciphertext = cipher.encrypt(&nonce, payload).unwrap_or_default();
    Sealed {
        nonce: nonce.into(),
        ciphertext,
    }
}

/// Decrypts the secret at `path`.
pub fn open(key: &SecretKey, path: &str, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
    let cipher = ChaCha20Poly1305::new(key.bytes().into());
    let payload = Payload {
        msg: &sealed.ciphertext,
        aad: path.as_bytes(),
    };
    cipher
        .decrypt(Nonce::from_slice(&sealed.nonce), payload)
        .map_err(|_| OpenError {
            path: path.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = SecretKey::generate();
        let s = seal(&k, "/a/b", b"hunter2");
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.ciphertext.len(), 7 + 16);
        assert_eq!(open(&k, "/a/b", &s).expect("open"), b"hunter2");
    }

    #[test]
    fn wrong_key_fails() {
        let s = seal(&SecretKey::generate(), "/a", b"v");
        let e = open(&SecretKey::generate(), "/a", &s).expect_err("wrong key");
        assert!(e.to_string().contains("wrong key"), "{e}");
    }

    #[test]
    fn tampering_fails() {
        let k = SecretKey::generate();
        let s = seal(&k, "/a", b"value");
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 1;
            assert!(open(&k, "/a", &t).is_err(), "byte {i}");
        }
        let mut t = s.clone();
        t.nonce[0] ^= 1;
        assert!(open(&k, "/a", &t).is_err());
        // The path is authenticated: the same ciphertext under another path does not open.
        assert!(open(&k, "/b", &s).is_err());
    }

    #[test]
    fn nonces_are_unique() {
        let k = SecretKey::generate();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let s = seal(&k, "/a", b"same");
            assert!(seen.insert(s.nonce), "nonce repeated");
        }
        let (a, b) = (seal(&k, "/a", b"same"), seal(&k, "/a", b"same"));
        assert_ne!(a.ciphertext, b.ciphertext);
    }
}
