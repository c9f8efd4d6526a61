//! `meseta framework list|teardown`: the frameworks subscribed to the master
//! (`/master/frameworks`) and removing one (`/master/teardown`, which kills its tasks).

use anyhow::Context;
use meseta_api::client::MasterClient;
use serde_json::Value;

use crate::output;

/// `meseta framework ...`
#[derive(clap::Subcommand, Debug)]
pub enum FrameworkCmd {
    /// List frameworks (`--all` adds completed ones).
    List {
        /// Include frameworks that were removed.
        #[arg(long)]
        all: bool,
    },
    /// Remove a framework: its tasks are killed and it may not re-subscribe.
    Teardown {
        /// Framework id.
        id: String,
    },
}

/// Runs a framework subcommand; returns the exit code.
pub async fn run(cmd: FrameworkCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        FrameworkCmd::List { all } => list(client, all, json).await,
        FrameworkCmd::Teardown { id } => {
            client
                .teardown(&id)
                .await
                .with_context(|| format!("cannot tear down framework {id}"))?;
            if json {
                output::print_json(&serde_json::json!({ "torn_down": id }));
            } else {
                println!("framework {id} torn down");
            }
            Ok(0)
        }
    }
}

async fn list(client: &MasterClient, all: bool, json: bool) -> anyhow::Result<i32> {
    let v = client
        .frameworks()
        .await
        .context("cannot list frameworks")?;
    let rows = collect(&v, all);
    if json {
        output::print_json(&Value::Array(rows));
    } else {
        println!("{}", render(&rows));
    }
    Ok(0)
}

/// Active frameworks, then (with `all`) completed ones.
pub fn collect(v: &Value, all: bool) -> Vec<Value> {
    let mut out: Vec<Value> = v["frameworks"].as_array().cloned().unwrap_or_default();
    if all {
        out.extend(
            v["completed_frameworks"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    out
}

/// A table: ID, NAME, STATE, TASKS, CPUS, MEM.
pub fn render(rows: &[Value]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            let state = if f["unregistered_time"].as_f64().unwrap_or(0.0) > 0.0 {
                "completed"
            } else if f["connected"] == true {
                "connected"
            } else {
                "disconnected"
            };
            let tasks = f["tasks"].as_array().map(Vec::len).unwrap_or(0);
            vec![
                output::str_field(f, "id").to_string(),
                output::str_field(f, "name").to_string(),
                state.to_string(),
                tasks.to_string(),
                output::num(output::summary_scalar(&f["used_resources"], "cpus")),
                output::num(output::summary_scalar(&f["used_resources"], "mem")),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "STATE", "TASKS", "CPUS", "MEM"], &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_active_then_completed_with_states() {
        let v = serde_json::json!({
            "frameworks": [{"id": "f1", "name": "web", "connected": true, "unregistered_time": 0.0,
                            "tasks": [{}, {}], "used_resources": {"cpus": 1.5, "mem": 256.0}}],
            "completed_frameworks": [{"id": "f0", "name": "old", "connected": false, "unregistered_time": 5.0,
                                      "tasks": [], "used_resources": {"cpus": 0.0, "mem": 0.0}}]
        });
        assert_eq!(collect(&v, false).len(), 1);
        let rows = collect(&v, true);
        assert_eq!(rows.len(), 2);
        let table = render(&rows);
        assert!(
            table.contains("connected") && table.contains("completed"),
            "{table}"
        );
        assert!(table.contains("1.5"), "{table}");
    }
}
