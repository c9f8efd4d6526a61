//! The jobs runtime's request side: one [`JobsCommand`] from the HTTP edge becomes one planner
//! call, whose commands are executed (store writes awaited) before the reply is sent.

use jiff::Timestamp;
use meseta_api::chronos::ChronosJob;
use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::{Command, PlannerError};

use super::runtime::Runtime;
use super::{CreateKind, JobView, JobsCommand, JobsError};

impl Runtime {
    /// Serve one HTTP request.
    pub(super) async fn handle(&mut self, cmd: JobsCommand) {
        match cmd {
            JobsCommand::Put { job, kind, reply } => {
                let r = self.put(&job, kind).await;
                let _ = reply.send(r);
            }
            JobsCommand::Remove { name, reply } => {
                let r = self.planner.remove(&name, Timestamp::now());
                let _ = reply.send(self.finish(r).await);
            }
            JobsCommand::RunNow { name, reply } => {
                let r = self.planner.run_now(&name, Timestamp::now());
                let _ = reply.send(self.finish(r).await);
            }
            JobsCommand::Kill { name, reply } => {
                let r = self.planner.kill(&name);
                let _ = reply.send(self.finish(r).await);
            }
            JobsCommand::MarkSuccess { name, reply } => {
                let r = self.planner.mark_success(&name, Timestamp::now());
                let _ = reply.send(self.finish(r).await);
            }
            JobsCommand::SetDisabled {
                name,
                disabled,
                reply,
            } => {
                let r = self.planner.set_disabled(&name, disabled, Timestamp::now());
                let _ = reply.send(self.finish(r).await);
            }
            JobsCommand::List { reply } => {
                let _ = reply.send(self.views());
            }
            JobsCommand::Get { name, reply } => {
                let _ = reply.send(self.view(&name));
            }
            JobsCommand::Graph { dot, reply } => {
                let g = if dot {
                    self.planner.graph_dot()
                } else {
                    self.planner.graph_csv()
                };
                let _ = reply.send(g);
            }
        }
    }

    async fn put(&mut self, job: &ChronosJob, kind: CreateKind) -> Result<(), JobsError> {
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
        let now = Timestamp::now();
        let spec = JobSpec::from_chronos(job, now).map_err(JobsError::Invalid)?;
        let r = self.planner.add(spec, now);
        self.finish(r).await
    }

    /// Execute the commands of an accepted change before replying.
    async fn finish(&mut self, r: Result<Vec<Command>, PlannerError>) -> Result<(), JobsError> {
        let cmds = r?;
        self.execute(cmds).await?;
        Ok(())
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
            queued: self.queue.iter().filter(|q| q.job == name).count(),
        })
    }
}
