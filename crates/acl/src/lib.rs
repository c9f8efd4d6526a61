//! Access control: tokens, policies, and the decision whether a token may do something.
//!
//! Pure (no I/O, no clock, no randomness): the master's HTTP edge (`meseta-access`) loads
//! [`Token`]s and [`Policy`]s from the store, maps each request to an [`Access`] on a
//! [`Resource`] with [`route::classify`], and asks [`Grants::allows`]. Secrets are never
//! stored: a token keeps the SHA-256 of its secret ([`hash_secret`]) and an accessor id that
//! is safe to show and to name in audit entries.
//!
//! ```text
//!  request ──classify──▶ Need ──Grants::allows──▶ Ok | Denied{missing}
//!                                    ▲
//!             token (by secret hash) + its policies' rules
//! ```
#![forbid(unsafe_code)]

pub mod guard;
pub mod policy;
pub mod route;

pub use policy::{Access, Denied, Grants, Kind, Policy, PolicyError, Resource, Rule, Token};

use sha2::{Digest, Sha256};

/// The hex SHA-256 of a token secret: what the store keeps instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The secret a request presents: `Authorization: Bearer <t>`, Marathon clients'
/// `Authorization: token=<t>`, or HTTP basic auth (`principal`, `secret`) as Mesos frameworks
/// send it. `None` when the header is absent or not one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bare token secret.
    Token(String),
    /// A framework principal and its secret.
    Basic {
        /// The principal (user name of basic auth).
        principal: String,
        /// The secret (password of basic auth).
        secret: String,
    },
}

/// Parses an `Authorization` header value (see [`Credential`]).
pub fn parse_authorization(
    value: &str,
    decode_base64: impl Fn(&str) -> Option<Vec<u8>>,
) -> Option<Credential> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Some(Credential::Token(rest.to_string()));
    }
    if let Some(t) = value.strip_prefix("token=") {
        let t = t.trim().trim_matches('"');
        return (!t.is_empty()).then(|| Credential::Token(t.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = decode_base64(rest)?;
        let text = String::from_utf8(raw).ok()?;
        let (principal, secret) = text.split_once(':')?;
        return Some(Credential::Basic {
            principal: principal.to_string(),
            secret: secret.to_string(),
        });
    }
    None
}

/// The cookie a browser signs in to the web UI with (`/ui/login`): it carries a token's
/// secret and stands for `Authorization: Bearer <secret>` on a request without that header.
pub const TOKEN_COOKIE: &str = "meseta_token";

/// The token secret of the [`TOKEN_COOKIE`] pair in a `Cookie` header value, if any.
pub fn cookie_token(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim() == TOKEN_COOKIE && !value.is_empty()).then_some(value)
    })
}

/// The `Authorization` value a request without that header presents through its `Cookie`
/// headers: `Bearer <secret>` of the [`TOKEN_COOKIE`], if any.
pub fn cookie_bearer<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let secret = cookie_headers.into_iter().find_map(cookie_token)?;
    Some(format!("Bearer {secret}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_cookie_is_found_among_others() {
        assert_eq!(
            cookie_token("a=1; meseta_token=s3cret; b=2"),
            Some("s3cret")
        );
        assert_eq!(cookie_token("meseta_token=\"q\""), Some("q"));
        assert_eq!(cookie_token("meseta_token=; x=y"), None);
        assert_eq!(cookie_token("other_meseta_token=z"), None);
        assert_eq!(cookie_token(""), None);
        assert_eq!(
            cookie_bearer(["a=1", "b=2; meseta_token=s3cret"]).as_deref(),
            Some("Bearer s3cret")
        );
        assert_eq!(cookie_bearer(["a=1"]), None);
    }

    #[test]
    fn bearer_token_and_basic_headers_parse() {
        let no_b64 = |_: &str| None;
        assert_eq!(
            parse_authorization("Bearer abc", no_b64),
            Some(Credential::Token("abc".into()))
        );
        assert_eq!(
            parse_authorization("token=abc", no_b64),
            Some(Credential::Token("abc".into()))
        );
        let b64 = |s: &str| (s == "cDpz").then(|| b"p:s".to_vec());
        assert_eq!(
            parse_authorization("Basic cDpz", b64),
            Some(Credential::Basic {
                principal: "p".into(),
                secret: "s".into()
            })
        );
        assert_eq!(parse_authorization("Bearer ", no_b64), None);
        assert_eq!(parse_authorization("Digest x", no_b64), None);
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
