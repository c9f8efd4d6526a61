//! A launch whose write failed never leaves: a scheduler whose first writes fail (as a store
//! that is unreachable, or the fenced write of a deposed leader) gets its offers declined
//! instead, learns by reconciliation that the tasks are unknown, and launches again once a write
//! goes through. Needs the `meseta` binary (for the task shim); skips with a reason without it
//! (fails under `CI=true`).

mod common;

use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{CommandInfo, IdValue, Offer, ReconcileTask, TaskInfo, TaskStatus};
use meseta_framework::{Command, Commit, FrameworkSpec, Scheduler};
use meseta_store::StoreError;
use meseta_types::{Resources, TaskState};
use tokio::sync::oneshot;

/// Launches one task per attempt (`held-<n>`) until one runs; its first `failing` writes fail.
struct Flaky {
    failing: usize,
    writes_ok: usize,
    attempt: usize,
    /// The task of the current attempt, once launched (not yet known lost).
    current: Option<(String, IdValue)>,
    /// Every update: (task, state, successful writes when it came).
    seen: Vec<(String, TaskState, usize)>,
}

impl Scheduler for Flaky {
    type Request = oneshot::Sender<Vec<(String, TaskState, usize)>>;
    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::new("flaky").reconcile_every(Duration::from_secs(3600))
    }
    fn has_work(&self) -> bool {
        true
    }
    fn wants_offers(&self, _: SystemTime) -> bool {
        self.current.is_none()
    }
    fn offers(&mut self, offers: Vec<Offer>, _: SystemTime) -> Vec<Command> {
        let mut offers = offers.into_iter();
        let Some(o) = offers.next().filter(|_| self.current.is_none()) else {
            let offer_ids = offers.map(|o| o.id).collect();
            return vec![Command::Decline {
                offer_ids,
                refuse_seconds: 0.5,
            }];
        };
        let id = format!("held-{}", self.attempt);
        self.attempt += 1;
        self.current = Some((id.clone(), o.agent_id.clone()));
        let rest = offers.map(|o| o.id).collect();
        vec![
            Command::Persist,
            Command::Launch {
                offer_id: o.id,
                tasks: vec![task(&id, &o.agent_id)],
            },
            Command::Decline {
                offer_ids: rest,
                refuse_seconds: 0.5,
            },
        ]
    }
    fn status(&mut self, s: &TaskStatus, _: SystemTime) -> Vec<Command> {
        let id = s.task_id.as_str().to_string();
        self.seen.push((id.clone(), s.state, self.writes_ok));
        let ended = !matches!(
            s.state,
            TaskState::Staging | TaskState::Starting | TaskState::Running
        );
        if ended && self.current.as_ref().is_some_and(|(c, _)| *c == id) {
            self.current = None;
        }
        vec![]
    }
    fn reconcile(&mut self) -> Vec<Command> {
        let tasks = self
            .current
            .iter()
            .map(|(id, agent)| ReconcileTask {
                task_id: IdValue::new(id.clone()),
                agent_id: Some(agent.clone()),
            })
            .collect();
        vec![Command::Reconcile(tasks)]
    }
    fn persist(&mut self) -> Option<Commit> {
        let r = if self.failing > 0 {
            self.failing -= 1;
            Err(StoreError::Unavailable("the store is down (test)".into()))
        } else {
            self.writes_ok += 1;
            Ok(())
        };
        Some(Box::pin(async move { r }))
    }
    fn request(&mut self, reply: Self::Request, _: SystemTime) -> Vec<Command> {
        let seen = self.seen.clone();
        vec![Command::reply(move || {
            let _ = reply.send(seen);
        })]
    }
}

fn task(id: &str, agent: &IdValue) -> TaskInfo {
    TaskInfo {
        name: id.to_string(),
        task_id: IdValue::new(id),
        agent_id: Some(agent.clone()),
        resources: Resources::parse("cpus:0.1;mem:16").expect("literal resources"),
        command: Some(CommandInfo {
            shell: true,
            value: Some("sleep 30".into()),
            arguments: None,
            environment: None,
            user: None,
            uris: None,
            secret_env: Vec::new(),
        }),
        ..TaskInfo::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_write_failed_never_reaches_an_agent() -> anyhow::Result<()> {
    let Some(exe) = common::meseta_exe() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (master, agent) =
        common::master_and_agent(exe, dir.path(), Duration::from_millis(100)).await?;

    let (handle, inbox) = meseta_framework::channel("flaky");
    let cancel = tokio_util::sync::CancellationToken::new();
    let flaky = Flaky {
        failing: 2,
        writes_ok: 0,
        attempt: 0,
        current: None,
        seen: Vec::new(),
    };
    let session = tokio::spawn(meseta_framework::run(
        master.master.clone(),
        flaky,
        inbox,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = handle.ask(|reply| reply).await?;
        let running = seen.iter().any(|(_, s, _)| *s == TaskState::Running);
        if running || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The two attempts whose writes failed were never launched: reconciliation found them
    // unknown; the third, written, runs.
    let states = |id: &str| -> Vec<TaskState> {
        seen.iter()
            .filter(|(t, _, _)| t == id)
            .map(|(_, s, _)| *s)
            .collect()
    };
    for held in ["held-0", "held-1"] {
        let s = states(held);
        assert!(
            !s.is_empty()
                && s.iter().all(|s| !matches!(
                    s,
                    TaskState::Staging | TaskState::Starting | TaskState::Running
                )),
            "{held}: {s:?} (all: {seen:?})"
        );
    }
    assert!(states("held-2").contains(&TaskState::Running), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|(_, s, _)| *s == TaskState::Running)
            .all(|(_, _, ok)| *ok >= 1),
        "{seen:?}"
    );

    cancel.cancel();
    session.await?;
    agent.shutdown(true).await;
    master.shutdown().await;
    Ok(())
}
