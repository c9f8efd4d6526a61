//! The 32-byte key: base64 in a file or in `MESETA_SECRETS_KEY`, never printed (its `Debug`
//! shows only the fingerprint).

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::Digest;

/// The environment variable a master reads the key from when no key file is given.
pub const KEY_ENV: &str = "MESETA_SECRETS_KEY";

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read the secrets key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The key file could not be written.
    #[error("cannot write the secrets key file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The text is not base64 of exactly 32 bytes.
    #[error("the secrets key from {from} must be the base64 of 32 bytes ({why})")]
    Malformed {
        /// Where it came from (a file path or the variable's name).
        from: String,
        /// What is wrong.
        why: String,
    },
}

/// A 256-bit ChaCha20-Poly1305 key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.fingerprint())
    }
}

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SecretKey {
        SecretKey(ChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From base64 text (surrounding whitespace ignored); `from` names the source in errors.
    pub fn from_base64(text: &str, from: &str) -> Result<SecretKey, KeyError> {
        let malformed = |why: String| KeyError::Malformed {
            from: from.to_string(),
            why,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| malformed(e.to_string()))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("got {} bytes", raw.len())))?;
        Ok(SecretKey(bytes))
    }

    /// The key as base64 text (what key files hold).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SecretKey::from_base64(&text, &path.display().to_string())
    }

    /// The key of `file` if given, else of the `MESETA_SECRETS_KEY` value `env`, else none.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Option<SecretKey>, KeyError> {
        match (file, env.filter(|e| !e.trim().is_empty())) {
            (Some(f), _) => SecretKey::read(f).map(Some),
            (None, Some(text)) => SecretKey::from_base64(text, KEY_ENV).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The key in `path`, created there (mode 0600, a new random key) when the file is absent.
    pub fn read_or_create(path: &Path) -> Result<SecretKey, KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if path.exists() {
            return SecretKey::read(path);
        }
        let key = SecretKey::generate();
        let write = |source| KeyError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        f.write_all(format!("{}\n", key.to_base64()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(write)?;
        Ok(key)
    }

    /// A short public name of the key (16 hex digits of its SHA-256), stored with each secret
    /// so that a master with another key says so instead of failing obscurely.
    pub fn fingerprint(&self) -> String {
        let d = sha2::Sha256::digest(self.0);
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_bad_lengths() {
        let k = SecretKey::generate();
        let back = SecretKey::from_base64(&format!(" {}\n", k.to_base64()), "t").expect("parse");
        assert_eq!(back.bytes(), k.bytes());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let e = SecretKey::from_base64(&short, "X")
            .expect_err("short")
            .to_string();
        assert!(e.contains("32 bytes") && e.contains("got 16"), "{e}");
        assert!(SecretKey::from_base64("not base64!", "X").is_err());
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("secrets.key");
        let k = SecretKey::read_or_create(&p).expect("create");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SecretKey::read_or_create(&p).expect("read");
        assert_eq!(again.bytes(), k.bytes());
        let env = SecretKey::load(None, Some(&k.to_base64()))
            .expect("env")
            .expect("some");
        assert_eq!(env.bytes(), k.bytes());
        assert!(SecretKey::load(None, Some("  ")).expect("none").is_none());
    }
}
