//! A small HTTP/1.1 `GET` client (hyper over plain TCP or rustls with the ring provider), used by
//! HTTP(S) health checks and the fetcher.
//!
//! ```text
//!  get(uri, Tls::Insecure) ── health checks: self-signed certificates are fine
//!  get(uri, Tls::Verify)   ── fetcher: verified against the system's root certificates
//! ```
//!
//! The agent owns its TLS configuration instead of enabling a TLS backend in the workspace's
//! `reqwest` (which would make every other `reqwest::Client` of the binary need a process-wide
//! crypto provider).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// How the server certificate of an `https` URI is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Against the system's root certificates.
    Verify,
    /// Not at all (health checks of tasks with self-signed certificates).
    Insecure,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The URI is not an absolute `http`/`https` URI with a host.
    #[error("invalid URI {0:?}")]
    InvalidUri(String),
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TLS handshake or configuration failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    /// Too many redirects, or a redirect without a usable `Location`.
    #[error("bad redirect: {0}")]
    Redirect(String),
}

/// The parts of an absolute URI a request needs.
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn target(uri: &Uri) -> Result<Target, HttpError> {
    let invalid = || HttpError::InvalidUri(uri.to_string());
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(invalid()),
    };
    let authority = uri.authority().ok_or_else(invalid)?;
    if authority.as_str().contains('@') {
        return Err(invalid());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(invalid());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Target {
        https,
        host,
        port,
        authority: authority.as_str().to_string(),
        path,
    })
}

/// One `GET` (no redirects followed). The connection lives as long as the response body.
pub(crate) async fn get(uri: &Uri, tls: Tls) -> Result<Response<Incoming>, HttpError> {
    let t = target(uri)?;
    let addr = format!("{}:{}", t.host, t.port);
    let tcp = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|source| HttpError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let req = Request::get(t.path.as_str())
        .header(hyper::header::HOST, t.authority.as_str())
        .header(hyper::header::USER_AGENT, "meseta-agent")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    if t.https {
        let config = tls_config(tls)?;
        let name = ServerName::try_from(t.host.clone())
            .map_err(|e| HttpError::Tls(format!("invalid server name {:?}: {e}", t.host)))?;
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<I>(io: I, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http connection ended with an error");
        }
    });
    Ok(sender.send_request(req).await?)
}

/// `GET` following up to `max_redirects` redirects (301, 302, 303, 307, 308).
pub(crate) async fn get_following(
    uri: &Uri,
    tls: Tls,
    max_redirects: usize,
) -> Result<Response<Incoming>, HttpError> {
    let mut uri = uri.clone();
    for _ in 0..=max_redirects {
        let resp = get(&uri, tls).await?;
        if !resp.status().is_redirection() || resp.status().as_u16() == 304 {
            return Ok(resp);
        }
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| HttpError::Redirect(format!("{} without Location", resp.status())))?;
        uri = resolve(&uri, location)?;
    }
    Err(HttpError::Redirect(format!(
        "more than {max_redirects} redirects"
    )))
}

/// `location` relative to `base` (absolute URIs and absolute paths).
fn resolve(base: &Uri, location: &str) -> Result<Uri, HttpError> {
    let bad = || HttpError::Redirect(format!("unsupported Location {location:?}"));
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().map_err(|_| bad());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let scheme = base.scheme_str().ok_or_else(bad)?;
        let authority = base.authority().ok_or_else(bad)?;
        return format!("{scheme}://{authority}{location}")
            .parse()
            .map_err(|_| bad());
    }
    Err(bad())
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(ring::default_provider())))
}

/// The TLS client configuration of `mode` (built once per mode).
pub(crate) fn tls_config(mode: Tls) -> Result<Arc<ClientConfig>, HttpError> {
    static VERIFY: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static INSECURE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let cell = match mode {
        Tls::Verify => &VERIFY,
        Tls::Insecure => &INSECURE,
    };
    if let Some(c) = cell.get() {
        return Ok(Arc::clone(c));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    let mut config = match mode {
        Tls::Verify => {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(error = %e, "cannot load some system root certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::clone(cell.get_or_init(|| Arc::new(config))))
}

/// Accepts every server certificate (health checks only).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_uris() {
        let t = target(&"http://127.0.0.1:31001/health?x=1".parse().expect("uri")).expect("t");
        assert!(!t.https);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 31001));
        assert_eq!(t.path, "/health?x=1");
        let t = target(&"https://[::1]/".parse().expect("uri")).expect("t");
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert!(target(&"ftp://h/x".parse().expect("uri")).is_err());
        assert!(target(&"/relative".parse().expect("uri")).is_err());
        assert!(target(&"http://u:p@h/x".parse().expect("uri")).is_err());
    }

    #[test]
    fn redirect_locations() {
        let base: Uri = "http://h:81/a/b".parse().expect("uri");
        assert_eq!(
            resolve(&base, "/c").expect("abs path").to_string(),
            "http://h:81/c"
        );
        assert_eq!(
            resolve(&base, "https://x/y").expect("abs").to_string(),
            "https://x/y"
        );
        assert!(resolve(&base, "c").is_err());
        assert!(resolve(&base, "//evil/x").is_err());
    }

    /// A TLS server with a fresh self-signed certificate for 127.0.0.1 answering 204 once per
    /// connection; returns its port.
    async fn self_signed_server(dir: &std::path::Path) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl: {out:?}");
        let cert = CertificateDer::from_pem_file(&cert).expect("cert");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reply =
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            }
        });
        port
    }

    #[tokio::test]
    async fn https_accepts_a_self_signed_certificate_only_when_insecure() {
        let dir = tempfile::tempdir().expect("tmp");
        let port = self_signed_server(dir.path()).await;
        let uri: Uri = format!("https://127.0.0.1:{port}/health")
            .parse()
            .expect("uri");
        let resp = get(&uri, Tls::Insecure).await.expect("insecure get");
        assert_eq!(resp.status().as_u16(), 204);
        let err = get(&uri, Tls::Verify).await.expect_err("unknown issuer");
        assert!(matches!(err, HttpError::Tls(_)), "{err}");
    }

    #[test]
    fn both_tls_configs_build() {
        assert!(tls_config(Tls::Insecure).is_ok());
        assert!(tls_config(Tls::Verify).is_ok());
    }
}
