//! `--wait`: follows a deployment until it is done, redrawing one progress line
//! when the output is a terminal and printing a plain line per change otherwise.
//!
//! A deployment is done when it disappears from `GET /v2/deployments`. Progress is computed from
//! the deployment (step n/m, current actions) and the affected apps' tasks: instances of the new
//! configuration started and healthy, and tasks of older configurations still running. On
//! timeout the apps' `/v2/queue` entries tell why instances are not launching.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::render::{array, count, current_actions, has_health_checks};
use crate::output;
use meseta_api::client::Marathon;

/// Time between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Exit code of a `--wait` that timed out.
pub const EXIT_TIMEOUT: i32 = 2;

/// Counts over the tasks of the apps a deployment touches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Target instances.
    pub target: u64,
    /// Tasks of the current configuration that reached TASK_RUNNING.
    pub started: u64,
    /// Of those, the ones that count as healthy (every check alive; running without checks).
    pub healthy: u64,
    /// Active tasks of an older configuration.
    pub old: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.target += o.target;
        self.started += o.started;
        self.healthy += o.healthy;
        self.old += o.old;
    }
}

/// Whether a task state is terminal (the task no longer holds resources).
fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_LOST"
            | "TASK_GONE"
            | "TASK_DROPPED"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// The counts of one app (an AppInfo with its `tasks`). A task belongs to the current
/// configuration when its version is not older than the app's last config change (a scale
/// change moves `version` but not `lastConfigChangeAt`, and tasks keep their launch version).
pub fn app_counts(app: &Value) -> Counts {
    let config = app
        .get("versionInfo")
        .map(|vi| output::str_field(vi, "lastConfigChangeAt"))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| output::str_field(app, "version"));
    let checks = has_health_checks(app);
    let mut c = Counts {
        target: count(app, "instances"),
        ..Counts::default()
    };
    for t in array(app, "tasks") {
        let state = output::str_field(t, "state");
        if is_terminal(state) {
            continue;
        }
        let version = output::str_field(t, "version");
        if !version.is_empty() && version < config {
            c.old += 1;
            continue;
        }
        if state == "TASK_RUNNING" {
            c.started += 1;
            let healthy = if checks {
                let r = array(t, "healthCheckResults");
                !r.is_empty()
                    && r.iter()
                        .all(|h| h.get("alive").and_then(Value::as_bool) == Some(true))
            } else {
                true
            };
            if healthy {
                c.healthy += 1;
            }
        }
    }
    c
}

/// The counts of an app that no longer exists (being stopped): its active tasks are all old.
pub fn removed_counts(app_id: &str, tasks: &[Value]) -> Counts {
    let old = tasks
        .iter()
        .filter(|t| output::str_field(t, "appId") == app_id)
        .filter(|t| !is_terminal(output::str_field(t, "state")))
        .count() as u64;
    Counts {
        old,
        ..Counts::default()
    }
}

/// One observation of a running deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The deployment id.
    pub id: String,
    /// 1-based current step (0: not started).
    pub step: u64,
    /// Number of steps.
    pub total: u64,
    /// `Action /app` of the current step.
    pub actions: Vec<String>,
    /// Summed over the affected apps.
    pub counts: Counts,
}

impl Progress {
    /// The step and action part of a `/v2/deployments` item, with `counts`.
    pub fn of(deployment: &Value, counts: Counts) -> Progress {
        Progress {
            id: output::str_field(deployment, "id").to_string(),
            step: count(deployment, "currentStep"),
            total: count(deployment, "totalSteps"),
            actions: current_actions(deployment),
            counts,
        }
    }

    /// The one-line form.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let actions = if self.actions.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.actions.join(", "))
        };
        format!(
            "deployment {} step {}/{}{actions}: {}/{} started, {}/{} healthy, {} old remaining",
            self.id, self.step, self.total, c.started, c.target, c.healthy, c.target, c.old
        )
    }
}

