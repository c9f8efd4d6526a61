//! `meseta job add|list|show|run|kill|history|stats|enable|disable|remove|graph`: a client of the
//! master's Chronos API (`/v1/scheduler/*`). Tables by default, the raw JSON with `--json`.

use anyhow::{bail, Context};
use meseta_api::client::{Chronos, ClientError, MasterClient};
use serde_json::Value;

use crate::output;

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
    let api = &client.chronos();
    match cmd {
        JobCmd::Add { file } => add(api, &file, json).await,
        JobCmd::List => list(api, json).await,
        JobCmd::Show { name } => {
            output::print_json(&api.job(&name).await?);
            Ok(0)
        }
        JobCmd::Run { name } => done(api.start_job(&name).await, &name, "started", json),
        JobCmd::Kill { name } => done(api.kill_job_runs(&name).await, &name, "killed", json),
        JobCmd::Enable { name } => done(api.enable_job(&name).await, &name, "enabled", json),
        JobCmd::Disable { name } => done(api.disable_job(&name).await, &name, "disabled", json),
        JobCmd::Remove { name } => done(api.delete_job(&name).await, &name, "removed", json),
        JobCmd::History { name } => history(api, &name, json).await,
        JobCmd::Stats { name } => stats(api, &name, json).await,
        JobCmd::Graph { dot } => {
            print!("{}", api.graph(dot).await?);
            Ok(0)
        }
    }
}

/// Prints what a body-less action did to job `name`.
fn done(
    result: Result<(), ClientError>,
    name: &str,
    what: &str,
    json: bool,
) -> anyhow::Result<i32> {
    result?;
    if json {
        output::print_json(&serde_json::json!({"job": name, "result": what}));
    } else {
        println!("job {name} {what}");
    }
    Ok(0)
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

async fn add(api: &Chronos<'_>, file: &str, json: bool) -> anyhow::Result<i32> {
    let input = crate::input::read_input(file)?;
    let jobs = jobs_of(&input)?;
    for j in &jobs {
        api.add_job(j).await?;
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

async fn list(api: &Chronos<'_>, json: bool) -> anyhow::Result<i32> {
    if json {
        output::print_json(&api.jobs().await?);
        return Ok(0);
    }
    let summary = api.summary().await?;
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

async fn history(api: &Chronos<'_>, name: &str, json: bool) -> anyhow::Result<i32> {
    let stat = api.job_stats(name).await?;
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

async fn stats(api: &Chronos<'_>, name: &str, json: bool) -> anyhow::Result<i32> {
    let stat = api.job_stats(name).await?;
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
