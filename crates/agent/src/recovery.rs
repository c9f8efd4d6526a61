//! Recovery at agent start: rebuild the task table and the pending updates from the work dir, and
//! settle every task that was running when the previous agent process stopped.
//!
//! For each task not terminal: `exit.json` present → emit the terminal update it implies; shim alive →
//! reattach (poll for its exit); neither → `TASK_FAILED` (`REASON_EXECUTOR_TERMINATED`). Updates emitted
//! here are only checkpointed; they are sent after the master accepts the registration.
//! DOCKER tasks are settled by `docker::run::recover` against the engine's containers (which
//! also removes the containers of tasks this agent does not know).

use std::sync::Arc;

use meseta_isolation::shim;
use meseta_types::TaskState;

use crate::monitor;
use crate::state::{plain, Shared, TaskEntry};
use crate::AgentError;

/// Load the agent id, tasks and updates into `shared`, and settle or reattach unfinished tasks.
pub(crate) fn recover(shared: &Arc<Shared>) -> Result<(), AgentError> {
    let agent_id = shared.checkpoint.read_agent_id()?;
    shared.lock().agent_id = agent_id;
    shared.load_pending(shared.checkpoint.load_updates()?);
    let tasks = shared.checkpoint.load_tasks()?;
    let mut to_settle = Vec::new();
    {
        let mut st = shared.lock();
        for (spec, record, kill_requested) in tasks {
            let record = record.unwrap_or_else(|| plain(TaskState::Staging));
            let cgroup = shared
                .task_dir(&spec.task_id)
                .and_then(|dir| meseta_isolation::read_spec(&dir).ok())
                .map(|l| l.cgroup);
            if !record.state.is_terminal() {
                to_settle.push(spec.task_id.clone());
            }
            st.tasks.insert(
                spec.task_id.clone(),
                TaskEntry {
                    spec,
                    record,
                    kill_requested,
                    cgroup,
                },
            );
        }
    }
    crate::group::recover(shared);
    // Tasks of custom executors are the executors' business (they resubscribe or are settled).
    crate::executor::recover(shared)?;
    let (of_executors, to_settle): (Vec<_>, Vec<_>) = to_settle.into_iter().partition(|id| {
        shared
            .task(id)
            .is_some_and(|t| crate::executor::is_executor_task(&t.spec))
    });
    orphans_of_executors(shared, &of_executors);
    // DOCKER tasks are settled against the engine's containers.
    let (docker, to_settle): (Vec<_>, Vec<_>) = to_settle.into_iter().partition(|id| {
        shared
            .task(id)
            .is_some_and(|t| crate::docker::run::is_docker(&t.spec))
    });
    if shared.docker.get().is_some() || !docker.is_empty() {
        tokio::spawn(crate::docker::run::recover(Arc::clone(shared), docker));
    }
    for task_id in to_settle {
        let dir = shared.task_dir(&task_id);
        let exited = dir
            .as_ref()
            .is_some_and(|d| matches!(shim::read_exit(d), Ok(Some(_))));
        if !exited && dir.as_ref().is_some_and(|d| shim::shim_alive(d)) {
            tracing::info!(task_id = %task_id, "reattaching to running task");
            tokio::spawn(monitor::watch_reattached(Arc::clone(shared), task_id));
        } else {
            tracing::info!(task_id = %task_id, exited, "task ended while the agent was down");
            monitor::finish(shared, &task_id);
        }
    }
    Ok(())
}

