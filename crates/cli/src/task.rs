//! `meseta task list|logs|kill`: tasks as the master reports them in `/master/state`, their
//! sandbox logs, and kills through meseta's operator endpoints.

use crate::output;
use anyhow::Context;
use meseta_api::client::MasterClient;
use meseta_types::TaskState;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// How often `task logs --follow` polls.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);
/// Bytes requested per log read.
const LOG_CHUNK: u64 = 64 * 1024;

/// `meseta task ...`
#[derive(clap::Subcommand, Debug)]
pub enum TaskCmd {
    /// List active tasks (and completed ones with --all).
    List {
        /// Include completed tasks.
        #[arg(long)]
        all: bool,
    },
    /// Print a task's stdout (or stderr).
    Logs {
        /// The task id.
        id: String,
        /// Keep printing until the task is terminal.
        #[arg(long, short)]
        follow: bool,
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
    },
    /// Kill a task.
    Kill {
        /// The task id.
        id: String,
    },
}

/// Runs a task subcommand; returns the exit code.
pub async fn run(cmd: TaskCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    match cmd {
        TaskCmd::List { all } => list(client, all, json).await,
        TaskCmd::Logs { id, follow, stderr } => {
            let stream = if stderr { "stderr" } else { "stdout" };
            logs(client, &id, stream, follow).await
        }
        TaskCmd::Kill { id } => kill(client, &id, json).await,
    }
}

async fn list(client: &MasterClient, all: bool, json: bool) -> anyhow::Result<i32> {
    let state = client
        .state()
        .await
        .context("cannot read the master's state")?;
    let tasks = collect_tasks(&state, all);
    if json {
        output::print_json(&Value::Array(tasks.into_iter().cloned().collect()));
    } else {
        println!("{}", render_tasks(&state, &tasks));
    }
    Ok(0)
}

