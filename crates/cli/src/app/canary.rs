//! `--wait` for canaries: polls `GET /v2/apps/{id}/canary` until the canaries are up
//! (`holding`), or with automatic promotion until the canary was promoted (then follows the
//! promotion's rolling deployment) or rolled back.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::progress::{human, queue_reasons, wait_deployment, Ticker, EXIT_TIMEOUT, POLL_INTERVAL};
use super::render::{array, count};
use crate::output;
use meseta_api::client::marathon::absolute_id;
use meseta_api::client::Marathon;

/// What a canary wait ends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryGoal {
    /// Until the canaries are up (`holding`), or the canary ended.
    Up,
    /// Until the canary was promoted or rolled back (auto-promotion).
    Settled,
}

/// Whether a canary in `state` satisfies `goal`: `Some(exit code)` when the wait is over.
pub fn canary_done(state: &str, goal: CanaryGoal) -> Option<i32> {
    match (state, goal) {
        ("rolledBack", _) => Some(1),
        ("promoted", _) => Some(0),
        ("holding", CanaryGoal::Up) => Some(0),
        _ => None,
    }
}

/// The one-line progress of a canary status.
pub fn canary_line(c: &Value) -> String {
    format!(
        "canary {} {}: {}/{} running, {}/{} healthy",
        output::str_field(c, "appId"),
        output::str_field(c, "state"),
        count(c, "running"),
        count(c, "instances"),
        count(c, "healthy"),
        count(c, "instances")
    )
}

/// Polls `GET /v2/apps/{id}/canary` until `goal` is reached.
pub async fn wait_canary(
    api: &Marathon<'_>,
    app: &str,
    goal: CanaryGoal,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    let mut ticker = Ticker::new(json);
    let deadline = Instant::now() + timeout;
    let mut last_state = String::new();
    loop {
        let Some(c) = api.canary(app).await? else {
            ticker.finish(&format!("app {app} has no canary any more"));
            return Ok(if last_state == "promoting" { 0 } else { 1 });
        };
        last_state = output::str_field(&c, "state").to_string();
        ticker.show(&canary_line(&c));
        if let Some(code) = canary_done(&last_state, goal) {
            ticker.finish(&format!("canary of {app} {last_state}"));
            if code != 0 || goal != CanaryGoal::Settled {
                return Ok(code);
            }
            // Promoted: the rest of the instances roll to the canary version.
            return wait_app_deployments(api, app, deadline, json).await;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    ticker.finish(&format!(
        "timed out after {} waiting for the canary of {app} ({last_state})",
        human(timeout)
    ));
    for reason in queue_reasons(api, &[absolute_id(app)]).await? {
        eprintln!("  {reason}");
    }
    Ok(EXIT_TIMEOUT)
}

/// Waits for every deployment the app has now, until `deadline`.
async fn wait_app_deployments(
    api: &Marathon<'_>,
    app: &str,
    deadline: Instant,
    json: bool,
) -> anyhow::Result<i32> {
    let Some(body) = api.find_app(app).await? else {
        return Ok(0);
    };
    let ids: Vec<String> = array(body.get("app").unwrap_or(&body), "deployments")
        .iter()
        .map(|d| output::str_field(d, "id").to_string())
        .filter(|id| !id.is_empty())
        .collect();
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let code = wait_deployment(api, &id, left.max(POLL_INTERVAL), json).await?;
        if code != 0 {
            return Ok(code);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canary_goals() {
        assert_eq!(canary_done("deploying", CanaryGoal::Up), None);
        assert_eq!(canary_done("holding", CanaryGoal::Up), Some(0));
        assert_eq!(canary_done("holding", CanaryGoal::Settled), None);
        assert_eq!(canary_done("promoting", CanaryGoal::Settled), None);
        assert_eq!(canary_done("promoted", CanaryGoal::Settled), Some(0));
        assert_eq!(canary_done("rolledBack", CanaryGoal::Up), Some(1));
        let c = json!({"appId":"/web","state":"deploying","instances":2,"running":1,"healthy":0});
        assert_eq!(
            canary_line(&c),
            "canary /web deploying: 1/2 running, 0/2 healthy"
        );
    }
}
