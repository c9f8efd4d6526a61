//! The kit subscribes only once the scheduler has work, stores the framework id under the
//! scheduler's key, and a new session over the same store comes back as the same framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{Offer, TaskStatus};
use meseta_framework::{Command, FrameworkSpec, Handle, Scheduler};
use meseta_master::bus::ClusterEvent;
use meseta_master::{Master, MasterConfig};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const KEY: &str = "/test/idle-scheduler/framework_id";

/// Has work only when told so.
struct Idle {
    work: bool,
}

impl Scheduler for Idle {
    type Request = (bool, oneshot::Sender<()>);
    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::new("idle").framework_id_key(KEY)
    }
    fn has_work(&self) -> bool {
        self.work
    }
    fn wants_offers(&self, _: SystemTime) -> bool {
        false
    }
    fn offers(&mut self, offers: Vec<Offer>, _: SystemTime) -> Vec<Command> {
        let offer_ids = offers.into_iter().map(|o| o.id).collect();
        vec![Command::Decline {
            offer_ids,
            refuse_seconds: 60.0,
        }]
    }
    fn status(&mut self, _: &TaskStatus, _: SystemTime) -> Vec<Command> {
        Vec::new()
    }
    fn request(&mut self, (work, reply): Self::Request, _: SystemTime) -> Vec<Command> {
        self.work = work;
        vec![Command::reply(move || {
            let _ = reply.send(());
        })]
    }
}

type Session = (
    Handle<(bool, oneshot::Sender<()>)>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
);

fn session(master: &Master) -> Session {
    let (handle, inbox) = meseta_framework::channel("idle");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(meseta_framework::run(
        master.clone(),
        Idle { work: false },
        inbox,
        cancel.clone(),
    ));
    (handle, cancel, task)
}

async fn subscribed_id(h: &Handle<(bool, oneshot::Sender<()>)>) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = h.framework_id() {
            return Ok(id);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next framework event on the master's bus: `"added"` or `"updated"`.
async fn next_framework_event(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<ClusterEvent>>,
) -> anyhow::Result<&'static str> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await??;
        match ev.as_ref() {
            ClusterEvent::FrameworkAdded(_) => return Ok("added"),
            ClusterEvent::FrameworkUpdated(_) => return Ok("updated"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_only_with_work_and_comes_back_as_the_same_framework() -> anyhow::Result<()> {
    let cfg = MasterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..MasterConfig::default()
    };
    let store = Arc::new(meseta_store::mem::MemStore::new());
    let master = meseta_master::start(cfg, store).await?;
    let m = master.master.clone();

    let (h, cancel, task) = session(&m);
    h.ask(|reply| (false, reply)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.framework_id(), None, "no work, no framework");
    let stored: Option<String> = meseta_store::get_json(m.store(), KEY).await?;
    assert_eq!(stored, None);

    let mut rx = m.events();
    h.ask(|reply| (true, reply)).await?;
    assert_eq!(next_framework_event(&mut rx).await?, "added");
    let first = subscribed_id(&h).await?;
    let stored: Option<String> = meseta_store::get_json(m.store(), KEY).await?;
    assert_eq!(stored.as_deref(), Some(first.as_str()));
    cancel.cancel();
    task.await?;

    let (h, cancel, task) = session(&m);
    let mut rx = m.events();
    h.ask(|reply| (true, reply)).await?;
    assert_eq!(
        next_framework_event(&mut rx).await?,
        "updated",
        "the stored id subscribes the same framework again"
    );
    assert_eq!(subscribed_id(&h).await?, first);
    cancel.cancel();
    task.await?;
    master.shutdown().await;
    Ok(())
}
