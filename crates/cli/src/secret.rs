//! `meseta secret put PATH (--value-file F | stdin) | list | remove PATH`: a client of the
//! master's `/api/meseta/v1/secrets`. Values go in and never come back out.

use std::io::Read;

use anyhow::Context;
use meseta_api::client::MasterClient;
use reqwest::Method;
use serde_json::{json, Value};

use crate::output;

/// `meseta secret ...`
#[derive(clap::Subcommand, Debug)]
pub enum SecretCmd {
    /// Create or replace the secret at PATH (`/team-a/db/password`); the value comes from
    /// `--value-file` or, without it, from stdin (a single trailing newline is dropped).
    Put {
        /// The secret's path.
        path: String,
        /// A file holding the value.
        #[arg(long)]
        value_file: Option<std::path::PathBuf>,
    },
    /// List secrets: paths, versions and times, never values.
    List,
    /// Delete the secret at PATH.
    Remove {
        /// The secret's path.
        path: String,
    },
}

const SECRETS: &str = "/api/meseta/v1/secrets";

/// `/api/meseta/v1/secrets/team-a/db` for `/team-a/db` (segments checked by the master).
fn url(path: &str) -> String {
    format!("{SECRETS}/{}", path.trim_start_matches('/'))
}

fn read_value(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut v = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the value file {}", f.display()))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the value from stdin")?;
            s
        }
    };
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    Ok(v)
}

/// Runs a secret subcommand; returns the exit code.
pub async fn run(cmd: SecretCmd, c: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        SecretCmd::Put { path, value_file } => {
            let value = read_value(value_file.as_deref())?;
            let out = c
                .call_json(
                    Method::PUT,
                    &url(&path),
                    Some(&json!({ "value": value })),
                    &[200, 201],
                )
                .await
                .with_context(|| format!("cannot store the secret {path}"))?;
            if json {
                output::print_json(&out);
            } else {
                println!(
                    "stored {path} (version {})",
                    out.get("version").and_then(Value::as_u64).unwrap_or(0)
                );
            }
        }
        SecretCmd::List => {
            let v = c
                .call_json(Method::GET, SECRETS, None, &[200])
                .await
                .context("cannot list secrets")?;
            if json {
                output::print_json(&v);
            } else {
                println!("{}", render(&v));
            }
        }
        SecretCmd::Remove { path } => {
            c.call_json(Method::DELETE, &url(&path), None, &[204])
                .await
                .with_context(|| format!("cannot remove the secret {path}"))?;
            if !json {
                println!("removed {path}");
            }
        }
    }
    Ok(0)
}

fn render(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .get("secrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                output::str_field(s, "id").to_string(),
                s.get("version")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .to_string(),
                output::num(s.get("updated").and_then(Value::as_f64).unwrap_or(0.0)),
            ]
        })
        .collect();
    output::table(&["PATH", "VERSION", "UPDATED"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_listing() {
        assert_eq!(url("/team-a/db"), "/api/meseta/v1/secrets/team-a/db");
        let t = render(&json!({"secrets": [{"id": "/a/b", "version": 2, "updated": 1.5}]}));
        assert!(t.contains("/a/b") && t.contains('2'), "{t}");
    }
}
