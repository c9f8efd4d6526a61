//! `meseta job add|list|show|run|kill|history|stats|enable|disable|remove|graph`: a client of the
//! master's Chronos API (`/v1/scheduler/*`). Tables by default, the raw JSON with `--json`.

use anyhow::{bail, Context};
use meseta_api::client::MasterClient;
use serde_json::Value;

use crate::output;

/// The API prefix the CLI uses (Chronos 3 paths).
const PREFIX: &str = "/v1/scheduler";

/// `meseta job ...`
#[derive(clap::Subcommand, Debug)]
pub enum JobCmd {
    /// Create or replace jobs from Chronos job JSON (one object or an array; `-` reads stdin).
    Add {
        /// The JSON file, or `-`.
        file: String,
    },
    /// List jobs with their last outcome and state.
    List,
    /// Print one job's JSON.
    Show {
        /// The job name.
        name: String,
    },
    /// Start a run now.
    Run {
        /// The job name.
        name: String,
    },
    /// Kill the job's active runs.
    Kill {
        /// The job name.
        name: String,
    },
    /// The job's recent runs (newest first).
    History {
        /// The job name.
        name: String,
    },
    /// Run-duration percentiles.
    Stats {
        /// The job name.
        name: String,
    },
    /// Schedule the job again.
    Enable {
        /// The job name.
        name: String,
    },
    /// Stop scheduling the job (runs in progress continue).
    Disable {
        /// The job name.
        name: String,
    },
    /// Delete the job.
    Remove {
        /// The job name.
        name: String,
    },
    /// The dependency graph as CSV (or Graphviz DOT with --dot).
    Graph {
        /// Print Graphviz DOT.
        #[arg(long)]
        dot: bool,
    },
}

/// Runs a job subcommand; returns the exit code.
pub async fn run(cmd: JobCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let api = Api::new(client.base_url())?;
    match cmd {
        JobCmd::Add { file } => add(&api, &file, json).await,
        JobCmd::List => list(&api, json).await,
        JobCmd::Show { name } => {
            let v = api.get(&format!("/job/{}", enc(&name))).await?;
            output::print_json(&v);
            Ok(0)
        }
        JobCmd::Run { name } => {
            api.act(reqwest::Method::PUT, "/job/", &name, "started", json)
                .await
        }
        JobCmd::Kill { name } => {
            api.act(
                reqwest::Method::DELETE,
                "/task/kill/",
                &name,
                "killed",
                json,
            )
            .await
        }
        JobCmd::Enable { name } => {
            api.act(reqwest::Method::PUT, "/job/enable/", &name, "enabled", json)
                .await
        }
        JobCmd::Disable { name } => {
            api.act(
                reqwest::Method::PUT,
                "/job/disable/",
                &name,
                "disabled",
                json,
            )
            .await
        }
        JobCmd::Remove { name } => {
            api.act(reqwest::Method::DELETE, "/job/", &name, "removed", json)
                .await
        }
        JobCmd::History { name } => history(&api, &name, json).await,
        JobCmd::Stats { name } => stats(&api, &name, json).await,
        JobCmd::Graph { dot } => {
            let path = if dot { "/graph/dot" } else { "/graph/csv" };
            print!("{}", api.text(path).await?);
            Ok(0)
        }
    }
}

/// Percent-encode a job name for a path segment (names are `[\w.-]+`, so this is defensive).
fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Api {
            base: format!("{}{PREFIX}", base.trim_end_matches('/')),
            http,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the master ({what})"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{what}: {} ({status})",
                meseta_api::client::error_message(&body)
            );
        }
        Ok(body)
    }

    async fn text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &format!("GET {path}")).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let body = self.text(path).await?;
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path}: the master sent invalid JSON"))
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &format!("POST {path}"))
            .await
            .map(|_| ())
    }

    /// A body-less action on one job; prints what happened.
    async fn act(
        &self,
        method: reqwest::Method,
        path: &str,
        name: &str,
        done: &str,
        json: bool,
    ) -> anyhow::Result<i32> {
        let p = format!("{path}{}", enc(name));
        let url = format!("{}{p}", self.base);
        self.send(
            self.http.request(method.clone(), &url),
            &format!("{method} {p}"),
        )
        .await?;
        if json {
            output::print_json(&serde_json::json!({"job": name, "result": done}));
        } else {
            println!("job {name} {done}");
        }
        Ok(0)
    }
}

/// The jobs in an `add` input: one object or an array of them.
pub fn jobs_of(input: &str) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(input).context("the job file is not valid JSON")?;
    let jobs = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => bail!("the job file must hold a job object or an array of them"),
    };
    for j in &jobs {
        if j.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            bail!("every job needs a \"name\"");
        }
    }
    Ok(jobs)
}

/// The endpoint a job is posted to: `dependency` when it has parents.
pub fn endpoint_of(job: &Value) -> &'static str {
    let has_parents = job
        .get("parents")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if has_parents {
        "/dependency"
    } else {
        "/iso8601"
    }
}

async fn add(api: &Api, file: &str, json: bool) -> anyhow::Result<i32> {
    let input = crate::app::api::read_input(file)?;
    let jobs = jobs_of(&input)?;
    for j in &jobs {
        api.post(endpoint_of(j), j).await?;
        let name = output::str_field(j, "name");
        if !json {
            println!("job {name} added");
        }
    }
    if json {
        let names: Vec<&str> = jobs.iter().map(|j| output::str_field(j, "name")).collect();
        output::print_json(&serde_json::json!({"added": names}));
    }
    Ok(0)
}

