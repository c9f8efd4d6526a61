//! Simulated agents against a real in-process master: registration of many agents, and an
//! in-process framework seeing the configured task outcomes (finished, failed, killed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use meseta_api::scheduler::{
    Accept, Acknowledge, CallKind, CommandInfo, Event, FrameworkInfo, IdValue, Kill, Offer,
    TaskInfo, TaskStatus,
};
use meseta_master::{FrameworkConnection, MasterConfig, MasterHandle};
use meseta_sim::{SimCluster, SimConfig};
use meseta_types::{Resources, TaskState};

const WAIT: Duration = Duration::from_secs(20);

async fn master() -> anyhow::Result<MasterHandle> {
    let cfg = MasterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..MasterConfig::default()
    };
    let store = Arc::new(meseta_store::mem::MemStore::new());
    Ok(meseta_master::start(cfg, store).await?)
}

async fn slaves(m: &MasterHandle) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{}/master/slaves", m.addr);
    Ok(reqwest::get(url).await?.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_register_and_leave() -> anyhow::Result<()> {
    let m = master().await?;
    let mut cfg = SimConfig::new(format!("http://{}", m.addr), 50);
    cfg.resources = Resources::parse("cpus:2;mem:2048")?;
    let sim = SimCluster::start(cfg).await?;
    let stats = sim.stats();
    assert_eq!((stats.agents, stats.connected), (50, 50));
    let s = slaves(&m).await?;
    let list = s["slaves"].as_array().context("slaves array")?;
    assert_eq!(list.len(), 50);
    assert!(list.iter().all(|a| a["active"] == true), "{s}");
    let mut hosts: Vec<&str> = list.iter().filter_map(|a| a["hostname"].as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), 50, "unique host names");
    assert!(hosts.contains(&"sim-0") && hosts.contains(&"sim-49"));
    assert_eq!(list[0]["resources"]["cpus"], 2.0);

    sim.shutdown().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = slaves(&m).await?;
        let active = s["slaves"]
            .as_array()
            .map_or(0, |l| l.iter().filter(|a| a["active"] == true).count());
        if active == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{active} agents still active after shutdown");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.shutdown().await;
    Ok(())
}

/// A minimal in-process framework.
struct Fw {
    conn: FrameworkConnection,
    offers: Vec<Offer>,
}

impl Fw {
    async fn next(&mut self) -> anyhow::Result<Event> {
        let ev = tokio::time::timeout(WAIT, self.conn.next_event())
            .await
            .context("no event in time")?
            .context("event stream closed")?;
        if let Event::Offers { offers } = &ev {
            self.offers.extend(offers.offers.iter().cloned());
        }
        Ok(ev)
    }

    /// An offer of an agent whose host name starts with `prefix`.
    async fn offer(&mut self, prefix: &str) -> anyhow::Result<Offer> {
        loop {
            if let Some(i) = self
                .offers
                .iter()
                .position(|o| o.hostname.starts_with(prefix))
            {
                return Ok(self.offers.swap_remove(i));
            }
            self.next().await?;
        }
    }

    fn launch(&self, offer: &Offer, id: &str) -> anyhow::Result<()> {
        let task = TaskInfo {
            name: id.into(),
            task_id: IdValue::new(id),
            agent_id: Some(offer.agent_id.clone()),
            resources: Resources::parse("cpus:0.5;mem:64")?,
            command: Some(CommandInfo::shell("true")),
            ..TaskInfo::default()
        };
        let accept = Accept::launch(offer.id.clone(), vec![task], 0.0);
        self.conn.call(CallKind::Accept { accept })?;
        Ok(())
    }

    /// Updates of `task` (acknowledged) until a terminal one or `until`.
    async fn updates(&mut self, task: &str, until: TaskState) -> anyhow::Result<Vec<TaskStatus>> {
        let mut seen = Vec::new();
        loop {
            if let Event::Update { update } = self.next().await? {
                if let Some(ack) = Acknowledge::for_status(&update.status) {
                    self.conn.call(CallKind::Acknowledge { acknowledge: ack })?;
                }
                if update.status.task_id.as_str() == task {
                    let s = update.status;
                    let done = s.state == until || s.state.is_terminal();
                    seen.push(s);
                    if done {
                        return Ok(seen);
                    }
                }
            }
        }
    }
}

fn states(s: &[TaskStatus]) -> Vec<TaskState> {
    s.iter().map(|s| s.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_sees_running_finished_failed_and_killed() -> anyhow::Result<()> {
    let m = master().await?;
    let url = format!("http://{}", m.addr);
    let sim = |prefix: &str, failure_rate: f64, run_time: Option<u64>| {
        let mut c = SimConfig::new(url.clone(), 2);
        c.hostname_prefix = prefix.to_string();
        c.failure_rate = failure_rate;
        c.run_time = run_time.map(Duration::from_millis);
        c.start_delay = Duration::from_millis(20);
        SimCluster::start(c)
    };
    let finishing = sim("fin", 0.0, Some(50)).await?;
    let failing = sim("fail", 1.0, Some(50)).await?;
    let forever = sim("forever", 0.0, None).await?;
    let info = FrameworkInfo {
        user: "root".into(),
        name: "sim-test".into(),
        failover_timeout: Some(0.0),
        ..FrameworkInfo::default()
    };
    let mut fw = Fw {
        conn: m.master.subscribe(info).await?,
        offers: Vec::new(),
    };

    let o = fw.offer("fin-").await?;
    fw.launch(&o, "t-fin")?;
    let seen = fw.updates("t-fin", TaskState::Finished).await?;
    assert_eq!(
        states(&seen),
        [TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    assert!(seen.iter().all(|s| s.uuid.is_some()));

    let o = fw.offer("fail-").await?;
    fw.launch(&o, "t-fail")?;
    let seen = fw.updates("t-fail", TaskState::Failed).await?;
    let last = seen.last().context("an update")?;
    assert_eq!(last.state, TaskState::Failed, "{seen:?}");
    assert_eq!(
        last.message.as_deref(),
        Some("Command exited with status 1")
    );

    let o = fw.offer("forever-").await?;
    fw.launch(&o, "t-run")?;
    let seen = fw.updates("t-run", TaskState::Running).await?;
    assert_eq!(seen.last().map(|s| s.state), Some(TaskState::Running));
    assert_eq!(forever.stats().running, 1);
    let kill = Kill {
        task_id: IdValue::new("t-run"),
        agent_id: None,
    };
    fw.conn.call(CallKind::Kill { kill })?;
    let seen = fw.updates("t-run", TaskState::Killed).await?;
    assert_eq!(seen.last().map(|s| s.state), Some(TaskState::Killed));

    let fin = finishing.stats();
    assert_eq!((fin.launches, fin.finished, fin.failed), (1, 1, 0));
    assert_eq!(failing.stats().failed, 1);
    let f = forever.stats();
    assert_eq!((f.running, f.killed), (0, 1));
    let rec = finishing.launches();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].task_id.as_str(), "t-fin");
    assert!(rec[0].agent.starts_with("fin-"));

    // Every update was acknowledged by the framework: the master relays the acks to the agents.
    let deadline = tokio::time::Instant::now() + WAIT;
    while [&finishing, &failing, &forever]
        .iter()
        .any(|s| s.stats().unacked > 0)
    {
        if tokio::time::Instant::now() > deadline {
            bail!("updates never acknowledged: {:?}", finishing.stats());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    drop(fw);
    for s in [finishing, failing, forever] {
        s.shutdown().await;
    }
    m.shutdown().await;
    Ok(())
}
