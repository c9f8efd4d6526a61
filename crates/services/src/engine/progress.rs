//! Running deployments (reference §4.3–§4.6) and the time-driven work: each call of
//! [`Engine::advance`] looks at every deployment's current step, creates or decommissions
//! instances so the step can progress, and moves to the next step when it is complete.
//! [`Engine::tick`] also replaces instances unreachable for too long and forgets old backoff.

use std::sync::Arc;

use meseta_api::marathon::{KillSelection, UnreachableStrategy};
use serde_json::{json, Value};

use super::model::{config_of, DeploymentKind, Goal, Instance};
use super::{Engine, MAX_WAITING};
use crate::plan::{rolling_step, DeploymentAction, RollingState};

impl Engine {
    /// Time-driven work; call after every batch of inputs and periodically.
    pub fn tick(&mut self, now: f64) {
        self.expire_unreachable(now);
        self.expire_backoff(now);
        self.canary_auto(now);
        self.advance(now);
        self.pods_tick(now);
        self.strings.prune();
    }

    /// Progress every deployment as far as the instance table allows.
    pub fn advance(&mut self, now: f64) {
        let ids: Vec<String> = self.deployments.keys().cloned().collect();
        for id in ids {
            // A step may complete at once (Start, or nothing to do): keep going.
            for _ in 0..16 {
                let Some(d) = self.deployments.get(&id) else {
                    break;
                };
                let Some(step) = d.plan.steps.get(d.step).cloned() else {
                    self.finish_deployment(&id, now);
                    break;
                };
                let canary = d.kind == DeploymentKind::Canary;
                let mut done = true;
                for action in &step.actions {
                    done &= if canary {
                        self.run_canary_step(action.app(), now)
                    } else {
                        self.run_action(action, now)
                    };
                }
                if !done {
                    break;
                }
                self.event("deployment_step_success", now, self.step_body(&id));
                if let Some(d) = self.deployments.get_mut(&id) {
                    d.step += 1;
                }
                self.persist_deployment(&id);
                if self
                    .deployments
                    .get(&id)
                    .is_some_and(|d| d.step < d.plan.steps.len())
                {
                    self.announce_step(&id, now);
                }
            }
        }
    }

    /// Execute one action; true when it is complete.
    fn run_action(&mut self, action: &DeploymentAction, now: f64) -> bool {
        match action {
            DeploymentAction::Start { .. } => true,
            DeploymentAction::Scale { app, .. } => self.run_scale(app, now),
            DeploymentAction::Restart { app } => self.run_restart(app, now),
            DeploymentAction::Stop { app } => self.run_stop(app, now),
        }
    }

    fn run_scale(&mut self, app: &str, now: f64) -> bool {
        let Some(st) = self.apps.get(app) else {
            return true;
        };
        if st.deleted {
            return true;
        }
        let n = st.app.instances as usize;
        let checks = !st.app.health_checks.is_empty();
        let live: Vec<&Instance> = self
            .instances_of(app)
            .filter(|i| i.goal == Goal::Running)
            .collect();
        let live_n = live.len();
        if live_n < n {
            // Only a bounded number wait at a time; more are created as these are placed.
            for _ in 0..(n - live_n).min(self.waiting_room(app)) {
                self.new_instance(app, false, now);
            }
        } else if live_n > n {
            let victims = self.victims(app, live_n - n, |_| true);
            for v in victims {
                self.decommission(app, &v);
            }
        }
        let counted = self
            .instances_of(app)
            .filter(|i| i.goal == Goal::Running && i.counts(checks))
            .count();
        let dying = self
            .instances_of(app)
            .any(|i| i.goal == Goal::Decommissioned);
        counted >= n && !dying
    }

    fn run_restart(&mut self, app: &str, now: f64) -> bool {
        let Some(st) = self.apps.get(app) else {
            return true;
        };
        if st.deleted {
            return true;
        }
        let cfg = st.config();
        let checks = !st.app.health_checks.is_empty();
        let strategy = st.app.upgrade_strategy;
        let mut s = RollingState {
            target: st.app.instances,
            ..RollingState::default()
        };
        for i in self.instances_of(app) {
            let new = *i.config == *cfg;
            match (i.goal, new) {
                (Goal::Decommissioned, _) => s.old_dying += 1,
                (Goal::Running, true) => {
                    s.new_started += 1;
                    if i.counts(checks) {
                        s.new_healthy += 1;
                    }
                }
                (Goal::Running, false) if i.counts(checks) => s.old_healthy += 1,
                (Goal::Running, false) => s.old_unhealthy += 1,
            }
        }
        // More new instances than wanted (a scale-down during a restart): trim them.
        if s.new_started > s.target {
            let extra = (s.new_started - s.target) as usize;
            for v in self.victims(app, extra, |i| *i.config == *cfg) {
                self.decommission(app, &v);
            }
            return false;
        }
        let d = rolling_step(&strategy, &s);
        if d.kill_old > 0 {
            // Unhealthy old instances first, then healthy ones in killSelection order.
            let mut victims = self.victims(app, d.kill_old as usize, |i| {
                *i.config != *cfg && !i.counts(checks)
            });
            let more = d.kill_old as usize - victims.len().min(d.kill_old as usize);
            victims.extend(self.victims(app, more, |i| *i.config != *cfg && i.counts(checks)));
            for v in victims {
                self.decommission(app, &v);
            }
        }
        for _ in 0..(d.start_new as usize).min(self.waiting_room(app)) {
            self.new_instance(app, false, now);
        }
        d.done
    }