/// Why the app's instances are not launching, from its `/v2/queue` item.
pub fn queue_reason(item: &Value) -> String {
    let app = item
        .get("app")
        .map(|a| output::str_field(a, "id"))
        .unwrap_or_default();
    let waiting = count(item, "count");
    let mut parts = vec![format!("{app}: {waiting} instance(s) waiting to launch")];
    if let Some(d) = item.get("delay") {
        if d.get("overdue").and_then(Value::as_bool) == Some(false) {
            parts.push(format!(
                "launch backed off after failures, {}s left",
                count(d, "timeLeftSeconds")
            ));
        }
    }
    if let Some(s) = item.get("processedOffersSummary") {
        let processed = count(s, "processedOffersCount");
        let unused = count(s, "unusedOffersCount");
        let mut reasons: Vec<(u64, u64, &str)> = array(s, "rejectSummaryLastOffers")
            .iter()
            .map(|r| {
                (
                    count(r, "declined"),
                    count(r, "processed"),
                    output::str_field(r, "reason"),
                )
            })
            .filter(|(declined, _, reason)| *declined > 0 && !reason.is_empty())
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
        if processed > 0 {
            parts.push(format!("{unused} of {processed} offers unused"));
        }
        if !reasons.is_empty() {
            let list: Vec<String> = reasons
                .iter()
                .map(|(declined, processed, reason)| {
                    format!("{reason} (declined {declined} of {processed})")
                })
                .collect();
            parts.push(format!("last offers declined for: {}", list.join(", ")));
        } else if processed == 0 {
            parts.push("no offers received".to_string());
        }
    }
    parts.join("; ")
}

/// Where progress goes: one redrawn line on a terminal, else a plain line per change.
pub struct Ticker {
    tty: bool,
    stderr: bool,
    last: String,
    drawn: bool,
}

impl Ticker {
    /// Progress on stdout, or on stderr when stdout carries `--json`.
    pub fn new(json: bool) -> Ticker {
        let tty = if json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Ticker {
            tty,
            stderr: json,
            last: String::new(),
            drawn: false,
        }
    }

    fn write(&self, s: &str) {
        let r = if self.stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(s.as_bytes()).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(s.as_bytes()).and_then(|()| o.flush())
        };
        // Progress is best effort: a closed pipe must not fail the deployment.
        let _ = r;
    }

    /// Shows `line` (redrawn in place on a terminal; printed only when it changed otherwise).
    pub fn show(&mut self, line: &str) {
        if line == self.last {
            return;
        }
        if self.tty {
            self.write(&format!("\r\x1b[2K{line}"));
            self.drawn = true;
        } else {
            self.write(&format!("{line}\n"));
        }
        self.last = line.to_string();
    }

    /// Ends the redrawn line and prints `msg` on its own line.
    pub fn finish(&mut self, msg: &str) {
        if self.drawn {
            self.write("\n");
            self.drawn = false;
        }
        self.write(&format!("{msg}\n"));
    }
}

/// Polls until deployment `id` is gone (exit 0) or `timeout` passes (exit [`EXIT_TIMEOUT`],
/// after printing the queue reasons of the affected apps).
pub async fn wait_deployment(
    api: &Marathon<'_>,
    id: &str,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    let mut ticker = Ticker::new(json);
    let deadline = Instant::now() + timeout;
    let mut apps: Vec<String>;
    loop {
        let deployments = api.deployments().await?;
        let Some(d) = find_deployment(&deployments, id) else {
            ticker.finish(&format!("deployment {id} finished"));
            return Ok(0);
        };
        apps = array(d, "affectedApps")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let counts = counts_of(api, &apps).await?;
        ticker.show(&Progress::of(d, counts).line());
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    ticker.finish(&format!(
        "timed out after {} waiting for deployment {id}",
        human(timeout)
    ));
    for reason in queue_reasons(api, &apps).await? {
        eprintln!("  {reason}");
    }
    Ok(EXIT_TIMEOUT)
}

/// The `/v2/deployments` item with `id`.
pub fn find_deployment<'a>(deployments: &'a Value, id: &str) -> Option<&'a Value> {
    deployments
        .as_array()?
        .iter()
        .find(|d| output::str_field(d, "id") == id)
}

async fn counts_of(api: &Marathon<'_>, apps: &[String]) -> anyhow::Result<Counts> {
    let mut total = Counts::default();
    let mut all_tasks: Option<Vec<Value>> = None;
    for app in apps {
        match api.app_with_tasks(app).await? {
            Some(body) => total += app_counts(body.get("app").unwrap_or(&body)),
            None => {
                if all_tasks.is_none() {
                    let t = api.tasks().await?;
                    all_tasks = Some(array(&t, "tasks").to_vec());
                }
                total += removed_counts(app, all_tasks.as_deref().unwrap_or_default());
            }
        }
    }
    Ok(total)
}

/// The queue reasons of `apps` (all queued apps when `apps` is empty).
pub async fn queue_reasons(api: &Marathon<'_>, apps: &[String]) -> anyhow::Result<Vec<String>> {
    let queue = api.queue().await?;
    Ok(array(&queue, "queue")
        .iter()
        .filter(|item| {
            let id = item
                .get("app")
                .map(|a| output::str_field(a, "id"))
                .unwrap_or_default();
            apps.is_empty() || apps.iter().any(|a| a == id)
        })
        .map(queue_reason)
        .collect())
}

