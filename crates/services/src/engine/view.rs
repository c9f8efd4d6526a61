//! The engine's state in Marathon's JSON shapes (reference §1.6, §2.7–§2.13, §3, §4.2):
//! AppInfo with counts, tasks and deployments, Task, DeploymentStepInfo and QueueItem. Only
//! keys marathon-python 0.13 accepts are emitted (§0.3).

use serde_json::{json, Map, Value};

use super::model::{marathon_ts, AppState, Deployment, Instance};
use super::Engine;

/// What to embed in an AppInfo.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embed {
    /// `tasks`.
    pub tasks: bool,
    /// `lastTaskFailure`.
    pub last_task_failure: bool,
    /// `taskStats`.
    pub task_stats: bool,
}

impl Engine {
    /// AppInfo of `st` (counts and deployments always, the rest per `embed`).
    pub fn app_json(&self, st: &AppState, embed: Embed) -> Value {
        let mut v = serde_json::to_value(&st.app).unwrap_or_else(|_| json!({}));
        let checks = !st.app.health_checks.is_empty();
        let insts: Vec<&Instance> = self
            .instances_of(&st.app.id)
            .filter(|i| i.active())
            .collect();
        let staged = insts
            .iter()
            .filter(|i| {
                matches!(
                    i.state,
                    Some(meseta_types::TaskState::Staging | meseta_types::TaskState::Starting)
                )
            })
            .count();
        let running = insts
            .iter()
            .filter(|i| i.state == Some(meseta_types::TaskState::Running))
            .count();
        let healthy = insts
            .iter()
            .filter(|i| {
                checks
                    && i.state == Some(meseta_types::TaskState::Running)
                    && i.healthy == Some(true)
            })
            .count();
        let unhealthy = insts
            .iter()
            .filter(|i| checks && i.healthy == Some(false))
            .count();
        if let Value::Object(m) = &mut v {
            m.insert("tasksStaged".into(), json!(staged));
            m.insert("tasksRunning".into(), json!(running));
            m.insert("tasksHealthy".into(), json!(healthy));
            m.insert("tasksUnhealthy".into(), json!(unhealthy));
            let deps: Vec<Value> = self
                .deployments_of(&st.app.id)
                .into_iter()
                .map(|id| json!({"id": id}))
                .collect();
            m.insert("deployments".into(), Value::Array(deps));
            if embed.tasks {
                let tasks: Vec<Value> = insts.iter().map(|i| self.task_json(st, i)).collect();
                m.insert("tasks".into(), Value::Array(tasks));
            }
            if embed.last_task_failure {
                if let Some(f) = &st.last_task_failure {
                    m.insert(
                        "lastTaskFailure".into(),
                        json!({
                            "appId": st.app.id, "host": f.host, "message": f.message,
                            "taskId": f.task_id, "instanceId": f.instance_id, "slaveId": f.agent_id,
                            "state": f.state.as_str(), "timestamp": marathon_ts(f.timestamp),
                            "version": f.version,
                        }),
                    );
                }
            }
            if embed.task_stats {
                m.insert(
                    "taskStats".into(),
                    json!({"totalSummary": {"stats": {"counts": {
                        "staged": staged, "running": running, "healthy": healthy, "unhealthy": unhealthy
                    }}}}),
                );
            }
        }
        v
    }

