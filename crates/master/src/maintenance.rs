//! Maintenance primitives (Mesos `docs/maintenance.md`): the schedule of unavailability windows
//! by machine, inverse offers to the frameworks using a scheduled machine and their answers,
//! `machine/down` (agents deactivated, their tasks killed) and `machine/up`.
//!
//! Machines are `{hostname, ip}`; an agent is on a machine when every part the machine names
//! matches (hostname case-insensitively, ip against the agent's address). The HTTP edge is
//! `http/maintenance.rs`; the schedule and down machines are persisted by the caller.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use meseta_allocator::Unavailability;
use meseta_api::maintenance::{MachineId, Nanos, Schedule, WindowTime};
use meseta_api::scheduler::{Event, IdValue, InverseOffer, InverseOfferList};
use meseta_types::{AgentId, FrameworkId, TaskId, TaskState};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::core::Core;
use crate::ops_state::Persisted;
use crate::unix_now;

/// The allocator's form of a window.
fn to_allocator(w: WindowTime) -> Unavailability {
    Unavailability {
        start: Duration::from_nanos(w.start.nanoseconds.max(0) as u64),
        duration: w
            .duration
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64)),
    }
}

/// Checks a schedule as Mesos does; machines come back normalized.
pub(crate) fn validate(mut s: Schedule) -> Result<Schedule, String> {
    let mut seen = BTreeSet::new();
    for w in &mut s.windows {
        if w.machine_ids.is_empty() {
            return Err("a maintenance window must name at least one machine".into());
        }
        if w.unavailability.start.nanoseconds < 0
            || w.unavailability.duration.is_some_and(|d| d.nanoseconds < 0)
        {
            return Err("unavailability start and duration must not be negative".into());
        }
        for m in &mut w.machine_ids {
            *m = std::mem::take(m).normalized();
            if m.hostname.as_deref().unwrap_or("").is_empty()
                && m.ip.as_deref().unwrap_or("").is_empty()
            {
                return Err("a machine id needs a hostname or an ip".into());
            }
            if let Some(ip) = &m.ip {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("invalid ip '{ip}' in machine id"));
                }
            }
            if !seen.insert(m.clone()) {
                return Err(format!(
                    "machine {} appears more than once",
                    machine_json(m)
                ));
            }
        }
    }
    Ok(s)
}

pub(crate) fn machine_json(m: &MachineId) -> Value {
    serde_json::to_value(m).unwrap_or_default()
}

fn window_json(w: &WindowTime) -> Value {
    serde_json::to_value(w).unwrap_or_default()
}

fn agent_ip(address: &str) -> Option<String> {
    address
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_string())
}

impl Core {
    /// The machine (as scheduled or down) agent `id` is on, with its window if scheduled.
    fn agent_machine(&self, id: &AgentId) -> Option<(MachineId, Option<WindowTime>)> {
        let a = self.agents.get(id)?;
        let ip = agent_ip(&a.record.address);
        let m = &self.ops.maint;
        if let Some((mid, w)) = m
            .scheduled()
            .find(|(mid, _)| mid.matches(&a.record.hostname, ip.as_deref()))
        {
            return Some((mid.clone(), Some(*w)));
        }
        m.down
            .iter()
            .find(|mid| mid.matches(&a.record.hostname, ip.as_deref()))
            .map(|mid| (mid.clone(), None))
    }

    /// The `unavailability` an offer on `agent` carries, if its machine is scheduled.
    pub(crate) fn offer_unavailability(&self, agent: &AgentId) -> Option<Value> {
        if self.ops.maint.schedule.windows.is_empty() {
            return None;
        }
        self.agent_machine(agent)
            .and_then(|(_, w)| w)
            .map(|w| window_json(&w))
    }

    /// Tell the allocator about an agent's maintenance (after it was (re-)added).
    pub(crate) fn alloc_maintenance(&mut self, agent: &AgentId) {
        let Some((mid, w)) = self.agent_machine(agent) else {
            self.alloc.set_unavailability(agent, None);
            return;
        };
        self.alloc.set_unavailability(agent, w.map(to_allocator));
        if self.ops.maint.down.contains(&mid) {
            self.alloc.deactivate_agent(agent);
        }
    }

