//! Events the master streams to a subscribed framework (scheduler.proto `Event`):
//! `{"type":"X","x":{..}}` with the payload under the lower-cased type name.

use compact_str::CompactString;
use meseta_types::{Attributes, Resources, TaskState};
use serde::{Deserialize, Serialize};

use super::{null_default, IdValue, Message};

/// The `subscribed` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The framework's (possibly newly assigned) id.
    pub framework_id: IdValue,
    /// Seconds between HEARTBEAT events.
    #[serde(default)]
    pub heartbeat_interval_seconds: f64,
    /// The master's `MasterInfo`, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<serde_json::Value>,
}

/// An offer of one agent's resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Offer id.
    pub id: IdValue,
    /// The framework it is made to.
    pub framework_id: IdValue,
    /// The agent whose resources these are.
    pub agent_id: IdValue,
    /// The agent's host name.
    pub hostname: String,
    /// The offered resources.
    #[serde(default)]
    pub resources: Resources,
    /// The agent's attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// The agent's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<AgentUrl>,
    /// The agent's maintenance window: `{"start":{"nanoseconds"},"duration":{"nanoseconds"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<serde_json::Value>,
    /// The agent's fault domain: `{"fault_domain":{"region":{"name"},"zone":{"name"}}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<serde_json::Value>,
}

/// Where an agent is reached (mesos.proto `URL`):
/// `{"scheme":"http","address":{"hostname","ip","port"},"path":"/slave(1)"}`. Every offer carries
/// one, so its strings are stored inline (no allocation for an IPv4 address or a short host
/// name). Every field may be missing on input; `query` and `fragment`, which agents' URLs do
/// not use, are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUrl {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: CompactString,
    /// Host and port.
    #[serde(default)]
    pub address: UrlAddress,
    /// The path (`/slave(1)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<CompactString>,
}

/// The address of an [`AgentUrl`] (mesos.proto `Address`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UrlAddress {
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<CompactString>,
    /// IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<CompactString>,
    /// Port.
    #[serde(default)]
    pub port: u16,
}

impl AgentUrl {
    /// The URL of the agent listening on `addr` (Mesos agents' path: `/slave(1)`).
    pub fn of_agent(addr: std::net::SocketAddr) -> AgentUrl {
        let ip = CompactString::from(addr.ip().to_string());
        AgentUrl {
            scheme: CompactString::const_new("http"),
            address: UrlAddress {
                hostname: Some(ip.clone()),
                ip: Some(ip),
                port: addr.port(),
            },
            path: Some(CompactString::const_new("/slave(1)")),
        }
    }
}

/// A request to give back everything held on an agent going into maintenance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InverseOffer {
    /// Inverse offer id (shares the offer id counter).
    pub id: IdValue,
    /// The framework asked.
    pub framework_id: IdValue,
    /// The agent under maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
    /// The agent's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<AgentUrl>,
    /// The maintenance window: `{"start":{"nanoseconds"},"duration":{"nanoseconds"}}`.
    pub unavailability: serde_json::Value,
    /// What is asked back (empty = everything).
    #[serde(default)]
    pub resources: Resources,
}

/// The `inverse_offers` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InverseOfferList {
    /// The inverse offers.
    #[serde(default)]
    pub inverse_offers: Vec<InverseOffer>,
}

/// The `offers` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferList {
    /// The offers, one per agent.
    #[serde(default, deserialize_with = "null_default")]
    pub offers: Vec<Offer>,
}

/// The `rescind` payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rescind {
    /// The offer taken back.
    pub offer_id: IdValue,
}

/// A task status update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: IdValue,
    /// Its new state.
    pub state: TaskState,
    /// `SOURCE_MASTER`, `SOURCE_AGENT` or `SOURCE_EXECUTOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `REASON_...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, e.g. "Command exited with status 3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The task's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
    /// The task's executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<IdValue>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub timestamp: f64,
    /// Base64 of 16 bytes; present only on updates that must be acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Health check result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Opaque data from the executor, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl TaskStatus {
    /// A status with only the required fields set.
    pub fn new(task_id: impl Into<IdValue>, state: TaskState, timestamp: f64) -> TaskStatus {
        TaskStatus {
            task_id: task_id.into(),
            state,
            source: None,
            reason: None,
            message: None,
            agent_id: None,
            executor_id: None,
            timestamp,
            uuid: None,
            healthy: None,
            data: None,
        }
    }
}

