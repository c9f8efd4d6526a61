//! Tables and text of `meseta app` and `meseta deploy`, rendered from the Marathon JSON the
//! master returns (`/v2/apps`, `/v2/apps/{id}`, `/v2/deployments`, the canary status).

use serde_json::Value;

use crate::output;

/// The items of an array field, or nothing.
pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A non-negative integer field, 0 when absent.
pub fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn number(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_f64)
        .map(output::num)
        .unwrap_or_default()
}

/// Whether the app defines health checks.
pub fn has_health_checks(app: &Value) -> bool {
    !array(app, "healthChecks").is_empty()
}

/// The `app list` table from `GET /v2/apps`:
/// ID, INSTANCES (running/target), HEALTHY, CPUS, MEM, VERSION, DEPLOYING.
pub fn render_apps(apps: &Value) -> String {
    let rows: Vec<Vec<String>> = array(apps, "apps")
        .iter()
        .map(|a| {
            let healthy = if has_health_checks(a) {
                count(a, "tasksHealthy").to_string()
            } else {
                "-".to_string()
            };
            let deploying = if array(a, "deployments").is_empty() {
                "n"
            } else {
                "y"
            };
            vec![
                output::str_field(a, "id").to_string(),
                format!("{}/{}", count(a, "tasksRunning"), count(a, "instances")),
                healthy,
                number(a, "cpus"),
                number(a, "mem"),
                output::str_field(a, "version").to_string(),
                deploying.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "INSTANCES",
            "HEALTHY",
            "CPUS",
            "MEM",
            "VERSION",
            "DEPLOYING",
        ],
        &rows,
    )
}

/// The health of one task: `healthy`, `unhealthy`, or `-` without check results.
pub fn task_health(task: &Value) -> &'static str {
    let results = array(task, "healthCheckResults");
    if results.is_empty() {
        "-"
    } else if results
        .iter()
        .all(|r| r.get("alive").and_then(Value::as_bool) == Some(true))
    {
        "healthy"
    } else {
        "unhealthy"
    }
}

/// The `app show` text from `GET /v2/apps/{id}` (`{"app": AppInfo}`): a summary, then the tasks.
pub fn render_app(body: &Value) -> String {
    let app = body.get("app").unwrap_or(body);
    let what = match output::str_field(app, "cmd") {
        "" => array(app, "args")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        cmd => cmd.to_string(),
    };
    let healthy = if has_health_checks(app) {
        format!(
            ", {} healthy, {} unhealthy",
            count(app, "tasksHealthy"),
            count(app, "tasksUnhealthy")
        )
    } else {
        String::new()
    };
    let deployments: Vec<&str> = array(app, "deployments")
        .iter()
        .map(|d| output::str_field(d, "id"))
        .collect();
    let mut lines = vec![
        format!("id:           {}", output::str_field(app, "id")),
        format!("command:      {what}"),
        format!(
            "instances:    {}/{} running, {} staged{healthy}",
            count(app, "tasksRunning"),
            count(app, "instances"),
            count(app, "tasksStaged"),
        ),
        format!(
            "resources:    cpus {}  mem {}  disk {}",
            number(app, "cpus"),
            number(app, "mem"),
            number(app, "disk")
        ),
        format!("version:      {}", output::str_field(app, "version")),
    ];
    if let Some(vi) = app.get("versionInfo") {
        lines.push(format!(
            "last change:  config {}  scaling {}",
            output::str_field(vi, "lastConfigChangeAt"),
            output::str_field(vi, "lastScalingAt")
        ));
    }
    if !deployments.is_empty() {
        lines.push(format!("deployments:  {}", deployments.join(", ")));
    }
    if let Some(f) = app.get("lastTaskFailure").filter(|f| f.is_object()) {
        lines.push(format!(
            "last failure: {} {} on {} at {}: {}",
            output::str_field(f, "taskId"),
            output::str_field(f, "state"),
            output::str_field(f, "host"),
            output::str_field(f, "timestamp"),
            output::str_field(f, "message")
        ));
    }
    lines.push(String::new());
    lines.push(render_tasks(array(app, "tasks")));
    lines.join("\n")
}

