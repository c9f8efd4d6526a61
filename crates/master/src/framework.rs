//! Framework subscriptions: the one contract behind both transports.
//!
//! [`subscribe`] admits a framework (new, re-subscribing, or recovered after a master restart),
//! persists it, and returns a [`FrameworkConnection`]: a stream of [`Event`]s and a `call` method.
//! `/api/v1/scheduler` wraps a connection in a RecordIO response; built-in schedulers hold one
//! directly. Dropping the connection is the framework disconnecting: its failover timer starts.

use meseta_api::scheduler::{CallKind, ErrorMessage, Event, FrameworkInfo, IdValue, Subscribed};
use meseta_types::FrameworkId;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant;

use crate::bus::ClusterEvent;
use crate::calls::CallError;
use crate::core::{Core, FrameworkEntry, FwConn};
use crate::{registry, unix_now, Master, MasterError};

/// A subscribed framework's end of the contract.
pub struct FrameworkConnection {
    master: Master,
    /// The framework's id.
    pub framework_id: FrameworkId,
    /// This subscription's stream id (`Mesos-Stream-Id`).
    pub stream_id: String,
    events: UnboundedReceiver<Event>,
}

impl FrameworkConnection {
    /// The next event; `None` once the master dropped this subscription (failed over or torn down).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Make a call (ACCEPT, DECLINE, KILL, ACKNOWLEDGE, …) as this framework.
    pub fn call(&self, kind: CallKind) -> Result<(), CallError> {
        let mut core = self.master.core();
        core.check_caller(&self.framework_id, Some(&self.stream_id))?;
        core.call(&self.framework_id, kind, Instant::now());
        Ok(())
    }
}

impl Drop for FrameworkConnection {
    fn drop(&mut self) {
        self.master.core().framework_disconnected(
            &self.framework_id,
            &self.stream_id,
            Instant::now(),
        );
    }
}

/// Subscribe (or re-subscribe) a framework.
pub(crate) async fn subscribe(
    master: &Master,
    info: FrameworkInfo,
) -> Result<FrameworkConnection, MasterError> {
    let (fw_id, info) = {
        let mut core = master.core();
        match core.admit_framework(info) {
            Ok(x) => x,
            Err(message) => return Ok(rejected(master, message)),
        }
    };
    let record = crate::records::FrameworkRecord {
        id: fw_id.clone(),
        info: info.clone(),
        registered_time: unix_now(),
    };
    registry::save_framework(master.store(), &record).await?;
    let (tx, rx) = unbounded_channel();
    let stream_id = uuid::Uuid::new_v4().to_string();
    master.core().activate_framework(
        &fw_id,
        info,
        FwConn {
            stream_id: stream_id.clone(),
            tx,
        },
        Instant::now(),
    );
    Ok(FrameworkConnection {
        master: master.clone(),
        framework_id: fw_id,
        stream_id,
        events: rx,
    })
}

/// A subscription refused: its stream carries one ERROR event and ends (as Mesos does).
fn rejected(master: &Master, message: String) -> FrameworkConnection {
    let (tx, rx) = unbounded_channel();
    let _ = tx.send(Event::Error {
        error: ErrorMessage { message },
    });
    FrameworkConnection {
        master: master.clone(),
        framework_id: FrameworkId::new(""),
        stream_id: String::new(),
        events: rx,
    }
}

impl Core {
    /// Validate a SUBSCRIBE and pick the framework id.
    pub(crate) fn admit_framework(
        &mut self,
        mut info: FrameworkInfo,
    ) -> Result<(FrameworkId, FrameworkInfo), String> {
        if info.name.trim().is_empty() {
            return Err("framework name must not be empty".to_string());
        }
        for role in crate::allocator::framework_roles(&info) {
            meseta_allocator::validate_role(&role).map_err(|e| format!("invalid role: {e}"))?;
        }
        if let Some(t) = info.failover_timeout {
            if !t.is_finite() || t < 0.0 {
                return Err(format!(
                    "failover_timeout must be a non-negative number, got {t}"
                ));
            }
        }
        let id = match info.id.as_ref().filter(|i| !i.value.is_empty()) {
            Some(id) => {
                let id = FrameworkId::new(id.as_str());
                if self.completed_frameworks.iter().any(|f| f.id == id) {
                    return Err(format!("framework '{id}' has been removed"));
                }
                id
            }
            None => self.new_framework_id(),
        };
        info.id = Some(IdValue::new(id.as_str()));
        Ok((id, info))
    }

    /// Bind a new subscription: the old one (if any) is told it failed over and dropped.
    pub(crate) fn activate_framework(
        &mut self,
        id: &FrameworkId,
        info: FrameworkInfo,
        conn: FwConn,
        now: Instant,
    ) {
        let hb = self.config().framework_heartbeat.as_secs_f64();
        let master_info = self.master_info();
        let fresh = !self.frameworks.contains_key(id);
        let fw = self
            .frameworks
            .entry(id.clone())
            .or_insert_with(|| FrameworkEntry::new(id.clone(), info.clone(), unix_now()));
        if let Some(old) = fw.conn.take() {
            let _ = old.tx.send(Event::Error {
                error: ErrorMessage {
                    message: "Framework failed over".to_string(),
                },
            });
        }
        fw.info = info;
        fw.recovered = false;
        fw.disconnected_at = None;
        fw.suppressed = false;
        let _ = conn.tx.send(Event::Subscribed {
            subscribed: Subscribed {
                framework_id: IdValue::new(id.as_str()),
                heartbeat_interval_seconds: hb,
                master_info: Some(master_info),
            },
        });
        let _ = conn.tx.send(Event::Heartbeat);
        fw.conn = Some(conn);
        let json = crate::v1json::framework(fw);
        self.bus.publish_with(|| {
            if fresh {
                ClusterEvent::FrameworkAdded(json)
            } else {
                ClusterEvent::FrameworkUpdated(json)
            }
        });
        tracing::info!(framework_id = %id, "framework subscribed");
        // Offers held by the previous subscription are void.
        for oid in self.offers_where(|o| &o.framework_id == id) {
            self.drop_offer(&oid);
        }
        let info = self
            .frameworks
            .get(id)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        self.alloc_add_framework(id, &info);
        self.allocate(now);
    }

    /// The subscription `stream_id` of framework `id` ended.
    pub(crate) fn framework_disconnected(
        &mut self,
        id: &FrameworkId,
        stream_id: &str,
        now: Instant,
    ) {
        let Some(fw) = self.frameworks.get_mut(id) else {
            return;
        };
        if fw.conn.as_ref().map(|c| c.stream_id.as_str()) != Some(stream_id) {
            return;
        }
        fw.conn = None;
        fw.disconnected_at = Some(now);
        self.bus
            .publish_with(|| ClusterEvent::FrameworkUpdated(crate::v1json::framework(fw)));
        tracing::info!(framework_id = %id, "framework disconnected");
        for oid in self.offers_where(|o| &o.framework_id == id) {
            self.drop_offer(&oid);
        }
        self.alloc.deactivate_framework(id);
        self.allocate(now);
    }

    /// Mesos `MasterInfo` JSON.
    pub(crate) fn master_info(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.master_id(),
            "ip": 0,
            "port": self.addr.port(),
            "hostname": self.config().hostname,
            "version": crate::MESOS_VERSION,
            "address": {"hostname": self.config().hostname, "ip": self.addr.ip().to_string(), "port": self.addr.port()},
        })
    }
}