/// `10m`, `90s`, `1m30s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Parses `--timeout` values: `600`, `90s`, `10m`, `1h`.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (like 90s, 10m, 1h)"))?;
    if n == 0 {
        return Err("the timeout must be positive".into());
    }
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(version: &str, state: &str, alive: Option<bool>) -> Value {
        let mut t = json!({"id":"t","appId":"/web","version":version,"state":state});
        if let Some(a) = alive {
            t["healthCheckResults"] = json!([{"alive": a}]);
        }
        t
    }

    #[test]
    fn rolling_restart_counts_new_healthy_and_old() {
        let app = json!({"id":"/web","instances":3,"version":"v3",
            "versionInfo":{"lastConfigChangeAt":"v2","lastScalingAt":"v3"},
            "healthChecks":[{"protocol":"HTTP"}],
            "tasks":[task("v1","TASK_RUNNING",Some(true)), task("v1","TASK_KILLING",None),
                     task("v2","TASK_RUNNING",Some(true)), task("v2","TASK_RUNNING",Some(false)),
                     task("v2","TASK_STAGING",None), task("v2","TASK_FAILED",None),
                     task("v3","TASK_RUNNING",None)]});
        assert_eq!(
            app_counts(&app),
            Counts {
                target: 3,
                started: 3,
                healthy: 1,
                old: 2
            }
        );
    }

    #[test]
    fn without_checks_running_is_healthy() {
        let app = json!({"id":"/w","instances":2,"version":"v1",
            "tasks":[task("v1","TASK_RUNNING",None), task("v1","TASK_STARTING",None)]});
        let c = app_counts(&app);
        assert_eq!((c.started, c.healthy, c.old), (1, 1, 0));
    }

    #[test]
    fn removed_apps_count_their_active_tasks_as_old() {
        let tasks = [
            task("v1", "TASK_RUNNING", None),
            task("v1", "TASK_KILLED", None),
            json!({"appId":"/other","state":"TASK_RUNNING"}),
        ];
        assert_eq!(removed_counts("/web", &tasks).old, 1);
    }

    #[test]
    fn progress_line_names_step_actions_and_counts() {
        let d = json!({"id":"5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43","currentStep":2,"totalSteps":2,
            "currentActions":[{"action":"RestartApplication","app":"/web"}]});
        let c = Counts {
            target: 5,
            started: 3,
            healthy: 2,
            old: 4,
        };
        assert_eq!(
            Progress::of(&d, c).line(),
            "deployment 5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43 step 2/2 (RestartApplication /web): 3/5 started, \
             2/5 healthy, 4 old remaining"
        );
        let p = Progress::of(
            &json!({"id":"abc","currentStep":0,"totalSteps":1}),
            Counts::default(),
        );
        assert_eq!(
            p.line(),
            "deployment abc step 0/1: 0/0 started, 0/0 healthy, 0 old remaining"
        );
        let all = json!([{"id":"a"},{"id":"b","totalSteps":2}]);
        assert_eq!(
            find_deployment(&all, "b").map(|d| count(d, "totalSteps")),
            Some(2)
        );
        assert!(find_deployment(&all, "c").is_none());
    }

    #[test]
    fn queue_reason_explains_declined_offers_and_backoff() {
        let item = json!({"app":{"id":"/web"},"count":3,
            "delay":{"timeLeftSeconds":12,"overdue":false},
            "processedOffersSummary":{"processedOffersCount":10,"unusedOffersCount":10,
              "rejectSummaryLastOffers":[{"reason":"UnfulfilledRole","declined":0,"processed":10},
                                         {"reason":"InsufficientCpus","declined":4,"processed":10},
                                         {"reason":"InsufficientMemory","declined":6,"processed":10}]}});
        assert_eq!(
            queue_reason(&item),
            "/web: 3 instance(s) waiting to launch; launch backed off after failures, 12s left; \
             10 of 10 offers unused; last offers declined for: InsufficientMemory (declined 6 of 10), \
             InsufficientCpus (declined 4 of 10)"
        );
        let idle = json!({"app":{"id":"/w"},"count":1,"delay":{"overdue":true},
            "processedOffersSummary":{"processedOffersCount":0,"unusedOffersCount":0}});
        assert_eq!(
            queue_reason(&idle),
            "/w: 1 instance(s) waiting to launch; no offers received"
        );
    }

    #[test]
    fn timeouts_parse_with_units() {
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(5)), "5s");
    }
}