/// The tasks table: ID, HOST, STATE, HEALTH, VERSION, STARTED.
pub fn render_tasks(tasks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let ports: Vec<String> = array(t, "ports").iter().map(Value::to_string).collect();
            let host = match (output::str_field(t, "host"), ports.is_empty()) {
                (h, true) => h.to_string(),
                (h, false) => format!("{h}:{}", ports.join(",")),
            };
            vec![
                output::str_field(t, "id").to_string(),
                host,
                output::str_field(t, "state").to_string(),
                task_health(t).to_string(),
                output::str_field(t, "version").to_string(),
                output::str_field(t, "startedAt").to_string(),
            ]
        })
        .collect();
    output::table(
        &["TASK", "HOST", "STATE", "HEALTH", "VERSION", "STARTED"],
        &rows,
    )
}

/// The versions of an app, newest first (timestamps of one format sort as text).
pub fn sorted_versions(versions: &Value) -> Vec<String> {
    let mut v: Vec<String> = array(versions, "versions")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

/// The `app versions` table; the current version is marked.
pub fn render_versions(versions: &[String], current: &str) -> String {
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let mark = if v == current { "*" } else { "" };
            vec![v.clone(), mark.to_string()]
        })
        .collect();
    output::table(&["VERSION", "CURRENT"], &rows)
}

/// The version `rollback` returns to without `--to`: the newest one older than `current`.
pub fn previous_version<'a>(versions: &'a [String], current: &str) -> Option<&'a str> {
    versions
        .iter()
        .filter(|v| v.as_str() < current)
        .max()
        .map(String::as_str)
}

/// `Action /app` for each of a deployment's current actions.
pub fn current_actions(deployment: &Value) -> Vec<String> {
    array(deployment, "currentActions")
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                output::str_field(a, "action"),
                output::str_field(a, "app")
            )
        })
        .collect()
}

/// The `deploy list` table from `GET /v2/deployments`: ID, APPS, ACTIONS, STEP n/m, VERSION.
pub fn render_deployments(deployments: &Value) -> String {
    let items = deployments
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            let apps: Vec<&str> = array(d, "affectedApps")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                output::str_field(d, "id").to_string(),
                apps.join(","),
                current_actions(d).join(", "),
                format!("{}/{}", count(d, "currentStep"), count(d, "totalSteps")),
                output::str_field(d, "version").to_string(),
            ]
        })
        .collect();
    output::table(&["ID", "APPS", "ACTIONS", "STEP", "VERSION"], &rows)
}

