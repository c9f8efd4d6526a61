//! Turning queued runs into tasks: the resources a run needs, the `TaskInfo` for it, and a
//! first-fit placement of queued runs onto offers. Pure (no channels, no clock) so it is
//! unit-tested directly; `runtime.rs` turns the placement into launches and a decline.

use std::collections::BTreeMap;

use meseta_api::scheduler::{
    CommandInfo, EnvVariable, Environment, IdValue, Offer, TaskInfo, TaskStatus,
};
use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::{RunId, RunOutcome};
use meseta_jobs::queue::Queued;
use meseta_types::{Resource, ResourceError, Resources, TaskState};

/// The scalar resources a run of `spec` needs; an amount the resource type cannot hold (only a
/// record written before such amounts were refused can have one) is an error, never a zero.
pub(crate) fn needed(spec: &JobSpec) -> Result<Resources, ResourceError> {
    let mut r = Resources::new();
    for (name, amount) in [("cpus", spec.cpus), ("mem", spec.mem), ("disk", spec.disk)] {
        if amount > 0.0 {
            // Scalars of distinct names never conflict.
            let _ = r.push(Resource::scalar(name, amount)?);
        }
    }
    Ok(r)
}

/// The task of run `run` of `spec` on `agent_id`.
pub(crate) fn task_info(spec: &JobSpec, run: &RunId, agent_id: &IdValue) -> TaskInfo {
    let variables = spec
        .env
        .iter()
        .map(|(name, value)| EnvVariable {
            name: name.clone(),
            value: value.clone(),
        })
        .collect::<Vec<_>>();
    let command = CommandInfo {
        shell: spec.shell,
        value: Some(spec.command.clone()),
        arguments: (!spec.shell).then(|| {
            std::iter::once(spec.command.clone())
                .chain(spec.arguments.iter().cloned())
                .collect()
        }),
        environment: (!variables.is_empty()).then_some(Environment { variables }),
        user: spec.user.clone(),
        uris: None,
        secret_env: spec
            .secret_env
            .iter()
            .map(|e| meseta_api::scheduler::SecretEnv {
                name: e.name.clone(),
                reference: e.source.clone(),
            })
            .collect(),
    };
    TaskInfo {
        name: spec.name.clone(),
        task_id: IdValue::new(run.0.clone()),
        agent_id: Some(agent_id.clone()),
        resources: needed(spec).unwrap_or_default(),
        command: Some(command),
        container: spec
            .container
            .as_ref()
            .and_then(meseta_api::container::ContainerInfo::from_chronos),
        ..TaskInfo::default()
    }
}

/// The outcome of placing the queue on the held offers.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// Offer id → tasks to launch on it.
    pub accepts: BTreeMap<String, (IdValue, Vec<TaskInfo>)>,
    /// Offers nothing was placed on.
    pub unused: Vec<IdValue>,
    /// Runs still waiting.
    pub still_queued: Vec<Queued>,
}

/// First-fit: each queued run (in order) goes on the first offer with room left.
/// `spec_of` returns `None` for a job that no longer exists: such runs are dropped.
pub(crate) fn place<'a>(
    queue: Vec<Queued>,
    offers: &[Offer],
    spec_of: impl Fn(&str) -> Option<&'a JobSpec>,
) -> Placement {
    let mut left: Vec<Resources> = offers.iter().map(|o| o.resources.clone()).collect();
    let mut out = Placement::default();
    for q in queue {
        let Some(spec) = spec_of(&q.job) else {
            continue;
        };
        let need = match needed(spec) {
            Ok(need) => need,
            Err(e) => {
                // It never fits: it stays queued until its epsilon runs out and is skipped.
                tracing::error!(job = %q.job, error = %e, "job asks for resources that cannot be represented");
                out.still_queued.push(q);
                continue;
            }
        };
        let slot = left.iter().position(|free| free.contains(&need));
        match slot {
            Some(i) => {
                left[i] = left[i].checked_sub(&need).unwrap_or_default();
                let offer = &offers[i];
                let task = task_info(spec, &q.run, &offer.agent_id);
                out.accepts
                    .entry(offer.id.value.clone())
                    .or_insert_with(|| (offer.id.clone(), Vec::new()))
                    .1
                    .push(task);
            }
            None => out.still_queued.push(q),
        }
    }
    out.unused = offers
        .iter()
        .filter(|o| !out.accepts.contains_key(&o.id.value))
        .map(|o| o.id.clone())
        .collect();
    out
}