    fn agents_on(&self, machines: &BTreeSet<MachineId>) -> Vec<AgentId> {
        self.agents
            .iter()
            .filter(|(_, a)| {
                let ip = agent_ip(&a.record.address);
                machines
                    .iter()
                    .any(|m| m.matches(&a.record.hostname, ip.as_deref()))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Replace the schedule. Down machines must stay scheduled.
    pub(crate) fn update_schedule(&mut self, s: Schedule, now: Instant) -> Result<(), String> {
        let s = validate(s)?;
        let new: BTreeSet<MachineId> = s
            .windows
            .iter()
            .flat_map(|w| w.machine_ids.iter().cloned())
            .collect();
        if let Some(m) = self.ops.maint.down.iter().find(|m| !new.contains(m)) {
            return Err(format!(
                "machine {} is down: it must stay in the schedule until it is up",
                machine_json(m)
            ));
        }
        let old: BTreeSet<MachineId> = self.ops.maint.scheduled().map(|(m, _)| m.clone()).collect();
        let mut touched = old.clone();
        touched.extend(new.iter().cloned());
        self.ops.maint.schedule = s;
        self.ops.maint.statuses.retain(|m, _| new.contains(m));
        for m in &new {
            self.ops.maint.statuses.entry(m.clone()).or_default();
        }
        self.ops.maint.dirty = true;
        for agent in self.agents_on(&touched) {
            // Offers are re-sent with the new `unavailability`.
            self.rescind_agent_offers(&agent);
            self.ops.maint.inverse.retain(|_, (_, a)| a != &agent);
            self.alloc_maintenance(&agent);
        }
        self.allocate(now);
        Ok(())
    }

    /// `machine/down`: the machines (scheduled, not down) stop receiving offers and their tasks
    /// are killed (`TASK_KILLED`, or `TASK_GONE_BY_OPERATOR` for partition-aware frameworks).
    pub(crate) fn machines_down(
        &mut self,
        ids: Vec<MachineId>,
        now: Instant,
    ) -> Result<(), String> {
        let ids: BTreeSet<MachineId> = ids.into_iter().map(MachineId::normalized).collect();
        if ids.is_empty() {
            return Err("expecting a list of machine ids".into());
        }
        for m in &ids {
            if !self.ops.maint.scheduled().any(|(s, _)| s == m) {
                return Err(format!(
                    "machine {} is not in the maintenance schedule",
                    machine_json(m)
                ));
            }
            if self.ops.maint.down.contains(m) {
                return Err(format!("machine {} is already down", machine_json(m)));
            }
        }
        self.ops.maint.down.extend(ids.iter().cloned());
        self.ops.maint.dirty = true;
        for agent in self.agents_on(&ids) {
            tracing::info!(agent_id = %agent, "machine down: deactivating the agent and killing its tasks");
            self.rescind_agent_offers(&agent);
            self.alloc.deactivate_agent(&agent);
            self.kill_for_maintenance(&agent);
            for fw in self.frameworks.values() {
                fw.send(Event::Failure {
                    failure: meseta_api::scheduler::Failure {
                        agent_id: Some(IdValue::new(agent.as_str())),
                        executor_id: None,
                        status: None,
                    },
                });
            }
        }
        self.allocate(now);
        Ok(())
    }

    fn kill_for_maintenance(&mut self, agent: &AgentId) {
        let ids: Vec<(TaskId, TaskState)> = self
            .tasks
            .on_agent(agent)
            .filter(|t| !t.state.is_terminal())
            .map(|t| {
                let pa = self
                    .frameworks
                    .get(&t.spec.framework_id)
                    .is_some_and(|f| f.partition_aware());
                let state = if pa {
                    TaskState::GoneByOperator
                } else {
                    TaskState::Killed
                };
                (t.spec.task_id.clone(), state)
            })
            .collect();
        for (id, state) in ids {
            self.send_kill(&id, None);
            self.master_update(
                &id,
                state,
                "REASON_AGENT_REMOVED_BY_OPERATOR",
                Some("the agent's machine was brought down for maintenance".into()),
            );
        }
    }

    /// `machine/up`: down machines come back and leave the schedule.
    pub(crate) fn machines_up(&mut self, ids: Vec<MachineId>, now: Instant) -> Result<(), String> {
        let ids: BTreeSet<MachineId> = ids.into_iter().map(MachineId::normalized).collect();
        if ids.is_empty() {
            return Err("expecting a list of machine ids".into());
        }
        if let Some(m) = ids.iter().find(|m| !self.ops.maint.down.contains(m)) {
            return Err(format!("machine {} is not down", machine_json(m)));
        }
        let maint = &mut self.ops.maint;
        maint.down.retain(|m| !ids.contains(m));
        for w in &mut maint.schedule.windows {
            w.machine_ids.retain(|m| !ids.contains(m));
        }
        maint.schedule.windows.retain(|w| !w.machine_ids.is_empty());
        maint.statuses.retain(|m, _| !ids.contains(m));
        maint.dirty = true;
        for agent in self.agents_on(&ids) {
            self.ops.maint.inverse.retain(|_, (_, a)| a != &agent);
            self.alloc.set_unavailability(&agent, None);
            let connected = self.agents.get(&agent).is_some_and(|a| a.conn.is_some());
            if connected {
                self.alloc.activate_agent(&agent);
            }
        }
        self.allocate(now);
        Ok(())
    }

    /// Send the cycle's inverse offers, one event per framework.
    pub(crate) fn send_inverse_offers(&mut self, ios: Vec<meseta_allocator::InverseOffer>) {
        let mut batches: HashMap<FrameworkId, Vec<InverseOffer>> = HashMap::new();
        for io in ios {
            let id = self.new_offer_id();
            if let Some((mid, _)) = self.agent_machine(&io.agent) {
                self.ops
                    .maint
                    .statuses
                    .entry(mid)
                    .or_default()
                    .entry(io.framework.clone())
                    .or_insert(("UNKNOWN", unix_now()));
            }
            let w = WindowTime {
                start: Nanos {
                    nanoseconds: io.unavailability.start.as_nanos() as i64,
                },
                duration: io.unavailability.duration.map(|d| Nanos {
                    nanoseconds: d.as_nanos() as i64,
                }),
            };
            self.ops
                .maint
                .inverse
                .insert(id.clone(), (io.framework.clone(), io.agent.clone()));
            batches
                .entry(io.framework.clone())
                .or_default()
                .push(InverseOffer {
                    id: IdValue::new(id),
                    framework_id: IdValue::new(io.framework.as_str()),
                    agent_id: Some(IdValue::new(io.agent.as_str())),
                    url: None,
                    unavailability: window_json(&w),
                    resources: Default::default(),
                });
        }
        for (fw, inverse_offers) in batches {
            if let Some(f) = self.frameworks.get(&fw) {
                f.send(Event::InverseOffers {
                    inverse_offers: InverseOfferList { inverse_offers },
                });
            }
        }
    }

    /// ACCEPT_INVERSE_OFFERS / DECLINE_INVERSE_OFFERS: `{inverse_offer_ids:[{value}], filters}`.
    pub(crate) fn answer_inverse_offers(
        &mut self,
        fw: &FrameworkId,
        payload: &Value,
        accept: bool,
        now: Instant,
    ) {
        let refuse = payload
            .pointer("/filters/refuse_seconds")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(31_536_000.0)));
        let ids = payload["inverse_offer_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let t = self.alloc_now(now);
        for id in ids {
            let Some(id) = id["value"].as_str() else {
                continue;
            };
            let owned = self.ops.maint.inverse.get(id).is_some_and(|(f, _)| f == fw);
            if !owned {
                continue;
            }
            let Some((_, agent)) = self.ops.maint.inverse.remove(id) else {
                continue;
            };
            self.alloc
                .inverse_offer_answer(&agent, fw, accept, refuse, t);
            if let Some((mid, _)) = self.agent_machine(&agent) {
                let status = if accept { "ACCEPT" } else { "DECLINE" };
                self.ops
                    .maint
                    .statuses
                    .entry(mid)
                    .or_default()
                    .insert(fw.clone(), (status, unix_now()));
            }
        }
    }

    /// `/master/maintenance/status` (Mesos `ClusterStatus`).
    pub(crate) fn maintenance_status(&self) -> Value {
        let m = &self.ops.maint;
        let draining: Vec<Value> = m
            .scheduled()
            .filter(|(id, _)| !m.down.contains(id))
            .map(|(id, _)| {
                let statuses: Vec<Value> = m
                    .statuses
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|(fw, (s, ts))| {
                        json!({"status": s, "framework_id": {"value": fw.as_str()},
                               "timestamp": {"nanoseconds": (ts * 1e9) as i64}})
                    })
                    .collect();
                json!({"id": machine_json(id), "statuses": statuses})
            })
            .collect();
        let down: Vec<Value> = m.down.iter().map(machine_json).collect();
        json!({"draining_machines": draining, "down_machines": down})
    }

    /// The state to persist, if it changed since the last call.
    pub(crate) fn take_dirty_maintenance(&mut self) -> Option<Persisted> {
        if !self.ops.maint.dirty {
            return None;
        }
        self.ops.maint.dirty = false;
        Some(Persisted {
            schedule: self.ops.maint.schedule.clone(),
            down: self.ops.maint.down.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(machines: Value) -> Schedule {
        serde_json::from_value(json!({"windows": [{"machine_ids": machines,
            "unavailability": {"start": {"nanoseconds": 1}, "duration": {"nanoseconds": 2}}}]}))
        .expect("schedule")
    }

    #[test]
    fn schedules_are_validated_as_mesos_does() {
        assert!(validate(window(json!([{"hostname": "A"}]))).is_ok());
        let s = validate(window(json!([{"hostname": "A", "ip": "10.0.0.1"}]))).expect("ok");
        assert_eq!(s.windows[0].machine_ids[0].hostname.as_deref(), Some("a"));
        for bad in [
            json!([]),
            json!([{}]),
            json!([{"ip": "not-an-ip"}]),
            json!([{"hostname": "a"}, {"hostname": "A"}]),
        ] {
            assert!(validate(window(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(validate(Schedule::default()), Ok(Schedule::default()));
    }
}
