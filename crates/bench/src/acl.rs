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
    let ca = master.ca.clone();
    let client =
        |token: Option<&str>| MasterClient::with_options(master.url.clone(), token, ca.as_deref());
    let anon = client(None)?;
    let boot = anon
        .call_json(Method::POST, "/api/meseta/v1/acl/bootstrap", None, &[201])
        .await
        .context("bootstrapping ACLs")?;
    let admin_secret = boot["secret"].as_str().context("no bootstrap secret")?;
    let admin = client(Some(admin_secret))?;
    let policy = json!({"name": "bench", "rules": [
        {"resource": "apps", "prefix": "/", "access": "write"},
        {"resource": "operator", "prefix": "*", "access": "read"}]});
    admin
        .call_json(
            Method::POST,
            "/api/meseta/v1/acl/policies",
            Some(&policy),
            &[200],
        )
        .await
        .context("applying the bench policy")?;
    let token = admin
        .call_json(
            Method::POST,
            "/api/meseta/v1/acl/tokens",
            Some(&json!({"policies": ["bench"]})),
            &[201],
        )
        .await
        .context("creating the bench token")?;
    let secret = token["secret"].as_str().context("no token secret")?;
    master.client = client(Some(secret))?;
    Ok(())
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
