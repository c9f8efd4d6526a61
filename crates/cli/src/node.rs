//! `meseta node list`: the agents registered with the master (`/master/slaves`), with their used
//! and total resources and how many active tasks each runs (from `/master/state`).

use crate::output;
use anyhow::Context;
use meseta_api::client::MasterClient;
use serde_json::Value;
use std::collections::HashMap;

/// `meseta node ...`
#[derive(clap::Subcommand, Debug)]
pub enum NodeCmd {
    /// List agents.
    List,
    /// Schedule maintenance of a machine (inverse offers to its frameworks); `--down` kills its tasks.
    Drain(crate::maintenance::DrainArgs),
    /// Bring a machine that is down back up (and out of the schedule).
    Up {
        /// The machine's host name.
        host: String,
    },
    /// The maintenance schedule and status.
    Maintenance,
}

/// Runs a node subcommand; returns the exit code.
pub async fn run(cmd: NodeCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        NodeCmd::List => list(client, json).await,
        NodeCmd::Drain(a) => crate::maintenance::drain(a, client, json).await,
        NodeCmd::Up { host } => crate::maintenance::up(&host, client, json).await,
        NodeCmd::Maintenance => crate::maintenance::show(client, json).await,
    }
}

async fn list(client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let slaves = client
        .slaves()
        .await
        .context("cannot list the master's agents")?;
    // Task counts are a nicety: a failing /master/state only blanks the column.
    let counts = client.state().await.ok().map(|s| task_counts(&s));
    let agents = slaves
        .get("slaves")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if json {
        output::print_json(&Value::Array(with_task_counts(agents, counts.as_ref())));
    } else {
        println!("{}", render_nodes(&agents, counts.as_ref()));
    }
    Ok(0)
}

/// Active tasks per agent id, from `/master/state`.
pub fn task_counts(state: &Value) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for t in crate::task::collect_tasks(state, false) {
        *counts
            .entry(output::str_field(t, "slave_id").to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn with_task_counts(agents: Vec<Value>, counts: Option<&HashMap<String, usize>>) -> Vec<Value> {
    let Some(counts) = counts else { return agents };
    agents
        .into_iter()
        .map(|mut a| {
            let n = counts
                .get(output::str_field(&a, "id"))
                .copied()
                .unwrap_or(0);
            if let Some(obj) = a.as_object_mut() {
                obj.insert("tasks".into(), Value::from(n));
            }
            a
        })
        .collect()
}

/// The `node list` table.
pub fn render_nodes(agents: &[Value], counts: Option<&HashMap<String, usize>>) -> String {
    let null = Value::Null;
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let id = output::str_field(a, "id");
            let used = a.get("used_resources").unwrap_or(&null);
            let total = a.get("resources").unwrap_or(&null);
            let active = a.get("active").and_then(Value::as_bool).unwrap_or(false);
            let tasks = counts.map_or_else(
                || "-".to_string(),
                |c| c.get(id).copied().unwrap_or(0).to_string(),
            );
            vec![
                id.to_string(),
                output::str_field(a, "hostname").to_string(),
                active.to_string(),
                output::used_of_total(used, total, "cpus"),
                output::used_of_total(used, total, "mem"),
                tasks,
            ]
        })
        .collect();
    output::table(&["ID", "HOSTNAME", "ACTIVE", "CPUS", "MEM", "TASKS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agents() -> Vec<Value> {
        vec![
            json!({"id":"m-S0","hostname":"a1","active":true,
                   "resources":{"cpus":4.0,"mem":1024.0,"gpus":0.0,"disk":0.0,"ports":"[31000-32000]"},
                   "used_resources":{"cpus":0.5,"mem":128.0,"gpus":0.0,"disk":0.0}}),
            json!({"id":"m-S1","hostname":"a2","active":false,
                   "resources":{"cpus":2.0,"mem":512.0},"used_resources":{}}),
        ]
    }

    #[test]
    fn table_rows() {
        let counts = HashMap::from([("m-S0".to_string(), 3)]);
        let out = render_nodes(&agents(), Some(&counts));
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["ID", "HOSTNAME", "ACTIVE", "CPUS", "MEM", "TASKS"]
        );
        assert_eq!(lines[1], ["m-S0", "a1", "true", "0.5/4", "128/1024", "3"]);
        assert_eq!(lines[2], ["m-S1", "a2", "false", "0/2", "0/512", "0"]);
        let out = render_nodes(&agents(), None);
        assert!(out.lines().nth(1).is_some_and(|l| l.ends_with('-')));
    }

    #[test]
    fn counts_active_tasks_per_agent() {
        let state = json!({"frameworks":[{"tasks":[{"id":"a","slave_id":"m-S0"},{"id":"b","slave_id":"m-S0"},
            {"id":"c","slave_id":"m-S1"}],"completed_tasks":[{"id":"d","slave_id":"m-S1"}]}]});
        let c = task_counts(&state);
        assert_eq!(c.get("m-S0"), Some(&2));
        assert_eq!(c.get("m-S1"), Some(&1));
        let with = with_task_counts(agents(), Some(&c));
        assert_eq!(with[0]["tasks"], 2);
    }
}
