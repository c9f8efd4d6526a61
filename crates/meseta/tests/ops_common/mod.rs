//! Helpers shared by the operations tests (reservations, maintenance, offer timeouts): in-process
//! frameworks that wait for offers and updates, form posts, and a cluster with a custom master
//! configuration.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meseta_api::scheduler::{
    Acknowledge, CallKind, CommandInfo, Event, FrameworkInfo, IdValue, Offer, TaskInfo,
};
use meseta_master::FrameworkConnection;
use meseta_types::Resources;

/// How long any awaited event may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// A framework subscribed in `role`.
pub fn framework_in(name: &str, role: &str) -> FrameworkInfo {
    FrameworkInfo {
        user: String::new(),
        name: name.into(),
        role: Some(role.into()),
        failover_timeout: Some(60.0),
        ..FrameworkInfo::default()
    }
}

/// A `sleep` task using `res` on `agent`.
pub fn task(id: &str, res: &str, agent: &IdValue) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: IdValue::new(id),
        agent_id: Some(agent.clone()),
        resources: Resources::parse(res).expect("task resources"),
        command: Some(CommandInfo::shell("sleep 1000")),
        ..TaskInfo::default()
    }
}

/// The next event for which `f` gives a value (acknowledging updates on the way).
pub async fn next_matching<T>(
    fw: &mut FrameworkConnection,
    what: &str,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, fw.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("subscription ended waiting for {what}"));
        if let Event::Update { update } = &ev {
            if let Some(ack) = Acknowledge::for_status(&update.status) {
                let _ = fw.call(CallKind::Acknowledge { acknowledge: ack });
            }
        }
        if let Some(v) = f(&ev) {
            return v;
        }
    }
}

/// The next offer.
pub async fn next_offer(fw: &mut FrameworkConnection) -> Offer {
    next_matching(fw, "an offer", |ev| match ev {
        Event::Offers { offers } => offers.offers.first().cloned(),
        _ => None,
    })
    .await
}

/// Wait for an update of `task` to `state`; returns its reason.
pub async fn wait_update(fw: &mut FrameworkConnection, task: &str, state: &str) -> Option<String> {
    next_matching(fw, &format!("{task} {state}"), |ev| match ev {
        Event::Update { update }
            if update.status.task_id.as_str() == task && update.status.state.as_str() == state =>
        {
            Some(update.status.reason.clone())
        }
        _ => None,
    })
    .await
}

/// POST a form; status and JSON body (null when not JSON).
pub async fn post_form(url: &str, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// POST JSON; status and JSON body (null when not JSON).
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// A master with a custom configuration and in-process agents named `agent-<i>`.
pub struct OpsCluster {
    pub dir: tempfile::TempDir,
    pub master: meseta_master::MasterHandle,
    pub url: String,
    pub agents: Vec<meseta_agent::AgentHandle>,
}

impl OpsCluster {
    pub async fn start(
        mut cfg: meseta_master::MasterConfig,
        agents: usize,
        resources: &str,
    ) -> OpsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        // Tasks run as an unprivileged user: it must traverse down to its sandbox.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod temp dir");
        }
        let store = Arc::new(
            meseta_store::redb::RedbStore::open(&dir.path().join("store.redb")).expect("store"),
        );
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.allocation_interval = Duration::from_millis(200);
        let master = meseta_master::start(cfg, store).await.expect("master");
        let url = format!("http://{}", master.addr);
        let mut c = OpsCluster {
            dir,
            master,
            url,
            agents: Vec::new(),
        };
        for i in 0..agents {
            let mut a = meseta_agent::AgentConfig::new(
                c.url.clone(),
                c.dir.path().join(format!("agent-{i}")),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            );
            a.resources = Some(Resources::parse(resources).expect("resources"));
            a.hostname = Some(format!("agent-{i}"));
            a.meseta_exe = crate::common::MESETA.into();
            let agent = meseta_agent::Agent::start(a).await.expect("agent");
            agent
                .wait_registered(Duration::from_secs(10))
                .await
                .expect("registered");
            c.agents.push(agent);
        }
        c
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    pub async fn stop(mut self) {
        for a in self.agents.drain(..) {
            a.shutdown(true).await;
        }
        self.master.shutdown().await;
    }
}