async fn list(api: &Api, json: bool) -> anyhow::Result<i32> {
    if json {
        output::print_json(&api.get("/jobs").await?);
        return Ok(0);
    }
    let summary = api.get("/jobs/summary").await?;
    println!("{}", render_summary(&summary));
    Ok(0)
}

/// The `job list` table from `/jobs/summary`.
pub fn render_summary(summary: &Value) -> String {
    let rows: Vec<Vec<String>> = array(summary, "jobs")
        .iter()
        .map(|j| {
            let parents: Vec<&str> = array(j, "parents")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                output::str_field(j, "name").to_string(),
                output::str_field(j, "status").to_string(),
                output::str_field(j, "state").to_string(),
                output::str_field(j, "schedule").to_string(),
                parents.join(","),
                j.get("disabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "STATUS", "STATE", "SCHEDULE", "PARENTS", "DISABLED"],
        &rows,
    )
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

async fn history(api: &Api, name: &str, json: bool) -> anyhow::Result<i32> {
    let stat = api.get(&format!("/job/stat/{}", enc(name))).await?;
    if json {
        output::print_json(stat.get("taskStatHistory").unwrap_or(&Value::Null));
    } else {
        println!("{}", render_history(&stat));
    }
    Ok(0)
}

/// The `job history` table from `job/stat`.
pub fn render_history(stat: &Value) -> String {
    let rows: Vec<Vec<String>> = array(stat, "taskStatHistory")
        .iter()
        .map(|r| {
            let exit = r
                .get("exitCode")
                .and_then(Value::as_i64)
                .map(|c| c.to_string())
                .unwrap_or_default();
            vec![
                output::str_field(r, "taskId").to_string(),
                output::str_field(r, "status").to_string(),
                output::str_field(r, "scheduledFor").to_string(),
                output::str_field(r, "startTime").to_string(),
                output::str_field(r, "duration").to_string(),
                exit,
            ]
        })
        .collect();
    output::table(
        &["RUN", "STATUS", "SCHEDULED", "STARTED", "DURATION", "EXIT"],
        &rows,
    )
}

async fn stats(api: &Api, name: &str, json: bool) -> anyhow::Result<i32> {
    let stat = api.get(&format!("/job/stat/{}", enc(name))).await?;
    let h = stat.get("histogram").cloned().unwrap_or(Value::Null);
    if json {
        output::print_json(&h);
        return Ok(0);
    }
    println!("{}", render_stats(&h));
    Ok(0)
}

/// The `job stats` table: run-duration percentiles in milliseconds.
pub fn render_stats(h: &Value) -> String {
    let keys = [
        "count",
        "median",
        "75thPercentile",
        "95thPercentile",
        "98thPercentile",
        "99thPercentile",
        "mean",
    ];
    let row: Vec<String> = keys
        .iter()
        .map(|k| {
            h.get(*k)
                .and_then(Value::as_f64)
                .map(output::num)
                .unwrap_or_default()
        })
        .collect();
    output::table(
        &["RUNS", "P50 (ms)", "P75", "P95", "P98", "P99", "MEAN"],
        &[row],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_accepts_an_object_or_an_array_and_needs_names() {
        assert_eq!(
            jobs_of(r#"{"name":"a","command":"true"}"#)
                .expect("one")
                .len(),
            1
        );
        assert_eq!(
            jobs_of(r#"[{"name":"a"},{"name":"b"}]"#)
                .expect("two")
                .len(),
            2
        );
        assert!(jobs_of(r#"{"command":"true"}"#).is_err());
        assert!(jobs_of("3").is_err());
        assert!(jobs_of("{").is_err());
    }

    #[test]
    fn jobs_with_parents_go_to_dependency() {
        assert_eq!(
            endpoint_of(&json!({"name":"c","parents":["a"]})),
            "/dependency"
        );
        assert_eq!(
            endpoint_of(&json!({"name":"c","schedule":"R//PT1S"})),
            "/iso8601"
        );
        assert_eq!(endpoint_of(&json!({"name":"c","parents":[]})), "/iso8601");
    }

    #[test]
    fn names_are_path_safe() {
        assert_eq!(enc("etl.daily-1_x"), "etl.daily-1_x");
        assert_eq!(enc("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn tables_show_the_summary_history_and_stats() {
        let s = json!({"jobs":[{"name":"a","status":"success","state":"idle","schedule":"R/2030-01-01T00:00:00.000Z/PT1S","parents":[],"disabled":false},
                               {"name":"c","status":"fresh","state":"idle","schedule":"","parents":["a","b"],"disabled":true}]});
        let t = render_summary(&s);
        assert!(
            t.lines()
                .nth(2)
                .is_some_and(|l| l.contains("a,b") && l.contains("true")),
            "{t}"
        );
        let h = json!({"taskStatHistory":[{"taskId":"ct:1:0:a:","status":"failure","exitCode":7,"duration":"1s"}]});
        let t = render_history(&h);
        assert!(
            t.lines()
                .nth(1)
                .is_some_and(|l| l.contains("ct:1:0:a:") && l.ends_with('7')),
            "{t}"
        );
        let t = render_stats(&json!({"count":3,"median":1200.5,"99thPercentile":2000}));
        assert!(t.contains("1200.5") && t.contains("2000"), "{t}");
    }
}