/// The `app canary status` text from `GET /v2/apps/{id}/canary`.
pub fn render_canary(c: &Value) -> String {
    [
        format!("app:      {}", output::str_field(c, "appId")),
        format!("state:    {}", output::str_field(c, "state")),
        format!(
            "canaries: {} running, {} healthy of {}",
            count(c, "running"),
            count(c, "healthy"),
            count(c, "instances")
        ),
        format!("canary:   {}", output::str_field(c, "canaryVersion")),
        format!("stable:   {}", output::str_field(c, "stableVersion")),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(table: &str, n: usize) -> Vec<&str> {
        table
            .lines()
            .nth(n)
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default()
    }

    #[test]
    fn app_list_shows_counts_health_and_deploying() {
        let apps = json!({"apps":[
            {"id":"/web","instances":5,"tasksRunning":3,"tasksHealthy":2,"cpus":0.5,"mem":128.0,
             "version":"2021-07-27T20:40:33.123Z","healthChecks":[{"protocol":"HTTP"}],
             "deployments":[{"id":"d1"}]},
            {"id":"/batch/worker","instances":2,"tasksRunning":2,"tasksHealthy":0,"cpus":1,"mem":16,
             "version":"2021-07-27T20:40:34.000Z","deployments":[]}]});
        let t = render_apps(&apps);
        assert_eq!(
            row(&t, 0),
            [
                "ID",
                "INSTANCES",
                "HEALTHY",
                "CPUS",
                "MEM",
                "VERSION",
                "DEPLOYING"
            ]
        );
        assert_eq!(
            row(&t, 1),
            [
                "/web",
                "3/5",
                "2",
                "0.5",
                "128",
                "2021-07-27T20:40:33.123Z",
                "y"
            ]
        );
        assert_eq!(
            row(&t, 2),
            [
                "/batch/worker",
                "2/2",
                "-",
                "1",
                "16",
                "2021-07-27T20:40:34.000Z",
                "n"
            ]
        );
        assert_eq!(render_apps(&json!({"apps":[]})).lines().count(), 1);
    }

    #[test]
    fn app_show_has_summary_and_tasks() {
        let body = json!({"app":{"id":"/web","cmd":"python3 -m http.server","instances":2,
            "tasksRunning":1,"tasksStaged":1,"cpus":0.1,"mem":32,"disk":0,"version":"v2",
            "versionInfo":{"lastConfigChangeAt":"v1","lastScalingAt":"v2"},
            "deployments":[{"id":"d9"}],
            "lastTaskFailure":{"taskId":"web.old","state":"TASK_FAILED","host":"h","timestamp":"t","message":"exit 1"},
            "tasks":[{"id":"web.instance-1._app.1","host":"h1","ports":[31001],"state":"TASK_RUNNING",
                      "version":"v1","startedAt":"s1","healthCheckResults":[{"alive":true}]},
                     {"id":"web.instance-2._app.1","host":"h2","state":"TASK_STAGING","version":"v1"}]}});
        let t = render_app(&body);
        assert!(t.contains("instances:    1/2 running, 1 staged\n"), "{t}");
        assert!(t.contains("deployments:  d9"), "{t}");
        assert!(t.contains("TASK_FAILED on h at t: exit 1"), "{t}");
        let task_rows: Vec<&str> = t.lines().skip_while(|l| !l.starts_with("TASK")).collect();
        assert_eq!(task_rows.len(), 3, "{t}");
        assert!(task_rows[1].contains("h1:31001") && task_rows[1].contains("healthy"));
        assert!(task_rows[2].contains("TASK_STAGING") && task_rows[2].contains(" - "));
    }

    #[test]
    fn task_health_needs_every_check_alive() {
        assert_eq!(task_health(&json!({})), "-");
        assert_eq!(
            task_health(&json!({"healthCheckResults":[{"alive":true},{"alive":false}]})),
            "unhealthy"
        );
        assert_eq!(
            task_health(&json!({"healthCheckResults":[{"alive":true}]})),
            "healthy"
        );
    }

    #[test]
    fn versions_sort_newest_first_and_rollback_picks_the_previous() {
        let v = sorted_versions(&json!({"versions":[
            "2021-01-02T00:00:00.000Z","2021-01-03T00:00:00.000Z","2021-01-01T00:00:00.000Z"]}));
        assert_eq!(v[0], "2021-01-03T00:00:00.000Z");
        assert_eq!(
            previous_version(&v, "2021-01-03T00:00:00.000Z"),
            Some("2021-01-02T00:00:00.000Z")
        );
        assert_eq!(previous_version(&v, "2021-01-01T00:00:00.000Z"), None);
        let t = render_versions(&v, "2021-01-02T00:00:00.000Z");
        assert_eq!(row(&t, 2), ["2021-01-02T00:00:00.000Z", "*"]);
        assert_eq!(row(&t, 1), ["2021-01-03T00:00:00.000Z"]);
    }

    #[test]
    fn deployments_table_shows_step_and_actions() {
        let d = json!([{"id":"97c1","version":"2015-09-30T09:09:17.614Z","affectedApps":["/foo","/bar"],
            "steps":[{"actions":[]},{"actions":[]}],
            "currentActions":[{"action":"ScaleApplication","app":"/foo"},{"action":"RestartApplication","app":"/bar"}],
            "currentStep":2,"totalSteps":3}]);
        let t = render_deployments(&d);
        let line = t.lines().nth(1).unwrap_or_default();
        assert!(line.starts_with("97c1  /foo,/bar  "), "{t}");
        assert!(
            line.contains("ScaleApplication /foo, RestartApplication /bar"),
            "{t}"
        );
        assert_eq!(row(&t, 1)[6..], ["2/3", "2015-09-30T09:09:17.614Z"], "{t}");
    }

    #[test]
    fn canary_status_is_readable() {
        let c = json!({"appId":"/web","state":"holding","canaryVersion":"v2","stableVersion":"v1",
                       "instances":2,"healthy":1,"running":2});
        let t = render_canary(&c);
        assert!(t.contains("state:    holding"), "{t}");
        assert!(t.contains("canaries: 2 running, 1 healthy of 2"), "{t}");
    }
}
