//! A CA and certificates for a dev/test cluster (`meseta tls ca --out DIR`,
//! `meseta tls cert --ca DIR --name NAME ...`). The CA directory holds `ca.pem` and `ca.key`
//! (0600); a certificate is written as `NAME.pem` and `NAME.key` (0600) beside them or in `out`.
//! The CA's subject is fixed, so signing only needs its key: no certificate parsing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::TlsError;

const CA_NAME: &str = "meseta dev CA";

/// Validity of generated certificates.
const VALID_DAYS: i64 = 825;

/// File names inside a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca.key";

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "meseta");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(VALID_DAYS * 4);
    p
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Create a CA in `dir` (created if missing); returns the path of its certificate.
pub fn make_ca(dir: &Path) -> Result<PathBuf, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    let cert_path = dir.join(CA_CERT);
    write(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

/// What a certificate is for.
#[derive(Clone, Debug, Default)]
pub struct CertRequest {
    /// Common name and file stem.
    pub name: String,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// Also usable as a client certificate (agents under mutual TLS).
    pub client: bool,
}

/// Sign a certificate for `req` with the CA in `ca_dir`, writing `NAME.pem`/`NAME.key` into
/// `out`; returns (certificate, key) paths.
pub fn make_cert(
    ca_dir: &Path,
    req: &CertRequest,
    out: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let ca_key_path = ca_dir.join(CA_KEY);
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).map_err(|source| TlsError::Io {
        path: ca_key_path.clone(),
        source,
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.as_str());
    p.distinguished_name = dn;
    for ip in &req.ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for d in &req.dns {
        p.subject_alt_names
            .push(SanType::DnsName(d.as_str().try_into()?));
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if req.client {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(VALID_DAYS);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).map_err(|source| TlsError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let cert_path = out.join(format!("{}.pem", req.name));
    let key_path = out.join(format!("{}.key", req.name));
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_make_valid_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = make_ca(dir.path()).expect("ca");
        let req = CertRequest {
            name: "server".into(),
            ips: vec!["127.0.0.1".parse().expect("ip")],
            dns: vec!["localhost".into()],
            client: true,
        };
        let (cert, key) = make_cert(dir.path(), &req, dir.path()).expect("cert");
        let server = crate::ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        };
        crate::server_config(&server).expect("server config");
        crate::client_config(&ca, Some((&cert, &key))).expect("client config");
        // A key that is not the certificate's is refused.
        let other = make_cert(
            dir.path(),
            &CertRequest {
                name: "other".into(),
                ..req
            },
            dir.path(),
        )
        .expect("other");
        let mismatched = crate::ServerTls {
            cert,
            key: other.1,
            client_ca: None,
        };
        assert!(crate::server_config(&mismatched).is_err());
    }
}