    /// Task JSON of an instance's current task (§3).
    pub fn task_json(&self, st: &AppState, i: &Instance) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(i.task_id().unwrap_or_default()));
        m.insert("appId".into(), json!(st.app.id));
        m.insert("host".into(), json!(i.host.as_deref().unwrap_or_default()));
        m.insert(
            "slaveId".into(),
            json!(i.agent_id.as_deref().unwrap_or_default()),
        );
        m.insert(
            "state".into(),
            json!(i.state.map_or("TASK_STAGING", |s| s.as_str())),
        );
        if let Some(t) = i.staged_at {
            m.insert("stagedAt".into(), json!(marathon_ts(t)));
        }
        if let Some(t) = i.started_at {
            m.insert("startedAt".into(), json!(marathon_ts(t)));
        }
        m.insert("version".into(), json!(&*i.version));
        m.insert("ports".into(), json!(i.ports));
        let mut service: Vec<u32> = st.app.port_definitions.iter().map(|p| p.port).collect();
        service.resize(i.ports.len(), 0);
        m.insert("servicePorts".into(), json!(service));
        m.insert(
            "ipAddresses".into(),
            json!([{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]),
        );
        m.insert("localVolumes".into(), json!([]));
        m.insert("role".into(), json!(st.app.role));
        if !st.app.health_checks.is_empty() && i.healthy.is_some() {
            let h = i.health();
            let ts = |t: Option<f64>| t.map(marathon_ts);
            m.insert(
                "healthCheckResults".into(),
                json!([{
                    "alive": i.healthy == Some(true),
                    "consecutiveFailures": h.consecutive_failures,
                    "firstSuccess": ts(h.first_success),
                    "lastSuccess": ts(h.last_success),
                    "lastFailure": ts(h.last_failure),
                    "lastFailureCause": h.last_failure_cause,
                    "taskId": i.task_id(),
                    "instanceId": &*i.id,
                }]),
            );
        }
        Value::Object(m)
    }

    /// Every live task of visible apps.
    pub fn all_tasks_json(&self) -> Vec<Value> {
        self.apps()
            .flat_map(|st| {
                self.instances_of(&st.app.id)
                    .filter(|i| i.active())
                    .map(move |i| self.task_json(st, i))
            })
            .collect()
    }

    /// `/v2/deployments` item (§4.2).
    pub fn deployment_json(&self, d: &Deployment) -> Value {
        let current: Vec<Value> = d
            .plan
            .steps
            .get(d.step)
            .map(|s| {
                s.actions
                    .iter()
                    .map(|a| {
                        let mut v = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
                        if let Value::Object(m) = &mut v {
                            m.insert("readinessCheckResults".into(), json!([]));
                        }
                        v
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": d.id,
            "version": d.version,
            "affectedApps": d.plan.affected_apps(),
            "affectedPods": [],
            "steps": d.plan.marathon_steps(),
            "currentActions": current,
            "currentStep": (d.step + 1).min(d.plan.steps.len()),
            "totalSteps": d.plan.steps.len(),
        })
    }

    /// `/v2/queue` items: apps with instances waiting for an offer, and why.
    pub fn queue_json(&self, now: f64) -> Vec<Value> {
        let mut out = Vec::new();
        for st in self.apps() {
            let count = self
                .instances_of(&st.app.id)
                .filter(|i| i.needs_launch())
                .count()
                + self.not_yet_created(st);
            if count == 0 {
                continue;
            }
            let left = (st.backoff.until - now).max(0.0);
            let s = &st.offers;
            let rejects: Vec<Value> = s
                .rejects
                .iter()
                .map(|(reason, n)| json!({"reason": reason, "declined": n, "processed": s.processed}))
                .collect();
            let mut summary = json!({
                "processedOffersCount": s.processed,
                "unusedOffersCount": s.unused,
                "rejectSummaryLastOffers": rejects,
                "rejectSummaryLaunchAttempt": rejects,
            });
            if let Value::Object(m) = &mut summary {
                if let Some(t) = s.last_unused_at {
                    m.insert("lastUnusedOfferAt".into(), json!(marathon_ts(t)));
                }
                if let Some(t) = s.last_used_at {
                    m.insert("lastUsedOfferAt".into(), json!(marathon_ts(t)));
                }
            }
            let mut item = json!({
                "app": self.app_json(st, Embed::default()),
                "count": count,
                "delay": {"timeLeftSeconds": left.ceil() as u64, "overdue": left <= 0.0},
                "since": marathon_ts(st.waiting_since.unwrap_or(now)),
                "processedOffersSummary": summary,
            });
            if !s.last_reasons.is_empty() {
                if let Value::Object(m) = &mut item {
                    m.insert(
                        "lastUnusedOffers".into(),
                        json!([{"offer": {}, "reason": s.last_reasons,
                                "timestamp": marathon_ts(s.last_unused_at.unwrap_or(now))}]),
                    );
                }
            }
            out.push(item);
        }
        out
    }

    /// Canary status of an app (`GET /v2/apps/{id}/canary`).
    pub fn canary_json(&self, id: &str) -> Option<Value> {
        let st = self.app(id)?;
        let c = st.canary.as_ref()?;
        let checks = !c.app.health_checks.is_empty();
        let canaries: Vec<&Instance> = self.instances_of(id).filter(|i| i.canary).collect();
        Some(json!({
            "appId": id,
            "state": c.state,
            "canaryVersion": c.app.version,
            "stableVersion": c.stable_version,
            "instances": c.instances,
            "running": canaries.iter().filter(|i| i.state == Some(meseta_types::TaskState::Running)).count(),
            "healthy": canaries.iter().filter(|i| i.counts(checks)).count(),
        }))
    }
}