/// Live tasks of executors that were never recorded (the agent stopped between accepting the
/// task and starting its executor): they cannot have run.
fn orphans_of_executors(shared: &Shared, ids: &[meseta_types::TaskId]) {
    for id in ids {
        let Some(t) = shared.task(id) else { continue };
        let has_executor = {
            let st = shared.lock();
            t.spec.executor.as_ref().is_some_and(|e| {
                st.executors
                    .contains_key(&(t.spec.framework_id.clone(), e.id().to_string()))
            })
        };
        if !has_executor && !t.record.state.is_terminal() {
            let rec = crate::checkpoint::StateRecord {
                state: TaskState::Lost,
                reason: Some("REASON_EXECUTOR_TERMINATED".into()),
                message: Some("the task's executor was never started".into()),
                exit_code: None,
                healthy: None,
            };
            shared.emit(id, &t.spec.framework_id, rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::path_id::PathId;
    use crate::AgentConfig;
    use meseta_types::{Resources, TaskId};

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let cfg = AgentConfig::new(
            "http://127.0.0.1:1",
            dir,
            "127.0.0.1:0".parse().expect("addr"),
        );
        Arc::new(Shared::new(
            cfg,
            Checkpoint::open(dir).expect("open"),
            "h".into(),
            Resources::parse("cpus:2;mem:1024").expect("res"),
            "127.0.0.1:5051".parse().expect("addr"),
            None,
        ))
    }

    #[tokio::test]
    async fn recovery_settles_dead_and_exited_tasks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        // t1: running, shim gone, exit.json says 3 → FAILED with code 3.
        let s1 = crate::tasks::tests::spec("t1", "cpus:1;mem:32");
        let d1 = cp.write_task(&s1).expect("t1");
        cp.write_state(
            &PathId::parse("task", "t1").expect("id"),
            &plain(TaskState::Running),
        )
        .expect("state");
        std::fs::write(
            d1.join("exit.json"),
            r#"{"exit_code":3,"signal":null,"oom_killed":false,"error":null,"finished_at":1.0}"#,
        )
        .expect("exit");
        // t2: running, shim gone, nothing written → EXECUTOR_TERMINATED.
        let s2 = crate::tasks::tests::spec("t2", "cpus:1;mem:32");
        cp.write_task(&s2).expect("t2");
        cp.write_state(
            &PathId::parse("task", "t2").expect("id"),
            &plain(TaskState::Running),
        )
        .expect("state");
        // t3: finished and acknowledged → not reported.
        let s3 = crate::tasks::tests::spec("t3", "cpus:1;mem:32");
        cp.write_task(&s3).expect("t3");
        cp.write_state(
            &PathId::parse("task", "t3").expect("id"),
            &plain(TaskState::Finished),
        )
        .expect("state");
        cp.write_agent_id(&meseta_types::AgentId::new("ag-1"))
            .expect("id");

        let sh = shared(dir.path());
        recover(&sh).expect("recover");
        let t1 = sh.task(&TaskId::new("t1")).expect("t1");
        assert_eq!(t1.record.state, TaskState::Failed);
        assert_eq!(t1.record.exit_code, Some(3));
        let t2 = sh.task(&TaskId::new("t2")).expect("t2");
        assert_eq!(
            t2.record.reason.as_deref(),
            Some("REASON_EXECUTOR_TERMINATED")
        );
        assert_eq!(sh.pending_count(), 2);

        let reg = sh.register_message();
        assert_eq!(reg.agent_id, Some(meseta_types::AgentId::new("ag-1")));
        let mut ids: Vec<String> = reg
            .tasks
            .iter()
            .map(|t| t.spec.task_id.to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["t1".to_string(), "t2".to_string()]);

        // A second recovery does not emit the terminal updates again.
        let sh2 = shared(dir.path());
        recover(&sh2).expect("recover again");
        assert_eq!(sh2.pending_count(), 2);
    }

    #[tokio::test]
    async fn an_executor_gone_while_the_agent_was_down_loses_its_tasks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path()).expect("open");
        let mut spec = crate::tasks::tests::spec("et1", "cpus:0.1;mem:32");
        let info = serde_json::from_value(serde_json::json!({
            "executor_id": {"value": "e1"}, "framework_id": {"value": "fw-1"},
            "command": {"value": "sleep 100"}}))
        .expect("info");
        let exec = meseta_api::agent::ExecutorSpec {
            info,
            framework_info: meseta_api::scheduler::FrameworkInfo {
                id: Some(meseta_api::scheduler::IdValue::new("fw-1")),
                ..Default::default()
            },
            command: spec.command.clone(),
            env: vec![],
            user: None,
            fetch: vec![],
            checkpoint: true,
        };
        spec.executor = Some(std::sync::Arc::new(exec.clone()));
        cp.write_task(&spec).expect("task");
        cp.write_state(
            &PathId::parse("task", "et1").expect("id"),
            &plain(TaskState::Running),
        )
        .expect("state");
        let exec_dir = cp.executor_dir(
            &PathId::parse("framework", "fw-1").expect("fw"),
            &PathId::parse("executor", "e1").expect("exec"),
        );
        cp.write_executor(&exec_dir, &exec).expect("executor");
        cp.write_agent_id(&meseta_types::AgentId::new("ag-1"))
            .expect("id");

        // No shim lives for it: its running task is lost, the executor forgotten.
        let sh = shared(dir.path());
        recover(&sh).expect("recover");
        let t = sh.task(&TaskId::new("et1")).expect("task");
        assert_eq!(t.record.state, TaskState::Lost);
        assert_eq!(
            t.record.reason.as_deref(),
            Some("REASON_EXECUTOR_TERMINATED")
        );
        assert_eq!(sh.pending_count(), 1);
        assert!(sh.lock().executors.is_empty());
        assert!(cp.load_executors().expect("load").is_empty());
        // A second recovery finds nothing more to do.
        let sh2 = shared(dir.path());
        recover(&sh2).expect("recover again");
        assert_eq!(sh2.pending_count(), 1);
    }
}
