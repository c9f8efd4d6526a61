//! A framework of a dozen lines on the kit launches N tasks on a real master with a real agent
//! and counts how they ended. Needs the `meseta` binary (for the task shim); skips with a
//! reason without it (fails under `CI=true`).

mod common;

use std::time::{Duration, SystemTime};

use meseta_api::scheduler::{CommandInfo, IdValue, Offer, TaskInfo, TaskStatus};
use meseta_framework::{Command, FrameworkSpec, Scheduler};
use meseta_types::{Resources, TaskState};
use tokio::sync::oneshot;

/// Launches `n` tasks (task `i` exits with `i % 2`), then counts FINISHED and FAILED.
struct Count {
    n: usize,
    launched: usize,
    finished: usize,
    failed: usize,
}

impl Scheduler for Count {
    type Request = oneshot::Sender<(usize, usize)>;
    fn spec(&self) -> FrameworkSpec {
        FrameworkSpec::new("count")
    }
    fn has_work(&self) -> bool {
        true
    }
    fn wants_offers(&self, _: SystemTime) -> bool {
        self.launched < self.n
    }
    fn offers(&mut self, offers: Vec<Offer>, _: SystemTime) -> Vec<Command> {
        let mut offers = offers.into_iter();
        let Some(o) = offers.next().filter(|_| self.launched < self.n) else {
            let offer_ids = offers.map(|o| o.id).collect();
            return vec![Command::Decline {
                offer_ids,
                refuse_seconds: 1.0,
            }];
        };
        let tasks = (self.launched..self.n)
            .map(|i| task(i, &o.agent_id))
            .collect();
        self.launched = self.n;
        let rest = offers.map(|o| o.id).collect();
        vec![
            Command::Launch {
                offer_id: o.id,
                tasks,
            },
            Command::Decline {
                offer_ids: rest,
                refuse_seconds: 1.0,
            },
        ]
    }
    fn status(&mut self, s: &TaskStatus, _: SystemTime) -> Vec<Command> {
        self.finished += usize::from(s.state == TaskState::Finished);
        self.failed += usize::from(s.state == TaskState::Failed);
        vec![]
    }
    fn request(&mut self, reply: Self::Request, _: SystemTime) -> Vec<Command> {
        let counts = (self.finished, self.failed);
        vec![Command::reply(move || {
            let _ = reply.send(counts);
        })]
    }
}

fn task(i: usize, agent: &IdValue) -> TaskInfo {
    TaskInfo {
        name: format!("count-{i}"),
        task_id: IdValue::new(format!("count-{i}")),
        agent_id: Some(agent.clone()),
        resources: Resources::parse("cpus:0.1;mem:16").expect("literal resources"),
        command: Some(CommandInfo {
            shell: true,
            value: Some(format!("exit {}", i % 2)),
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
async fn a_framework_on_the_kit_launches_n_tasks_and_counts_their_ends() -> anyhow::Result<()> {
    let Some(exe) = common::meseta_exe() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (master, agent) =
        common::master_and_agent(exe, dir.path(), Duration::from_millis(200)).await?;

    let (handle, inbox) = meseta_framework::channel("count");
    let cancel = tokio_util::sync::CancellationToken::new();
    let count = Count {
        n: 6,
        launched: 0,
        finished: 0,
        failed: 0,
    };
    let session = tokio::spawn(meseta_framework::run(
        master.master.clone(),
        count,
        inbox,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = handle.ask(|reply| reply).await?;
        if counts.0 + counts.1 == 6 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        counts,
        (3, 3),
        "three exit 0 (FINISHED), three exit 1 (FAILED)"
    );

    cancel.cancel();
    session.await?;
    agent.shutdown(true).await;
    master.shutdown().await;
    Ok(())
}