/// The `update` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The new status.
    pub status: TaskStatus,
}

/// The `failure` payload: an agent was lost (no executor) or an executor exited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<IdValue>,
    /// The executor that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<IdValue>,
    /// Its wait status (required when `executor_id` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// The `error` payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Why the master gave up on the subscription.
    pub message: String,
}

/// An event on the subscription stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// First event of a subscription.
    #[serde(rename = "SUBSCRIBED")]
    Subscribed {
        /// The payload.
        subscribed: Subscribed,
    },
    /// New offers.
    #[serde(rename = "OFFERS")]
    Offers {
        /// The payload.
        offers: OfferList,
    },
    /// Requests to give back what is held on agents going into maintenance.
    #[serde(rename = "INVERSE_OFFERS")]
    InverseOffers {
        /// The payload.
        inverse_offers: InverseOfferList,
    },
    /// An offer is no longer valid.
    #[serde(rename = "RESCIND")]
    Rescind {
        /// The payload.
        rescind: Rescind,
    },
    /// A task status update.
    #[serde(rename = "UPDATE")]
    Update {
        /// The payload.
        update: Update,
    },
    /// A message from an executor.
    #[serde(rename = "MESSAGE")]
    Message {
        /// The payload.
        message: Message,
    },
    /// An agent or executor failed.
    #[serde(rename = "FAILURE")]
    Failure {
        /// The payload.
        failure: Failure,
    },
    /// The subscription failed; the master closes the stream.
    #[serde(rename = "ERROR")]
    Error {
        /// The payload.
        error: ErrorMessage,
    },
    /// Keep-alive.
    #[serde(rename = "HEARTBEAT")]
    Heartbeat,
}

impl Event {
    /// The wire names of every event type modelled by [`Event`].
    pub const TYPE_NAMES: [&'static str; 9] = [
        "SUBSCRIBED",
        "OFFERS",
        "INVERSE_OFFERS",
        "RESCIND",
        "UPDATE",
        "MESSAGE",
        "FAILURE",
        "ERROR",
        "HEARTBEAT",
    ];

    /// The wire name of the event type, e.g. `"OFFERS"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Subscribed { .. } => "SUBSCRIBED",
            Event::Offers { .. } => "OFFERS",
            Event::InverseOffers { .. } => "INVERSE_OFFERS",
            Event::Rescind { .. } => "RESCIND",
            Event::Update { .. } => "UPDATE",
            Event::Message { .. } => "MESSAGE",
            Event::Failure { .. } => "FAILURE",
            Event::Error { .. } => "ERROR",
            Event::Heartbeat => "HEARTBEAT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_url_has_the_mesos_shape_and_reads_any_url() {
        let url = AgentUrl::of_agent("10.0.0.7:5051".parse().expect("address"));
        assert_eq!(
            serde_json::to_value(&url).expect("serializes"),
            json!({
                "scheme": "http",
                "address": {"hostname": "10.0.0.7", "ip": "10.0.0.7", "port": 5051},
                "path": "/slave(1)"
            })
        );
        let back: AgentUrl = serde_json::from_value(json!({
            "scheme": "https",
            "address": {"hostname": "agent-1.example.com", "port": 5051},
            "query": [{"key": "a", "value": "b"}],
            "fragment": "x"
        }))
        .expect("a URL with fields we do not keep");
        assert_eq!(
            back.address.hostname.as_deref(),
            Some("agent-1.example.com")
        );
        assert_eq!((back.address.ip, back.path), (None, None));
        let offer: Offer = serde_json::from_value(json!({
            "id": {"value": "o"}, "framework_id": {"value": "f"}, "agent_id": {"value": "a"},
            "hostname": "h", "url": {}
        }))
        .expect("an offer with an empty URL");
        assert_eq!(offer.url, Some(AgentUrl::default()));
    }
}
