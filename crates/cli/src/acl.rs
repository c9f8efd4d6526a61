//! `meseta acl bootstrap | token create|list|revoke | policy apply|list|delete` and
//! `meseta audit`: clients of the master's `/api/meseta/v1/acl/*` and `/api/meseta/v1/audit`.

use anyhow::Context;
use meseta_api::client::MasterClient;
use reqwest::Method;
use serde_json::{json, Value};

use crate::output;

/// `meseta acl ...`
#[derive(clap::Subcommand, Debug)]
pub enum AclCmd {
    /// Create the first, global admin token (once per cluster); prints its secret.
    Bootstrap,
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// `meseta acl token ...`
#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token carrying policies; prints its secret (shown only once).
    Create {
        /// A policy name (repeat for several).
        #[arg(long = "policy", required = true)]
        policies: Vec<String>,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// The framework principal it authenticates (HTTP basic auth: principal + secret).
        #[arg(long)]
        principal: Option<String>,
        /// Expire after this many seconds.
        #[arg(long)]
        ttl: Option<f64>,
    },
    /// List tokens (accessors, never secrets).
    List,
    /// Revoke a token by its accessor.
    Revoke {
        /// The token's accessor.
        accessor: String,
    },
}

/// `meseta acl policy ...`
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create or replace the policy in a JSON file (`-` for stdin).
    Apply {
        /// The file.
        file: String,
    },
    /// List policies and their rules.
    List,
    /// Delete a policy.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Flags of `meseta audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// How many of the newest entries.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

const ACL: &str = "/api/meseta/v1/acl";

/// Runs an acl subcommand; returns the exit code.
pub async fn run(cmd: AclCmd, c: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        AclCmd::Bootstrap => {
            let v = c
                .call_json(Method::POST, &format!("{ACL}/bootstrap"), None, &[201])
                .await
                .context("cannot bootstrap ACLs")?;
            print_secret(&v, json);
        }
        AclCmd::Token(t) => token(t, c, json).await?,
        AclCmd::Policy(p) => policy(p, c, json).await?,
    }
    Ok(0)
}

async fn token(cmd: TokenCmd, c: &MasterClient, json: bool) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            policies,
            description,
            principal,
            ttl,
        } => {
            let body = json!({"policies": policies, "description": description,
                              "principal": principal, "ttlSeconds": ttl});
            let v = c
                .call_json(Method::POST, &format!("{ACL}/tokens"), Some(&body), &[201])
                .await
                .context("cannot create the token")?;
            print_secret(&v, json);
        }
        TokenCmd::List => {
            let v = c
                .call_json(Method::GET, &format!("{ACL}/tokens"), None, &[200])
                .await
                .context("cannot list tokens")?;
            if json {
                output::print_json(&v);
            } else {
                println!(
                    "{}",
                    render_tokens(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
                );
            }
        }
        TokenCmd::Revoke { accessor } => {
            let path = format!("{ACL}/tokens/{}", urlencode(&accessor));
            let v = c
                .call_json(Method::DELETE, &path, None, &[200])
                .await
                .with_context(|| format!("cannot revoke token {accessor}"))?;
            if json {
                output::print_json(&v);
            } else {
                println!("revoked {accessor}");
            }
        }
    }
    Ok(())
}

async fn policy(cmd: PolicyCmd, c: &MasterClient, json: bool) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Apply { file } => {
            let v = crate::input::read_json(&file)?;
            let out = c
                .call_json(Method::POST, &format!("{ACL}/policies"), Some(&v), &[200])
                .await
                .with_context(|| format!("cannot apply the policy in {file}"))?;
            if json {
                output::print_json(&out);
            } else {
                println!("applied policy {}", output::str_field(&out, "name"));
            }
        }
        PolicyCmd::List => {
            let v = c
                .call_json(Method::GET, &format!("{ACL}/policies"), None, &[200])
                .await
                .context("cannot list policies")?;
            if json {
                output::print_json(&v);
            } else {
                println!(
                    "{}",
                    render_policies(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
                );
            }
        }
        PolicyCmd::Delete { name } => {
            let path = format!("{ACL}/policies/{}", urlencode(&name));
            c.call_json(Method::DELETE, &path, None, &[200])
                .await
                .with_context(|| format!("cannot delete policy {name}"))?;
            if !json {
                println!("deleted policy {name}");
            }
        }
    }
    Ok(())
}

/// `meseta audit`.
pub async fn audit(a: AuditArgs, c: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let v = c
        .call_json(
            Method::GET,
            &format!("/api/meseta/v1/audit?limit={}", a.limit),
            None,
            &[200],
        )
        .await
        .context("cannot read the audit log")?;
    if json {
        output::print_json(&v);
    } else {
        println!(
            "{}",
            render_audit(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
        );
    }
    Ok(0)
}

fn print_secret(v: &Value, json: bool) {
    if json {
        output::print_json(v);
    } else {
        println!("accessor: {}", output::str_field(v, "accessor"));
        println!("secret:   {}", output::str_field(v, "secret"));
        println!("(the secret is shown only now; pass it as --token or MESETA_TOKEN)");
    }
}

fn strings(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The token table.
pub fn render_tokens(tokens: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                output::str_field(t, "accessor").to_string(),
                if t["management"].as_bool() == Some(true) {
                    "admin (all)".into()
                } else {
                    strings(&t["policies"])
                },
                output::str_field(t, "principal").to_string(),
                output::str_field(t, "description").to_string(),
            ]
        })
        .collect();
    output::table(&["ACCESSOR", "POLICIES", "PRINCIPAL", "DESCRIPTION"], &rows)
}

/// The policy table: one row per rule.
pub fn render_policies(policies: &[Value]) -> String {
    let mut rows = Vec::new();
    for p in policies {
        for r in p["rules"].as_array().into_iter().flatten() {
            rows.push(vec![
                output::str_field(p, "name").to_string(),
                output::str_field(r, "resource").to_string(),
                output::str_field(r, "prefix").to_string(),
                output::str_field(r, "access").to_string(),
            ]);
        }
    }
    output::table(&["POLICY", "RESOURCE", "PREFIX", "ACCESS"], &rows)
}

/// The audit table.
pub fn render_audit(entries: &[Value]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e["seq"].as_u64().unwrap_or(0).to_string(),
                output::num(e["time"].as_f64().unwrap_or(0.0)),
                output::str_field(e, "accessor").to_string(),
                output::str_field(e, "method").to_string(),
                output::str_field(e, "path").to_string(),
                e["status"].as_u64().unwrap_or(0).to_string(),
                output::str_field(e, "denied").to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "SEQ", "TIME", "ACCESSOR", "METHOD", "PATH", "STATUS", "DENIED",
        ],
        &rows,
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_accessors_rules_and_denials() {
        let t = render_tokens(&[
            json!({"accessor": "acc-1", "policies": ["a", "b"], "management": false}),
        ]);
        assert!(t.contains("acc-1") && t.contains("a,b"), "{t}");
        let p = render_policies(&[json!({"name": "team-a", "rules": [
            {"resource": "apps", "prefix": "/team-a/", "access": "write"}]})]);
        assert!(p.contains("/team-a/") && p.contains("write"), "{p}");
        let a = render_audit(&[
            json!({"seq": 3, "time": 1.0, "accessor": "x", "method": "DELETE",
            "path": "/v2/groups", "status": 409, "denied": "root"}),
        ]);
        assert!(a.contains("409") && a.contains("/v2/groups"), "{a}");
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
