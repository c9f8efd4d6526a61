//! `meseta role list` and `meseta quota get|set|remove`: roles with their weights, quota and
//! allocation (`/master/roles`), and quota through the v1 operator API (`UPDATE_QUOTA`).

use anyhow::{bail, Context};
use meseta_api::client::MasterClient;
use meseta_types::Resources;
use serde_json::{json, Value};

use crate::output;

/// `meseta role ...`
#[derive(clap::Subcommand, Debug)]
pub enum RoleCmd {
    /// List roles: weight, quota guarantee/limit, allocated cpus and mem, frameworks.
    List,
}

/// `meseta quota ...`
#[derive(clap::Subcommand, Debug)]
pub enum QuotaCmd {
    /// Show every role's quota.
    Get,
    /// Set a role's quota, e.g. `meseta quota set prod --guarantee 'cpus:4;mem:8192' --limit 'cpus:8'`.
    Set {
        /// Role.
        role: String,
        /// Guaranteed scalars (`cpus:4;mem:8192`).
        #[arg(long)]
        guarantee: Option<String>,
        /// Limits (`cpus:8`).
        #[arg(long)]
        limit: Option<String>,
        /// Allow limits below what the role already consumes.
        #[arg(long)]
        force: bool,
    },
    /// Remove a role's quota.
    Remove {
        /// Role.
        role: String,
    },
}

/// Runs a role subcommand; returns the exit code.
pub async fn run_role(cmd: RoleCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        RoleCmd::List => {
            let v = client
                .get_path("/master/roles")
                .await
                .context("cannot list roles")?;
            let roles = v["roles"].as_array().cloned().unwrap_or_default();
            if json {
                output::print_json(&Value::Array(roles));
            } else {
                println!("{}", render_roles(&roles));
            }
            Ok(0)
        }
    }
}

/// Runs a quota subcommand; returns the exit code.
pub async fn run_quota(cmd: QuotaCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        QuotaCmd::Get => {
            let v = client
                .get_path("/master/quota")
                .await
                .context("cannot read quota")?;
            let configs = v["configs"].as_array().cloned().unwrap_or_default();
            if json {
                output::print_json(&Value::Array(configs));
            } else {
                println!("{}", render_quota(&configs));
            }
            Ok(0)
        }
        QuotaCmd::Set {
            role,
            guarantee,
            limit,
            force,
        } => {
            let config = quota_config(&role, guarantee.as_deref(), limit.as_deref())?;
            let call = json!({"type": "UPDATE_QUOTA", "update_quota": {"force": force, "quota_configs": [config]}});
            client
                .operator_call(&call)
                .await
                .with_context(|| format!("cannot set the quota of {role}"))?;
            println!("quota of {role} set");
            Ok(0)
        }
        QuotaCmd::Remove { role } => {
            client
                .delete_path(&format!("/master/quota/{role}"))
                .await
                .with_context(|| format!("cannot remove the quota of {role}"))?;
            println!("quota of {role} removed");
            Ok(0)
        }
    }
}

/// A v1 `QuotaConfig` from the CLI's resource strings (scalars only).
pub fn quota_config(
    role: &str,
    guarantee: Option<&str>,
    limit: Option<&str>,
) -> anyhow::Result<Value> {
    if guarantee.is_none() && limit.is_none() {
        bail!("give --guarantee and/or --limit");
    }
    let scalars = |s: Option<&str>, what: &str| -> anyhow::Result<Value> {
        let mut out = serde_json::Map::new();
        if let Some(s) = s {
            let r = Resources::parse(s).with_context(|| format!("invalid --{what} '{s}'"))?;
            for e in r.iter() {
                match &e.value {
                    meseta_types::Value::Scalar(x) => {
                        out.insert(e.name.to_string(), json!({"value": x.as_f64()}));
                    }
                    _ => bail!("--{what}: quota takes scalars only, not '{}'", e.name),
                }
            }
        }
        Ok(Value::Object(out))
    };
    Ok(
        json!({"role": role, "guarantees": scalars(guarantee, "guarantee")?, "limits": scalars(limit, "limit")?}),
    )
}

fn scalar_list(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return String::new();
    };
    m.iter()
        .map(|(k, x)| {
            format!(
                "{k}:{}",
                output::num(x.as_f64().or_else(|| x["value"].as_f64()).unwrap_or(0.0))
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// ROLE, WEIGHT, GUARANTEE, LIMIT, CPUS, MEM, FRAMEWORKS.
pub fn render_roles(roles: &[Value]) -> String {
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            vec![
                output::str_field(r, "name").to_string(),
                output::num(r["weight"].as_f64().unwrap_or(1.0)),
                scalar_list(&r["quota"]["guarantee"]),
                scalar_list(&r["quota"]["limit"]),
                output::num(r["allocated"]["cpus"].as_f64().unwrap_or(0.0)),
                output::num(r["allocated"]["mem"].as_f64().unwrap_or(0.0)),
                r["frameworks"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0)
                    .to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "ROLE",
            "WEIGHT",
            "GUARANTEE",
            "LIMIT",
            "CPUS",
            "MEM",
            "FRAMEWORKS",
        ],
        &rows,
    )
}

/// ROLE, GUARANTEES, LIMITS.
pub fn render_quota(configs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                output::str_field(c, "role").to_string(),
                scalar_list(&c["guarantees"]),
                scalar_list(&c["limits"]),
            ]
        })
        .collect();
    output::table(&["ROLE", "GUARANTEES", "LIMITS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_config_takes_scalars_only() {
        let c = quota_config("prod", Some("cpus:4;mem:8192"), Some("cpus:8")).expect("valid");
        assert_eq!(c["guarantees"]["cpus"]["value"], 4.0);
        assert_eq!(c["limits"]["cpus"]["value"], 8.0);
        assert!(quota_config("prod", Some("ports:[1-2]"), None).is_err());
        assert!(quota_config("prod", Some("cpus:-1"), None).is_err());
        assert!(quota_config("prod", None, None).is_err());
    }

    #[test]
    fn tables_show_weights_and_quota() {
        let roles = vec![
            json!({"name": "prod", "weight": 2.5, "quota": {"guarantee": {"cpus": 4.0}, "limit": {}},
                                "allocated": {"cpus": 1.0, "mem": 128.0}, "frameworks": ["f1"]}),
        ];
        let t = render_roles(&roles);
        assert!(
            t.contains("prod") && t.contains("2.5") && t.contains("cpus:4"),
            "{t}"
        );
        let q = render_quota(&[
            json!({"role": "prod", "guarantees": {"cpus": {"value": 4.0}}, "limits": {}}),
        ]);
        assert!(q.contains("cpus:4"), "{q}");
    }
}
