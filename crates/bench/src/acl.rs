//! `bench services --acl` and/or `--tls`: the services benchmark twice in one run, on a plain
//! master and on one with `--acl` and/or TLS (HTTPS to the client, `wss` to the simulated
//! agents), and the ratio of placements per second (target ≥ 0.9: the token is checked once
//! per request, listings and the event stream are filtered, TLS sessions are long-lived). The ACL run uses a policy-scoped
//! token (write on every app path, read on the operator endpoints) rather than the bootstrap
//! token, so that filtering runs as it does for a team's token.

use anyhow::Context;
use meseta_api::client::MasterClient;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use crate::cluster::MasterProcess;
use crate::services::ServicesReport;
use crate::Check;

/// Target: placements per second with ACLs ÷ without (at least).
pub const TARGET_ACL_RATIO: f64 = 0.9;

/// Bootstraps ACLs on `master` (started with `--acl`) and makes its client carry a token of a
/// policy granting write on all apps and read on the operator endpoints.
pub(crate) async fn enable(master: &mut MasterProcess) -> anyhow::Result<()> {
    let policy = json!({"name": "bench", "rules": [
        {"resource": "apps", "prefix": "/", "access": "write"},
        {"resource": "operator", "prefix": "*", "access": "read"}]});
    let ca = master.ca.clone();
    let secret = scoped_token(&master.url, ca.as_deref(), &policy).await?;
    master.client = MasterClient::with_options(master.url.clone(), Some(&secret), ca.as_deref())?;
    Ok(())
}

/// Bootstraps ACLs on the master at `url` (trusting `ca` for `https`), applies `policy` and
/// returns the secret of a new token of that policy alone.
pub(crate) async fn scoped_token(
    url: &str,
    ca: Option<&std::path::Path>,
    policy: &serde_json::Value,
) -> anyhow::Result<String> {
    let client = |token: Option<&str>| MasterClient::with_options(url.to_string(), token, ca);
    let boot = client(None)?
        .call_json(Method::POST, "/api/meseta/v1/acl/bootstrap", None, &[201])
        .await
        .context("bootstrapping ACLs")?;
    let admin = client(Some(
        boot["secret"].as_str().context("no bootstrap secret")?,
    ))?;
    let name = policy["name"].as_str().context("the policy has no name")?;
    admin
        .call_json(
            Method::POST,
            "/api/meseta/v1/acl/policies",
            Some(policy),
            &[200],
        )
        .await
        .with_context(|| format!("applying the {name} policy"))?;
    let token = admin
        .call_json(
            Method::POST,
            "/api/meseta/v1/acl/tokens",
            Some(&json!({"policies": [name]})),
            &[201],
        )
        .await
        .with_context(|| format!("creating a {name} token"))?;
    Ok(token["secret"]
        .as_str()
        .context("no token secret")?
        .to_string())
}

/// The off/on comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AclComparison {
    /// What the second run turned on (`--acl`, TLS or both).
    pub secured_by: String,
    /// Without ACLs and TLS.
    pub off: ServicesReport,
    /// With them.
    pub on: ServicesReport,
    /// Placements per second on ÷ off.
    pub placement_ratio: f64,
    /// The target.
    pub checks: Vec<Check>,
    /// Whether it was met.
    pub pass: bool,
}

impl AclComparison {
    /// The two reports and the ratio against its target.
    pub fn new(secured_by: String, off: ServicesReport, on: ServicesReport) -> AclComparison {
        let ratio = if off.placements_per_s > 0.0 {
            on.placements_per_s / off.placements_per_s
        } else {
            0.0
        };
        let checks = vec![Check::at_least(
            &format!("placements/s with {secured_by} / without"),
            ratio,
            TARGET_ACL_RATIO,
        )];
        AclComparison {
            secured_by,
            off,
            on,
            placement_ratio: ratio,
            pass: checks.iter().all(|c| c.pass),
            checks,
        }
    }

    /// Text form.
    pub fn render(&self) -> String {
        [
            "== plain (no ACLs, no TLS)".to_string(),
            self.off.render(),
            String::new(),
            format!("== with {}", self.secured_by),
            self.on.render(),
            String::new(),
            format!("placements/s on / off = {:.2}", self.placement_ratio),
            Check::table(&self.checks, 2),
        ]
        .join("\n")
    }
}
