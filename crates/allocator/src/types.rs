//! Public value types of the allocator: configuration, agent and framework descriptions, quota,
//! maintenance windows, the cycle's output, the role view and the error type.
//!
//! Used by callers of [`crate::Allocator`] (the master, the allocator benchmark, tests).

use meseta_types::{AgentId, FrameworkId, Resources, Scalar};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Allocator-wide settings (Mesos master flags).
#[derive(Clone, Debug, PartialEq)]
pub struct AllocatorConfig {
    /// `--min_allocatable_resources`: a grant must hold at least one of these (each an AND of
    /// scalar quantities, summed over roles). Empty = anything non-empty is allocatable.
    pub min_allocatable: Vec<Resources>,
    /// `--fair_sharing_excluded_resource_names`: scalars ignored when computing DRF shares.
    pub fair_sharing_excluded: Vec<String>,
}

impl Default for AllocatorConfig {
    /// `cpus:0.01 | mem:32`, excluding `gpus` from fair sharing.
    fn default() -> AllocatorConfig {
        let min = ["cpus:0.01", "mem:32"]
            .iter()
            .filter_map(|s| Resources::parse(s).ok())
            .collect();
        AllocatorConfig {
            min_allocatable: min,
            fair_sharing_excluded: vec!["gpus".to_string()],
        }
    }
}

/// A fault domain (`--domain`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDomain {
    /// Region name.
    pub region: String,
    /// Zone name.
    pub zone: String,
}

/// What the allocator needs to know about an agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentInfo {
    /// Hostname (for views and maintenance matching by the master).
    pub hostname: String,
    /// Total resources, including static and dynamic reservations (`cpus(web):2`). Shared: the
    /// master keeps the same copy in its agent record when the agent has no dynamic
    /// reservations (a master with 10,000 agents holds one copy instead of two).
    pub total: Arc<Resources>,
    /// The agent's fault domain; `None` = local.
    pub domain: Option<FaultDomain>,
}

/// What the allocator needs to know about a framework.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameworkInfo {
    /// Roles the framework subscribes to (`["*"]` by default).
    pub roles: Vec<String>,
    /// REGION_AWARE capability: may receive agents of other regions.
    pub region_aware: bool,
    /// GPU_RESOURCES capability: may receive agents that have GPUs.
    pub gpu_aware: bool,
}

impl Default for FrameworkInfo {
    fn default() -> FrameworkInfo {
        FrameworkInfo {
            roles: vec![meseta_types::UNRESERVED.to_string()],
            region_aware: false,
            gpu_aware: false,
        }
    }
}

/// Quota of a role: scalar guarantees (served first, with headroom held back for them) and
/// hard limits on consumption (allocation plus all reservations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// Guaranteed scalar amounts by resource name.
    pub guarantees: BTreeMap<String, Scalar>,
    /// Limits by resource name; names not listed are unlimited.
    pub limits: BTreeMap<String, Scalar>,
}

/// A maintenance window of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailability {
    /// Start, as unix time.
    pub start: Duration,
    /// Length; `None` = indefinitely.
    pub duration: Option<Duration>,
}

/// One grant of the cycle: everything `framework` may use on `agent` in `role` (the master turns it
/// into an offer).
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// The framework receiving the grant.
    pub framework: FrameworkId,
    /// The role the grant is made in (`allocation_info.role`).
    pub role: String,
    /// The agent the resources are on.
    pub agent: AgentId,
    /// The resources granted (already counted as allocated until recovered).
    pub resources: Resources,
}

/// A request to `framework` to give back everything it holds on `agent` (maintenance).
#[derive(Clone, Debug, PartialEq)]
pub struct InverseOffer {
    /// The framework asked.
    pub framework: FrameworkId,
    /// The agent going down.
    pub agent: AgentId,
    /// The agent's maintenance window.
    pub unavailability: Unavailability,
}

/// The output of one allocation run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cycle {
    /// Grants, at most one per (framework, role, agent).
    pub offers: Vec<Allocation>,
    /// Inverse offers, at most one outstanding per (framework, agent).
    pub inverse_offers: Vec<InverseOffer>,
}

/// A role as shown by `/master/roles`, `/quota` and metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoleInfo {
    /// Role path, e.g. `eng/web`.
    pub name: String,
    /// DRF weight (1.0 unless set).
    pub weight: f64,
    /// Quota, if configured.
    pub quota: Option<Quota>,
    /// Scalars allocated (offered or in use) in this role and its sub-roles, by name.
    pub allocated: BTreeMap<String, Scalar>,
    /// Scalars reserved for this role and its sub-roles on all agents, by name.
    pub reserved: BTreeMap<String, Scalar>,
    /// Quota consumption: reservations plus unreserved allocation, by name.
    pub consumed: BTreeMap<String, Scalar>,
    /// Frameworks subscribed to exactly this role.
    pub frameworks: Vec<FrameworkId>,
    /// Weighted dominant share among its siblings (allocation / total ÷ weight).
    pub share: f64,
}

/// Allocator errors; messages name the failing input.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    /// The agent is not registered.
    #[error("unknown agent `{0}`")]
    UnknownAgent(AgentId),
    /// The framework is not registered.
    #[error("unknown framework `{0}`")]
    UnknownFramework(FrameworkId),
    /// The agent is already registered.
    #[error("agent `{0}` is already registered")]
    DuplicateAgent(AgentId),
    /// The framework is already registered.
    #[error("framework `{0}` is already registered")]
    DuplicateFramework(FrameworkId),
    /// A role name breaks the naming rules (role, reason).
    #[error("invalid role `{0}`: {1}")]
    InvalidRole(String, String),
    /// A weight is not a positive number up to `MAX_WEIGHT` (role, weight).
    #[error("invalid weight {1} for role `{0}`: must be a positive number no larger than 1000000")]
    InvalidWeight(String, f64),
    /// A quota is malformed (role, reason).
    #[error("invalid quota for role `{0}`: {1}")]
    InvalidQuota(String, String),
    /// New limits are below what the role consumes and `force` was not given (role, consumed).
    #[error("quota limits for role `{0}` are below its consumption {1}; use force")]
    LimitBelowConsumption(String, String),
    /// The agent does not have the resources asked for (agent, wanted).
    #[error("agent `{0}` does not have {1} available")]
    InsufficientResources(AgentId, String),
    /// The reservation is (partly) allocated and cannot be unreserved (agent, resources).
    #[error("reservation {1} on agent `{0}` is in use")]
    ReservationInUse(AgentId, String),
    /// A reservation request is malformed (agent, reason).
    #[error("invalid reservation on agent `{0}`: {1}")]
    InvalidReservation(AgentId, String),
}
