//! The jobs scheduler's request side: one [`JobsCommand`] from the HTTP edge becomes one planner
//! call, whose commands are carried out, then written ([`Command::Persist`]), then answered
//! ([`Command::Reply`], released by the kit after the write).

use std::time::SystemTime;

use meseta_api::chronos::ChronosJob;
use meseta_framework::Command;
use meseta_jobs::job::{JobSpec, Rules};
use meseta_jobs::planner;
use tokio::sync::oneshot;

use crate::runtime::{timestamp, Jobs};
use crate::{CreateKind, JobView, JobsCommand, JobsError};

/// A reply to a change.
type Done = oneshot::Sender<Result<(), JobsError>>;

impl Jobs {
    /// Serve one HTTP request.
    pub(crate) fn handle(&mut self, cmd: JobsCommand, now: SystemTime) -> Vec<Command> {
        let ts = timestamp(now);
        match cmd {
            JobsCommand::Put {
                job,
                kind,
                legacy_names,
                reply,
            } => {
                let rules = Rules {
                    legacy_names,
                    allow_root: self.master.allows_root_tasks(),
                };
                let r = self.put(&job, kind, rules, now);
                self.finish(r, reply, now)
            }
            JobsCommand::Remove { name, reply } => {
                let r = self.planner.remove(&name, ts).map_err(JobsError::from);
                self.finish(r, reply, now)
            }
            JobsCommand::RunNow { name, reply } => {
                let r = self.planner.run_now(&name, ts).map_err(JobsError::from);
                self.finish(r, reply, now)
            }
            JobsCommand::Kill { name, reply } => {
                let r = self.planner.kill(&name).map_err(JobsError::from);
                self.finish(r, reply, now)
            }
            JobsCommand::MarkSuccess { name, reply } => {
                let r = self
                    .planner
                    .mark_success(&name, ts)
                    .map_err(JobsError::from);
                self.finish(r, reply, now)
            }
            JobsCommand::SetDisabled {
                name,
                disabled,
                reply,
            } => {
                let r = self.planner.set_disabled(&name, disabled, ts);
                self.finish(r.map_err(JobsError::from), reply, now)
            }
            JobsCommand::List { reply } => answer(reply, self.views()),
            JobsCommand::Get { name, reply } => answer(reply, self.view(&name)),
            JobsCommand::Graph { dot, reply } => {
                let g = if dot {
                    self.planner.graph_dot()
                } else {
                    self.planner.graph_csv()
                };
                answer(reply, g)
            }
        }
    }

    fn put(
        &mut self,
        job: &ChronosJob,
        kind: CreateKind,
        rules: Rules,
        now: SystemTime,
    ) -> Result<Vec<planner::Command>, JobsError> {
        let has_parents = job.parents.as_ref().is_some_and(|p| !p.is_empty());
        if kind == CreateKind::Dependent && !has_parents {
            return Err(JobsError::BadRequest(
                "parents: a dependent job needs at least one parent".to_string(),
            ));
        }
        if kind == CreateKind::Scheduled && has_parents {
            return Err(JobsError::BadRequest(
                "parents: a job with parents must be posted to /scheduler/dependency".to_string(),
            ));
        }
        if kind == CreateKind::New && self.planner.job(&job.name).is_some() {
            return Err(JobsError::Conflict(job.name.clone()));
        }
        let ts = timestamp(now);
        let spec = JobSpec::from_chronos_with(job, ts, rules).map_err(JobsError::Invalid)?;
        Ok(self.planner.add(spec, ts)?)
    }

    /// Carry out an accepted change, write it, then answer; a refused one is answered as is.
    fn finish(
        &mut self,
        r: Result<Vec<planner::Command>, JobsError>,
        reply: Done,
        now: SystemTime,
    ) -> Vec<Command> {
        let cmds = match r {
            Ok(cmds) => cmds,
            Err(e) => return answer(reply, Err(e)),
        };
        let mut out = self.apply(cmds, now);
        out.push(Command::Persist);
        out.push(Command::Reply(Box::new(move |written| {
            let _ = reply.send(written.map_err(JobsError::Store));
        })));
        out
    }

    fn views(&self) -> Vec<JobView> {
        let mut v: Vec<JobView> = self
            .planner
            .jobs()
            .filter_map(|(s, _)| self.view(&s.name))
            .collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    fn view(&self, name: &str) -> Option<JobView> {
        let (spec, state) = self.planner.job(name)?;
        Some(JobView {
            spec: spec.clone(),
            state: state.clone(),
            chronos: spec.to_chronos(state),
            stats: self.planner.stats(name),
            queued: self.queue.queued_for(name),
        })
    }
}

/// Answer with `value` at the end of the round.
fn answer<T: Send + 'static>(reply: oneshot::Sender<T>, value: T) -> Vec<Command> {
    vec![Command::reply(move || {
        let _ = reply.send(value);
    })]
}