    fn run_stop(&mut self, app: &str, now: f64) -> bool {
        let ids: Vec<Arc<str>> = self.instances_of(app).map(|i| Arc::clone(&i.id)).collect();
        for i in &ids {
            if self
                .instance(app, i)
                .is_some_and(|x| x.goal == Goal::Running)
            {
                self.decommission(app, i);
            }
        }
        if self.instances_of(app).next().is_some() {
            return false;
        }
        if self.apps.get(app).is_some_and(|a| a.deleted) {
            if let Some(st) = self.apps.remove(app) {
                self.remove_app_id(&st.app);
            }
            self.out.apps.remove(app);
            self.out.forget_apps.insert(app.to_owned());
            self.event("app_terminated_event", now, json!({"appId": app}));
        }
        true
    }

    /// Up to `n` instances wanted running that match `filter`, in kill order (reference §4.5):
    /// sentenced first, then by condition (unreachable, waiting, staging, starting, running),
    /// then by `killSelection`.
    pub(crate) fn victims(
        &self,
        app: &str,
        n: usize,
        filter: impl Fn(&Instance) -> bool,
    ) -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        let youngest_first = self
            .apps
            .get(app)
            .is_none_or(|a| a.app.kill_selection == KillSelection::YoungestFirst);
        let mut c: Vec<&Instance> = self
            .instances_of(app)
            .filter(|i| i.goal == Goal::Running && filter(i))
            .collect();
        c.sort_by(|a, b| {
            let key = |i: &Instance| (!i.sentenced, weight(i));
            key(a).cmp(&key(b)).then_with(|| {
                let (ta, tb) = (
                    a.staged_at.unwrap_or(f64::MAX),
                    b.staged_at.unwrap_or(f64::MAX),
                );
                if youngest_first {
                    tb.total_cmp(&ta)
                } else {
                    ta.total_cmp(&tb)
                }
            })
        });
        c.into_iter().take(n).map(|i| i.id.to_string()).collect()
    }

    /// How many more instances of `app` may be created to wait for an offer now: at most
    /// [`MAX_WAITING`] wait at a time, so the work and the records an app costs follow what is
    /// placed, not what is wanted (a million instances on a small cluster stay cheap).
    pub(crate) fn waiting_room(&self, app: &str) -> usize {
        let waiting = self
            .instances_of(app)
            .filter(|i| i.needs_launch())
            .take(MAX_WAITING)
            .count();
        MAX_WAITING - waiting
    }

    /// Instances `app`'s running deployments still want but have not created yet (they are
    /// created as the waiting ones are placed; `/v2/queue` counts them as waiting).
    pub fn not_yet_created(&self, st: &super::AppState) -> usize {
        let id = &st.app.id;
        if st.deleted || !self.deployments.values().any(|d| d.plan.affects(id)) {
            return 0;
        }
        let live = self
            .instances_of(id)
            .filter(|i| i.goal == Goal::Running)
            .count();
        (st.app.instances as usize).saturating_sub(live)
    }

    /// A new instance of `app` (its canary configuration when `canary`), waiting for an offer.
    ///
    /// It is not written: the deployment step that wanted it is, and creates it again after a
    /// restart (the step counts the live instances), so the record of a waiting instance would
    /// only cost a store write. It is written when placed, before its task is launched. A caller
    /// whose new instance nothing else brings back (a replacement outside deployments) writes it
    /// with `persist_instance`.
    pub(crate) fn new_instance(&mut self, app: &str, canary: bool, now: f64) -> Option<String> {
        let st = self.apps.get_mut(app)?;
        let (cfg, version) = match (&st.canary, canary) {
            (Some(c), true) => (config_of(&c.app), c.app.version.as_deref()),
            _ => (st.config(), st.app.version.as_deref()),
        };
        let version = self.strings.intern(version.unwrap_or_default());
        let cfg = self.strings.intern(&cfg);
        if st.waiting_since.is_none() {
            st.waiting_since = Some(now);
        }
        let ready = st.app.readiness_checks.is_empty();
        let safe = st.app.safe_id();
        let id: Arc<str> = Arc::from(format!("{safe}.instance-{}", self.new_uuid()));
        let inst = Instance::waiting(Arc::clone(&id), version, cfg, canary, ready);
        super::note_waiting(&mut self.waiting, app, false, inst.needs_launch());
        self.instances
            .entry(app.to_owned())
            .or_default()
            .insert(Arc::clone(&id), Box::new(inst));
        self.out.revive = true;
        Some(id.to_string())
    }

    /// Emit `deployment_info` for the current step.
    pub(crate) fn announce_step(&mut self, id: &str, now: f64) {
        let body = self.step_body(id);
        self.event("deployment_info", now, body);
    }

    fn step_body(&self, id: &str) -> Value {
        let Some(d) = self.deployments.get(id) else {
            return json!({});
        };
        let actions = d
            .plan
            .steps
            .get(d.step)
            .map(|s| serde_json::to_value(&s.actions).unwrap_or(Value::Null))
            .unwrap_or_else(|| json!([]));
        json!({"plan": plan_json(d), "currentStep": {"actions": actions}})
    }

    /// The deployment completed.
    pub(crate) fn finish_deployment(&mut self, id: &str, now: f64) {
        let Some(d) = self.deployments.remove(id) else {
            return;
        };
        self.out.deployments.remove(id);
        self.out.forget_deployments.insert(id.to_owned());
        if d.kind == DeploymentKind::Canary {
            for app in d.plan.affected_apps() {
                if let Some(c) = self.apps.get_mut(&app).and_then(|a| a.canary.as_mut()) {
                    if c.state == "deploying" {
                        c.state = "holding".into();
                        c.healthy_since = Some(now);
                    }
                }
                self.persist_app(&app);
            }
        }
        self.event(
            "deployment_success",
            now,
            json!({"id": id, "plan": plan_json(&d)}),
        );
    }

    /// The deployment stops unfinished (cancelled or superseded).
    pub(crate) fn fail_deployment(&mut self, id: &str, now: f64, reason: &str) {
        let Some(d) = self.deployments.remove(id) else {
            return;
        };
        self.out.deployments.remove(id);
        self.out.forget_deployments.insert(id.to_owned());
        self.event(
            "deployment_failed",
            now,
            json!({"id": id, "plan": plan_json(&d), "reason": reason}),
        );
    }

    /// Instances unreachable longer than `inactiveAfterSeconds` are expunged and replaced.
    fn expire_unreachable(&mut self, now: f64) {
        let mut expired = Vec::new();
        for (app, st) in &self.apps {
            let UnreachableStrategy::Enabled {
                inactive_after_seconds,
                ..
            } = st.app.unreachable_strategy
            else {
                continue;
            };
            for i in self.instances_of(app) {
                if let Some(since) = i.unreachable_since() {
                    if now - since >= inactive_after_seconds as f64 {
                        expired.push((app.clone(), i.id.to_string(), i.canary, i.goal));
                    }
                }
            }
        }
        for (app, inst, canary, goal) in expired {
            self.forget_instance(&app, &inst);
            self.event(
                "instance_changed_event",
                now,
                json!({"instanceId": inst, "condition": "UnreachableInactive", "runSpecId": app}),
            );
            if goal == Goal::Running && !self.apps.get(&app).is_some_and(|a| a.deleted) {
                // No deployment wants the replacement: its record is what keeps the count.
                if let Some(id) = self.new_instance(&app, canary, now) {
                    self.persist_instance(&app, &id);
                }
            }
        }
    }

    /// Backoff is forgotten after `delay + maxLaunchDelaySeconds` without a new failure.
    fn expire_backoff(&mut self, now: f64) {
        for st in self.apps.values_mut() {
            let b = &st.backoff;
            if b.delay > 0.0 && now - b.last_failure > b.delay + st.app.max_launch_delay_seconds {
                st.backoff = Default::default();
            }
        }
    }
}

/// Kill order weight of an instance's condition (lower dies first).
fn weight(i: &Instance) -> u8 {
    use meseta_types::TaskState;
    match i.state {
        _ if i.unreachable_since().is_some() => 1,
        None => 2,
        Some(TaskState::Staging) => 2,
        Some(TaskState::Starting) => 3,
        Some(TaskState::Running) => 4,
        Some(_) => 5,
    }
}

/// The `plan` object of deployment events (with `original`/`target` stubs marathon-python needs).
pub(crate) fn plan_json(d: &super::Deployment) -> Value {
    json!({
        "id": d.id,
        "version": d.version,
        "steps": d.plan.marathon_steps(),
        "original": {"id": "/", "version": d.version},
        "target": {"id": "/", "version": d.version},
    })
}
