//! Writes run in the background, one at a time: while a commit is in the store the session goes
//! on handling requests, their replies wait for the write that covers them, and every change
//! made meanwhile goes into one next commit (group commit). A failed commit fails the replies
//! that waited for it, and its changes are written again by the next one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{Offer, TaskStatus};
use meseta_framework::{Command, Commit, FrameworkSpec, Scheduler};
use meseta_master::MasterConfig;
use meseta_store::StoreError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

type Answer = oneshot::Sender<Result<(), String>>;

/// What the test sees of the scheduler: requests handled, and what each commit carried.
#[derive(Default)]
struct Seen {
    handled: Vec<u32>,
    commits: Vec<Vec<u32>>,
}

/// Each request is a change to write; each commit waits for the test to say how it ends.
struct Writer {
    pending: Vec<u32>,
    /// Changes of each commit not finished yet, oldest first.
    writing: std::collections::VecDeque<Vec<u32>>,
    seen: Arc<Mutex<Seen>>,
    outcomes: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Result<(), String>>>>,
}

impl Scheduler for Writer {
    type Request = (u32, Answer);
    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::new("writer")
    }
    fn has_work(&self) -> bool {
        false
    }
    fn wants_offers(&self, _: SystemTime) -> bool {
        false
    }
    fn offers(&mut self, _: Vec<Offer>, _: SystemTime) -> Vec<Command> {
        Vec::new()
    }
    fn status(&mut self, _: &TaskStatus, _: SystemTime) -> Vec<Command> {
        Vec::new()
    }
    fn request(&mut self, (n, answer): Self::Request, _: SystemTime) -> Vec<Command> {
        self.pending.push(n);
        lock(&self.seen).handled.push(n);
        vec![
            Command::Persist,
            Command::Reply(Box::new(move |r| {
                let _ = answer.send(r.map_err(|e| e.to_string()));
            })),
        ]
    }
    /// Changes marked again after a failure are written by the next round's commit.
    fn tick(&mut self, _: SystemTime) -> Vec<Command> {
        if self.pending.is_empty() {
            Vec::new()
        } else {
            vec![Command::Persist]
        }
    }
    fn persist(&mut self) -> Option<Commit> {
        if self.pending.is_empty() {
            return None;
        }
        let changes = std::mem::take(&mut self.pending);
        lock(&self.seen).commits.push(changes.clone());
        self.writing.push_back(changes);
        let outcomes = self.outcomes.clone();
        Some(Box::pin(async move {
            let outcome = outcomes.lock().await.recv().await;
            match outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(StoreError::Unavailable(e)),
                None => Err(StoreError::Unavailable("test over".into())),
            }
        }))
    }
    fn persisted(&mut self, outcome: Result<(), &StoreError>, _: SystemTime) -> Vec<Command> {
        let changes = self.writing.pop_front().unwrap_or_default();
        if outcome.is_err() {
            self.pending.extend(changes);
        }
        Vec::new()
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `f` until it holds (10 s at most).
async fn until(what: &str, f: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The answer on `rx` has not come within a short while.
async fn still_waiting(rx: &mut oneshot::Receiver<Result<(), String>>) -> bool {
    tokio::time::timeout(Duration::from_millis(150), rx)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_during_a_write_go_into_one_next_commit() -> anyhow::Result<()> {
    let cfg = MasterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..MasterConfig::default()
    };
    let store = Arc::new(meseta_store::mem::MemStore::new());
    let master = meseta_master::start(cfg, store).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (finish, outcomes) = mpsc::unbounded_channel();
    let writer = Writer {
        pending: Vec::new(),
        writing: Default::default(),
        seen: seen.clone(),
        outcomes: Arc::new(tokio::sync::Mutex::new(outcomes)),
    };
    let (handle, inbox) = meseta_framework::channel("writer");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(meseta_framework::run(
        master.master.clone(),
        writer,
        inbox,
        cancel.clone(),
    ));
    let send = |n: u32| {
        let (answer, rx) = oneshot::channel();
        let handle = handle.clone();
        async move {
            handle.send((n, answer)).await?;
            anyhow::Ok(rx)
        }
    };

    let mut first = send(1).await?;
    until("the first commit starts", || lock(&seen).commits.len() == 1).await?;
    let mut second = send(2).await?;
    let third = send(3).await?;
    until(
        "requests are handled while the write is in the store",
        || lock(&seen).handled == [1, 2, 3],
    )
    .await?;
    assert_eq!(lock(&seen).commits, [vec![1]], "one commit at a time");
    assert!(
        still_waiting(&mut first).await,
        "a reply waits for its write"
    );

    finish.send(Ok(()))?;
    assert_eq!(first.await?, Ok(()));
    until("the owed commit starts", || lock(&seen).commits.len() == 2).await?;
    assert_eq!(
        lock(&seen).commits[1],
        [2, 3],
        "what changed during the write goes into one commit"
    );
    assert!(still_waiting(&mut second).await);

    finish.send(Err("the store is down".into()))?;
    assert!(second.await?.is_err(), "a failed write fails its replies");
    assert!(third.await?.is_err());
    until("the failed changes are written again", || {
        lock(&seen).commits.len() == 3
    })
    .await?;
    assert_eq!(lock(&seen).commits[2], [2, 3]);
    finish.send(Ok(()))?;

    let mut fourth = send(4).await?;
    until("a later commit", || lock(&seen).commits.len() == 4).await?;
    finish.send(Ok(()))?;
    assert_eq!((&mut fourth).await?, Ok(()));

    cancel.cancel();
    task.await?;
    master.shutdown().await;
    Ok(())
}
