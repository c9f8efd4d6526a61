//! TLS flags of `meseta master|agent|dev` and the `meseta tls ca|cert` verbs that make a CA and
//! certificates for a dev/test cluster (see the meseta-tls crate).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

/// Server-side TLS and agent admission flags (`meseta master`, `meseta dev`).
#[derive(clap::Args, Debug, Default)]
pub struct ServerTlsArgs {
    /// Serve HTTPS (and `wss` for agents) with this PEM certificate chain (needs `--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS for agents: an agent registers only with a client certificate this PEM CA
    /// signed (other clients need none).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Agents must present the token in this file to register.
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The master's TLS settings.
    pub fn server_tls(&self) -> Option<meseta_tls::ServerTls> {
        Some(meseta_tls::ServerTls {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The join token, read from its file.
    pub fn join_token(&self) -> anyhow::Result<Option<String>> {
        self.join_token_file.as_deref().map(read_token).transpose()
    }
}

/// Agent-side flags: the certificate presented to a master with mutual TLS, and the join token.
#[derive(clap::Args, Debug, Default)]
pub struct AgentTlsArgs {
    /// Client certificate (PEM) presented to a master with `--tls-client-ca` (needs `--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The token the master asks of agents (`meseta master --join-token-file`).
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
}

/// Reads a join token: the file's first line, which must not be empty.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the join token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "the join token file {} is empty",
        path.display()
    );
    Ok(token)
}

/// `meseta tls`.
#[derive(clap::Subcommand, Debug)]
pub enum TlsCmd {
    /// Create a CA (`ca.pem`, `ca.key`) in DIR.
    Ca {
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a certificate signed by the CA of `--ca` (`NAME.pem`, `NAME.key`).
    Cert {
        /// The CA directory (`meseta tls ca --out DIR`).
        #[arg(long)]
        ca: PathBuf,
        /// Common name and file stem.
        #[arg(long)]
        name: String,
        /// IP addresses the certificate is valid for (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// DNS names the certificate is valid for (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Also a client certificate (agents under mutual TLS).
        #[arg(long)]
        client: bool,
        /// Directory to write to (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `meseta tls ...`.
pub fn run(cmd: TlsCmd) -> anyhow::Result<i32> {
    match cmd {
        TlsCmd::Ca { out } => {
            let cert = meseta_tls::dev::make_ca(&out)?;
            println!("CA certificate: {}", cert.display());
        }
        TlsCmd::Cert {
            ca,
            name,
            ip,
            dns,
            client,
            out,
        } => {
            anyhow::ensure!(
                !name.is_empty() && !name.contains(['/', '\0']) && name != "ca",
                "--name must be a plain file stem other than \"ca\", got {name:?}"
            );
            anyhow::ensure!(
                !ip.is_empty() || !dns.is_empty(),
                "give at least one --ip or --dns"
            );
            let req = meseta_tls::dev::CertRequest {
                name,
                ips: ip,
                dns,
                client,
            };
            let out = out.unwrap_or_else(|| ca.clone());
            let (cert, key) = meseta_tls::dev::make_cert(&ca, &req, &out)?;
            println!("certificate: {}\nkey: {}", cert.display(), key.display());
        }
    }
    Ok(0)
}
