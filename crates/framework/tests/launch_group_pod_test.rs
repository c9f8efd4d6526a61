//! A pod instance launched as one LAUNCH_GROUP through the kit on a real master and agent:
//! two containers share an ephemeral pod volume; one writes a file into it, the other serves
//! that directory over HTTP on its endpoint's host port (taken from the offer). Needs the
//! `meseta` binary (task shim) and `python3`; skips with a reason without them (fails under
//! `CI=true`).

mod common;

use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{Offer, TaskStatus};
use meseta_framework::{Command, FrameworkSpec, Scheduler};
use meseta_services::pod::group::{instance_id, task_group};
use meseta_services::pod::pod_from_body;
use meseta_types::TaskState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Launches one instance of `pod` on the first offer that holds it; reports the endpoint's
/// host port and the task states seen.
struct PodRunner {
    pod: meseta_api::marathon::pod::PodDefinition,
    port: Option<u64>,
    states: Vec<(String, TaskState)>,
    refused: Vec<String>,
}

type Report = (Option<u64>, Vec<(String, TaskState)>, Vec<String>);

impl Scheduler for PodRunner {
    type Request = oneshot::Sender<Report>;
    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::new("pods")
    }
    fn has_work(&self) -> bool {
        true
    }
    fn wants_offers(&self, _: SystemTime) -> bool {
        self.port.is_none()
    }
    fn offers(&mut self, offers: Vec<Offer>, _: SystemTime) -> Vec<Command> {
        let mut cmds = Vec::new();
        let mut rest = Vec::new();
        for o in offers {
            if self.port.is_some() {
                rest.push(o.id);
                continue;
            }
            let inst = instance_id(&self.pod.id, "0001");
            match task_group(&self.pod, &inst, &o.agent_id, &o.resources) {
                Ok(l) => {
                    self.port = l.ports.get("http").copied();
                    cmds.push(Command::LaunchGroup {
                        offer_id: o.id,
                        executor: Box::new(l.executor),
                        tasks: l.tasks,
                    });
                }
                Err(why) => {
                    self.refused.push(why.to_string());
                    rest.push(o.id);
                }
            }
        }
        cmds.push(Command::Decline {
            offer_ids: rest,
            refuse_seconds: 1.0,
        });
        cmds
    }
    fn status(&mut self, s: &TaskStatus, _: SystemTime) -> Vec<Command> {
        self.states.push((s.task_id.as_str().to_owned(), s.state));
        vec![]
    }
    fn request(&mut self, reply: Self::Request, _: SystemTime) -> Vec<Command> {
        let r = (self.port, self.states.clone(), self.refused.clone());
        vec![Command::reply(move || {
            let _ = reply.send(r);
        })]
    }
}

/// GET `path` on loopback `port` (HTTP/1.0, no client library needed); the body on 200.
async fn get(port: u64, path: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).ok()?));
    get_at(addr, path).await
}

async fn get_at(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}

fn python3() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is missing and CI=true"
        );
        println!("skipping: python3 is not installed");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_of_a_pod_share_a_volume_and_one_serves_it() -> anyhow::Result<()> {
    let Some(exe) = common::meseta_exe() else {
        return Ok(());
    };
    if !python3() {
        return Ok(());
    }
    let pod = pod_from_body(&serde_json::json!({
        "id": "/web",
        "containers": [
            {"name": "writer", "resources": {"cpus": 0.1, "mem": 32},
             "exec": {"command": {"shell": "echo written-by-writer > data/index.html && sleep 600"}},
             "volumeMounts": [{"name": "shared", "mountPath": "data"}]},
            {"name": "server", "resources": {"cpus": 0.1, "mem": 64},
             "exec": {"command": {"shell":
                 "cd data && exec python3 -m http.server --bind 127.0.0.1 $ENDPOINT_HTTP"}},
             "endpoints": [{"name": "http", "hostPort": 0}],
             "volumeMounts": [{"name": "shared", "mountPath": "data"}]}
        ],
        "volumes": [{"name": "shared"}]
    }))?;
    let dir = tempfile::tempdir()?;
    let (master, agent) = common::master_and_agent_offering(
        exe,
        dir.path(),
        Duration::from_millis(200),
        "cpus:2;mem:1024;disk:1024;ports:[41000-41100]",
    )
    .await?;

    let (handle, inbox) = meseta_framework::channel("pods");
    let cancel = tokio_util::sync::CancellationToken::new();
    let runner = PodRunner {
        pod,
        port: None,
        states: Vec::new(),
        refused: Vec::new(),
    };
    let session = tokio::spawn(meseta_framework::run(
        master.master.clone(),
        runner,
        inbox,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut served = None;
    let mut last: Report = (None, Vec::new(), Vec::new());
    while tokio::time::Instant::now() < deadline {
        last = handle.ask(|reply| reply).await?;
        if let Some(port) = last.0 {
            served = get(port, "/index.html").await;
            if served.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served.as_deref().map(str::trim),
        Some("written-by-writer"),
        "the server container serves what the writer container wrote (last report {last:?})"
    );
    let running: Vec<&str> = last
        .1
        .iter()
        .filter(|(_, s)| *s == TaskState::Running)
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(
        running.contains(&"web.instance-0001.writer")
            && running.contains(&"web.instance-0001.server"),
        "both containers ran as tasks of the group: {last:?}"
    );
    assert_eq!(
        last.0,
        Some(41000),
        "hostPort 0 took the first offered port"
    );

    // The master lists the group's DEFAULT executor under its framework, as Mesos does.
    let state = get_at(master.addr, "/master/state")
        .await
        .ok_or_else(|| anyhow::anyhow!("GET /master/state failed"))?;
    let state: serde_json::Value = serde_json::from_str(&state)?;
    let fw = state["frameworks"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "pods"))
        .ok_or_else(|| anyhow::anyhow!("no pods framework in {state}"))?;
    let ex = &fw["executors"][0];
    assert_eq!(
        ex["executor_id"]["value"], "instance-web.instance-0001",
        "{fw}"
    );
    assert_eq!(ex["type"], "DEFAULT", "{fw}");
    assert_eq!(ex["slave_id"], state["slaves"][0]["id"], "{fw}");
    assert!(
        ex["resources"]["mem"].as_f64().is_some_and(|m| m > 0.0),
        "{fw}"
    );

    cancel.cancel();
    session.await?;
    agent.shutdown(true).await;
    master.shutdown().await;
    Ok(())
}
