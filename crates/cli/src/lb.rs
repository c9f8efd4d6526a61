//! `meseta lb status`: a client of a running balancer's admin API (`GET /status`), not of the
//! master. Also the reader the canary judge (`meseta app canary --judge lb`) uses.

use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use serde_json::Value;

use crate::output;

/// Where the balancer's admin API is.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// The balancer's admin URL (its `--listen-admin`).
    #[arg(
        long = "lb",
        env = "MESETA_LB",
        default_value = "http://127.0.0.1:9090"
    )]
    pub lb: String,
}

/// `GET {lb}/status`.
pub async fn fetch_status(lb: &str) -> anyhow::Result<Value> {
    let url = format!("{}/status", lb.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building an HTTP client")?;
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the balancer at {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    resp.json()
        .await
        .with_context(|| format!("{url} answered no status JSON"))
}

/// Requests and errors the balancer counted for `version` of `app`.
pub fn version_counts(status: &Value, app: &str, version: &str) -> (u64, u64) {
    status["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["app"] == app && v["version"] == version)
        .map_or((0, 0), |v| {
            (
                v["requests"].as_u64().unwrap_or(0),
                v["errors"].as_u64().unwrap_or(0),
            )
        })
}

/// Prints the status.
pub async fn status(args: &StatusArgs, json: bool) -> anyhow::Result<i32> {
    let s = fetch_status(&args.lb).await?;
    if json {
        output::print_json(&s);
        return Ok(0);
    }
    println!("{}", render(&s));
    Ok(0)
}

/// The status as text: listeners, then one row per app port.
pub fn render(s: &Value) -> String {
    let mut t = Table::new();
    t.set_header(["APP", "PORT", "VHOSTS", "BACKENDS", "CANARY", "REQUESTS"]);
    for app in s["apps"].as_array().into_iter().flatten() {
        let backends = app["backends"].as_array().cloned().unwrap_or_default();
        let ejected = backends.iter().filter(|b| b["ejected"] == true).count();
        let requests: u64 = backends
            .iter()
            .map(|b| b["requests"].as_u64().unwrap_or(0))
            .sum();
        let vhosts: Vec<&str> = app["vhosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let canary = app["canary"]["version"].as_str().unwrap_or("-");
        t.add_row([
            output::str_field(app, "id").to_string(),
            app["servicePort"]
                .as_u64()
                .map_or("-".into(), |p| p.to_string()),
            if vhosts.is_empty() {
                "-".into()
            } else {
                vhosts.join(",")
            },
            format!("{} ({ejected} ejected)", backends.len()),
            canary.to_string(),
            requests.to_string(),
        ]);
    }
    let draining = s["draining"].as_array().map_or(0, Vec::len);
    format!(
        "http {} · admin {} · master {} · {} draining\n{t}",
        output::str_field(&s["listeners"], "http"),
        output::str_field(&s["listeners"], "admin"),
        output::str_field(&s["feed"], "master"),
        draining
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_and_rows_come_from_the_status_document() {
        let s = json!({
            "listeners": {"http": "0.0.0.0:80", "admin": "0.0.0.0:9090"},
            "feed": {"master": "http://m:5050"},
            "apps": [{"id": "/web", "servicePort": 10000, "vhosts": ["web.example.com"],
                      "canary": {"version": "v2"},
                      "backends": [{"requests": 5, "ejected": false}, {"requests": 2, "ejected": true}]}],
            "versions": [{"app": "/web", "version": "v2", "requests": 9, "errors": 4}],
            "draining": [],
        });
        assert_eq!(version_counts(&s, "/web", "v2"), (9, 4));
        assert_eq!(version_counts(&s, "/web", "v1"), (0, 0));
        let text = render(&s);
        assert!(
            text.contains("/web") && text.contains("web.example.com"),
            "{text}"
        );
        assert!(
            text.contains("2 (1 ejected)") && text.contains("| 7"),
            "{text}"
        );
    }
}