/// What a terminal status means for the run, with the exit code when known.
pub(crate) fn outcome(status: &TaskStatus) -> Option<(RunOutcome, Option<i32>)> {
    let exit = exit_code(status.message.as_deref());
    match status.state {
        TaskState::Finished => Some((RunOutcome::Succeeded, exit.or(Some(0)))),
        TaskState::Failed
        | TaskState::Error
        | TaskState::Lost
        | TaskState::Dropped
        | TaskState::Gone
        | TaskState::GoneByOperator => Some((RunOutcome::Failed, exit)),
        TaskState::Killed => Some((RunOutcome::Killed, exit)),
        _ => None,
    }
}

/// The exit status in an agent's message ("Command exited with status 7").
fn exit_code(message: Option<&str>) -> Option<i32> {
    let m = message?;
    let rest = &m[m.find("exited with status ")? + "exited with status ".len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use meseta_api::chronos::ChronosJob;

    fn spec(name: &str, cpus: f64) -> JobSpec {
        let j: ChronosJob = serde_json::from_value(serde_json::json!({
            "name": name, "command": "echo hi", "schedule": "R//PT1S", "cpus": cpus, "mem": 32,
            "environmentVariables": [{"name": "A", "value": "1"}]
        }))
        .expect("chronos json");
        JobSpec::from_chronos(&j, Timestamp::now()).expect("valid job")
    }

    fn offer(id: &str, res: &str) -> Offer {
        Offer {
            id: IdValue::new(id),
            framework_id: IdValue::new("fw"),
            agent_id: IdValue::new(format!("agent-{id}")),
            hostname: "h".into(),
            resources: Resources::parse(res).expect("resources"),
            ..Offer::default()
        }
    }

    fn queued(job: &str, n: u32) -> Queued {
        Queued {
            run: RunId(format!("ct:{n}:0:{job}:")),
            job: job.into(),
            queued_at: Timestamp::UNIX_EPOCH,
            restored: false,
        }
    }

    #[test]
    fn task_info_carries_command_env_and_resources() {
        let s = spec("a", 0.5);
        let t = task_info(&s, &RunId("ct:1:0:a:".into()), &IdValue::new("ag"));
        assert_eq!(t.task_id.as_str(), "ct:1:0:a:");
        assert_eq!(t.resources.cpus(), 0.5);
        assert_eq!(t.resources.mem(), 32.0);
        let cmd = t.command.expect("command");
        assert!(cmd.shell);
        assert_eq!(cmd.value.as_deref(), Some("echo hi"));
        assert_eq!(cmd.environment.expect("env").variables[0].name, "A");
    }

    #[test]
    fn first_fit_packs_until_full_and_keeps_the_rest_queued() {
        let specs = [spec("a", 1.0), spec("b", 1.0)];
        let find = |n: &str| specs.iter().find(|s| s.name == n);
        let offers = [
            offer("o1", "cpus:1.5;mem:1024;disk:1024"),
            offer("o2", "cpus:0.5;mem:1024;disk:1024"),
        ];
        let q = vec![queued("a", 1), queued("b", 2), queued("gone", 3)];
        let p = place(q, &offers, find);
        assert_eq!(p.accepts.len(), 1);
        assert_eq!(p.accepts["o1"].1.len(), 1);
        assert_eq!(p.still_queued.len(), 1, "b does not fit anywhere");
        assert_eq!(p.still_queued[0].job, "b");
        assert_eq!(p.unused, vec![IdValue::new("o2")]);
    }

    #[test]
    fn statuses_map_to_outcomes_with_exit_codes() {
        let mut s = TaskStatus::new(IdValue::new("t"), TaskState::Failed, 0.0);
        s.message = Some("Command exited with status 7".into());
        assert_eq!(outcome(&s), Some((RunOutcome::Failed, Some(7))));
        s.state = TaskState::Finished;
        s.message = None;
        assert_eq!(outcome(&s), Some((RunOutcome::Succeeded, Some(0))));
        s.state = TaskState::Killed;
        assert_eq!(outcome(&s), Some((RunOutcome::Killed, None)));
        s.state = TaskState::Running;
        assert_eq!(outcome(&s), None);
    }
}
