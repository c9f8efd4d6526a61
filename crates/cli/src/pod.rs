//! `meseta pod add|list|show|scale|restart|remove|kill`: a client of the master's Marathon pod
//! API (`/v2/pods`). Tables by default, the raw JSON with `--json`; `--wait` follows the
//! resulting deployment like `meseta app` does.

use anyhow::bail;
use meseta_api::client::marathon::absolute_id;
use meseta_api::client::{Marathon, MasterClient, Reply};
use serde_json::Value;

use crate::app::{progress, WaitArgs};
use crate::input::read_json;
use crate::output;

/// `meseta pod ...`
#[derive(clap::Subcommand, Debug)]
pub enum PodCmd {
    /// Create a pod from Marathon pod JSON (`-` reads stdin).
    Add {
        /// The JSON file, or `-`.
        file: String,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List pods with their instance counts and state.
    List,
    /// One pod's status: its instances and their containers.
    Show {
        /// The pod id.
        id: String,
    },
    /// Set the number of instances.
    Scale {
        /// The pod id.
        id: String,
        /// The new instance count.
        instances: u32,
        /// Override a deployment that holds the pod.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Replace every instance (a rolling restart following the pod's upgrade strategy).
    Restart {
        /// The pod id.
        id: String,
        /// Override a deployment that holds the pod.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete the pod and stop its instances.
    Remove {
        /// The pod id.
        id: String,
        /// Override a deployment that holds the pod.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Kill one instance of a pod (it is replaced).
    Kill {
        /// The pod id.
        id: String,
        /// The instance id (from `pod show`).
        instance: String,
    },
}

/// Runs a pod subcommand; returns the exit code.
pub async fn run(cmd: PodCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let api = &client.marathon();
    match cmd {
        PodCmd::Add { file, wait } => {
            let body = read_json(&file)?;
            if !body.is_object() || output::str_field(&body, "id").trim_matches('/').is_empty() {
                bail!("{file} must hold one pod object with a non-empty \"id\"");
            }
            let r = api.create_pod(&body).await?;
            let what = format!("pod {} added", absolute_id(output::str_field(&body, "id")));
            finish(api, &r, &what, &wait, json).await
        }
        PodCmd::List => {
            let statuses = api.pod_statuses().await?;
            if json {
                output::print_json(&statuses);
            } else {
                println!("{}", render_pods(&statuses));
            }
            Ok(0)
        }
        PodCmd::Show { id } => {
            let status = api.pod_status(&id).await?;
            if json {
                output::print_json(&status);
            } else {
                println!("{}", render_pod(&status));
            }
            Ok(0)
        }
        PodCmd::Scale {
            id,
            instances,
            force,
            wait,
        } => {
            let mut pod = api.pod(&id).await?;
            pod["scaling"]["instances"] = Value::from(instances);
            strip_version(&mut pod);
            let r = api.put_pod(&id, &pod, force).await?;
            let what = format!("pod {} scaled to {instances}", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        PodCmd::Restart { id, force, wait } => {
            // The same definition again is a new version: every instance is replaced.
            let mut pod = api.pod(&id).await?;
            strip_version(&mut pod);
            let r = api.put_pod(&id, &pod, force).await?;
            let what = format!("pod {} restarting", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        PodCmd::Remove { id, force, wait } => {
            let r = api.delete_pod(&id, force).await?;
            let what = format!("pod {} removed", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        PodCmd::Kill { id, instance } => {
            let r = api.kill_pod_instance(&id, &instance).await?;
            if json {
                output::print_json(&r.body);
            } else {
                println!("instance {instance} of pod {} killed", absolute_id(&id));
            }
            Ok(0)
        }
    }
}

/// The server sets `version`; a body sent back must not carry it.
fn strip_version(pod: &mut Value) {
    if let Some(o) = pod.as_object_mut() {
        o.remove("version");
    }
}

async fn finish(
    api: &Marathon<'_>,
    reply: &Reply,
    what: &str,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        output::print_json(&reply.body);
    } else {
        match &reply.deployment_id {
            Some(d) => println!("{what} (deployment {d})"),
            None => println!("{what}"),
        }
    }
    match (&reply.deployment_id, wait.wait) {
        (Some(d), true) => progress::wait_deployment(api, d, wait.timeout, json).await,
        _ => Ok(0),
    }
}

fn instances(status: &Value) -> &[Value] {
    status["instances"].as_array().map_or(&[], Vec::as_slice)
}

/// `ID  STATUS  INSTANCES (stable/wanted)  CONTAINERS  VERSION`.
pub fn render_pods(statuses: &Value) -> String {
    let rows: Vec<Vec<String>> = statuses
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|s| {
            let wanted = s["spec"]["scaling"]["instances"].as_u64().unwrap_or(0);
            let stable = instances(s)
                .iter()
                .filter(|i| i["status"] == "STABLE")
                .count();
            let containers = s["spec"]["containers"].as_array().map_or(0, Vec::len);
            vec![
                output::str_field(s, "id").to_owned(),
                output::str_field(s, "status").to_owned(),
                format!("{stable}/{wanted}"),
                containers.to_string(),
                output::str_field(&s["spec"], "version").to_owned(),
            ]
        })
        .collect();
    output::table(
        &["ID", "STATUS", "INSTANCES", "CONTAINERS", "VERSION"],
        &rows,
    )
}

/// The pod's state, then one row per container of each instance.
pub fn render_pod(status: &Value) -> String {
    let mut rows = Vec::new();
    for i in instances(status) {
        for c in i["containers"].as_array().map_or(&[][..], Vec::as_slice) {
            let endpoints: Vec<String> = c["endpoints"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}",
                        output::str_field(e, "name"),
                        e["allocatedHostPort"].as_u64().unwrap_or(0)
                    )
                })
                .collect();
            rows.push(vec![
                output::str_field(i, "id").to_owned(),
                output::str_field(i, "status").to_owned(),
                output::str_field(i, "agentHostname").to_owned(),
                output::str_field(c, "name").to_owned(),
                output::str_field(c, "status").to_owned(),
                endpoints.join(","),
            ]);
        }
    }
    format!(
        "pod {}: {}\n{}",
        output::str_field(status, "id"),
        output::str_field(status, "status"),
        output::table(
            &[
                "INSTANCE",
                "STATUS",
                "HOST",
                "CONTAINER",
                "STATE",
                "ENDPOINTS"
            ],
            &rows
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_counts_stable_instances_against_the_wanted_count() {
        let s = json!([{"id": "/web", "status": "DEGRADED",
            "spec": {"scaling": {"instances": 2}, "containers": [{}, {}], "version": "v1"},
            "instances": [{"status": "STABLE"}, {"status": "STAGING"}]}]);
        let out = render_pods(&s);
        assert!(out.contains("/web"), "{out}");
        assert!(out.contains("1/2"), "{out}");
        assert!(out.contains("DEGRADED"), "{out}");
    }

    #[test]
    fn show_lists_each_container_with_its_endpoints() {
        let s = json!({"id": "/web", "status": "STABLE", "instances": [{
            "id": "web.instance-1", "status": "STABLE", "agentHostname": "h",
            "containers": [{"name": "server", "status": "TASK_RUNNING",
                            "endpoints": [{"name": "http", "allocatedHostPort": 31000}]}]}]});
        let out = render_pod(&s);
        assert!(
            out.contains("web.instance-1") && out.contains("http:31000"),
            "{out}"
        );
    }
}
