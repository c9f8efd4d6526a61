//! Secrets without an external vault: values encrypted with ChaCha20-Poly1305 under a key kept
//! outside the store (`--secrets-key-file` or `MESETA_SECRETS_KEY`), stored as ciphertext,
//! nonce and version under [`PREFIX`], and resolved by the master only into the launch message
//! it sends an agent.
//!
//! ```text
//!  PUT /api/meseta/v1/secrets/team-a/db ─▶ seal(key, aad = path, random nonce)
//!        ─▶ /meseta/secrets/team-a/db = {version, nonce, ciphertext, key_id, created, updated}
//!  launch ─▶ Secrets::resolve(path) (from the watched cache, decrypted on demand) ─▶ agent
//! ```
//!
//! [`SecretKey`] and [`seal`]/[`open`] are pure; [`Secrets`] is the store-backed registry.
#![forbid(unsafe_code)]

mod key;
mod registry;
mod seal;

pub use key::{KeyError, SecretKey, KEY_ENV};
pub use meseta_api::secret_path::{validate_path, PathError};
pub use registry::{Meta, Record, SecretError, Secrets, PREFIX};
pub use seal::{open, seal, OpenError, Sealed};
