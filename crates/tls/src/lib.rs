//! TLS for meseta: PEM files → rustls configurations (ring provider, no process-wide default),
//! a TLS [`listener::TlsListener`] that axum serves like a TCP listener and that tells handlers
//! whether the peer presented a client certificate the configured CA signed, and [`dev`] to make a
//! CA and certificates for a dev/test cluster (`meseta tls ca|cert`).
//!
//! ```text
//!  --tls-cert/--tls-key [--tls-client-ca] ─► server_config ─► TlsListener ─► axum::serve
//!  --ca-cert / MESETA_CA_CERT             ─► client_config ─► reqwest / WebSocket connector
//! ```

pub mod dev;
pub mod listener;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use tokio_rustls;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA file.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing or reading generated files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What a server listener needs: its certificate chain and key, and optionally the CA whose
/// client certificates it verifies (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates (`--tls-client-ca`).
    pub client_ca: Option<PathBuf>,
}

/// The ring provider: set explicitly on every config so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |why: String| TlsError::Pem {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// The roots of a CA file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A server configuration (HTTP/1.1). With a client CA, client certificates are requested and
/// verified when presented but not required by the handshake: which routes need one (agent
/// registration) is decided per request from [`listener::PeerInfo::client_cert`].
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client configuration trusting `ca` (or the bundled roots of nothing when `None`: only
/// useful with a CA), presenting `identity` (certificate, key) when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// A client configuration for plain-HTTP peers: it trusts nothing, so it is never used for a
/// handshake, and making it costs nothing. Clients that only speak `http://` take it so that
/// their HTTP library does not load the platform's root certificates (and start a crypto
/// provider) at every start, which is slow where files are slow to read, as in small VMs.
pub fn plain_client_config() -> Arc<ClientConfig> {
    static PLAIN: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    PLAIN
        .get_or_init(|| {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| {
                    ClientConfig::builder_with_provider(provider())
                        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                        .expect("rustls' default versions with its own ring provider")
                });
            Arc::new(
                builder
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// The client-side TLS settings every meseta client takes (`--ca-cert`, and for agents the
/// certificate they present to a master with `--tls-client-ca`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA file trusted for `https`/`wss` (`--ca-cert` / `MESETA_CA_CERT`).
    pub ca: Option<PathBuf>,
    /// Client certificate and key presented to the server (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// The rustls configuration, or `None` when no CA is set (plain HTTP, or the platform's
    /// defaults where a client has them).
    pub fn config(&self) -> Result<Option<Arc<ClientConfig>>, TlsError> {
        let Some(ca) = &self.ca else { return Ok(None) };
        let identity = self
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        Ok(Some(Arc::new(client_config(ca, identity)?)))
    }
}