/// The v0 task objects of `/master/state`: `frameworks[].tasks` (+ `completed_tasks` and the
/// tasks of completed frameworks with `all`).
pub fn collect_tasks(state: &Value, all: bool) -> Vec<&Value> {
    let mut keys = vec!["tasks", "unreachable_tasks"];
    let mut framework_lists = vec!["frameworks"];
    if all {
        keys.push("completed_tasks");
        framework_lists.push("completed_frameworks");
    }
    let mut out = Vec::new();
    for list in framework_lists {
        for fw in array(state, list) {
            for key in &keys {
                out.extend(array(fw, key));
            }
        }
    }
    out
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The host name of agent `slave_id` in `/master/state`, else the id itself.
fn agent_name(state: &Value, slave_id: &str) -> String {
    array(state, "slaves")
        .iter()
        .find(|s| output::str_field(s, "id") == slave_id)
        .map(|s| output::str_field(s, "hostname").to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| slave_id.to_string())
}

/// The `task list` table.
pub fn render_tasks(state: &Value, tasks: &[&Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let res = t.get("resources").cloned().unwrap_or(Value::Null);
            vec![
                output::str_field(t, "id").to_string(),
                output::str_field(t, "name").to_string(),
                output::str_field(t, "state").to_string(),
                agent_name(state, output::str_field(t, "slave_id")),
                output::num(output::summary_scalar(&res, "cpus")),
                output::num(output::summary_scalar(&res, "mem")),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "STATE", "AGENT", "CPUS", "MEM"], &rows)
}

/// The state of task `id` in `/master/state`, `None` when the master does not know it.
pub fn task_state(state: &Value, id: &str) -> Option<TaskState> {
    collect_tasks(state, true)
        .into_iter()
        .find(|t| output::str_field(t, "id") == id)
        .and_then(|t| TaskState::parse(output::str_field(t, "state")))
}

async fn kill(client: &MasterClient, id: &str, json: bool) -> anyhow::Result<i32> {
    match client.kill_task(id).await {
        Ok(()) => {
            if json {
                output::print_json(&serde_json::json!({"task_id": id, "killing": true}));
            } else {
                println!("killing {id}");
            }
            Ok(0)
        }
        Err(e) if e.is_not_found() => Err(anyhow::anyhow!("cannot kill task {id}: {e}")),
        Err(e) => Err(e).with_context(|| format!("cannot kill task {id}")),
    }
}

/// Next read offset after a chunk: past the bytes returned, never beyond the file size.
pub fn next_offset(offset: u64, data_len: usize, size: u64) -> u64 {
    (offset + data_len as u64).min(size.max(offset))
}

/// Prints everything from `offset` to the current end of the file; returns the new offset.
async fn drain(
    client: &MasterClient,
    id: &str,
    stream: &str,
    mut offset: u64,
) -> anyhow::Result<u64> {
    let mut out = std::io::stdout().lock();
    loop {
        let chunk = client
            .task_logs(id, stream, offset, LOG_CHUNK)
            .await
            .with_context(|| format!("cannot read {stream} of task {id}"))?;
        out.write_all(chunk.data.as_bytes())?;
        let next = next_offset(chunk.offset, chunk.data.len(), chunk.size);
        if chunk.data.is_empty() || next >= chunk.size || next <= offset {
            out.flush()?;
            return Ok(next);
        }
        offset = next;
    }
}

async fn logs(client: &MasterClient, id: &str, stream: &str, follow: bool) -> anyhow::Result<i32> {
    let mut offset = drain(client, id, stream, 0).await?;
    if !follow {
        return Ok(0);
    }
    loop {
        // Read the state first so that nothing written before the task ended is missed.
        let state = client
            .state()
            .await
            .context("cannot read the master's state")?;
        let terminal = task_state(&state, id).is_none_or(TaskState::is_terminal);
        offset = drain(client, id, stream, offset).await?;
        if terminal {
            return Ok(0);
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({
            "slaves": [{"id": "m-S0", "hostname": "a1"}],
            "frameworks": [{
                "id": "m-0000",
                "tasks": [{"id": "t1", "name": "web", "state": "TASK_RUNNING", "slave_id": "m-S0",
                           "resources": {"cpus": 0.5, "mem": 128.0, "gpus": 0.0, "disk": 0.0}}],
                "completed_tasks": [{"id": "t0", "name": "old", "state": "TASK_FINISHED",
                                     "slave_id": "m-S9", "resources": {"cpus": 1.0, "mem": 32.0}}]
            }],
            "completed_frameworks": [{"id": "m-0001", "tasks": [],
                "completed_tasks": [{"id": "t9", "name": "gone", "state": "TASK_KILLED", "slave_id": "m-S0"}]}]
        })
    }

    #[test]
    fn list_includes_completed_only_with_all() {
        let s = state();
        let ids = |all| -> Vec<String> {
            collect_tasks(&s, all)
                .iter()
                .map(|t| output::str_field(t, "id").to_string())
                .collect()
        };
        assert_eq!(ids(false), ["t1"]);
        assert_eq!(ids(true), ["t1", "t0", "t9"]);
    }

    #[test]
    fn table_shows_agent_hostname_and_resources() {
        let s = state();
        let tasks = collect_tasks(&s, true);
        let out = render_tasks(&s, &tasks);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        for col in ["ID", "NAME", "STATE", "AGENT", "CPUS", "MEM"] {
            assert!(lines[0].contains(col));
        }
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row, ["t1", "web", "TASK_RUNNING", "a1", "0.5", "128"]);
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(row, ["t0", "old", "TASK_FINISHED", "m-S9", "1", "32"]);
    }

    #[test]
    fn task_state_finds_active_and_completed() {
        let s = state();
        assert_eq!(task_state(&s, "t1"), Some(TaskState::Running));
        assert_eq!(task_state(&s, "t9"), Some(TaskState::Killed));
        assert_eq!(task_state(&s, "nope"), None);
    }

    #[test]
    fn next_offset_never_passes_size() {
        assert_eq!(next_offset(0, 10, 100), 10);
        assert_eq!(next_offset(95, 10, 100), 100);
        assert_eq!(next_offset(100, 0, 100), 100);
        // A file that shrank (truncated) does not move the offset backwards.
        assert_eq!(next_offset(50, 0, 10), 50);
    }
}
