//! Core value types of meseta: ids, fixed-point scalars, ranges, resources, attributes
//! and task states. No I/O.
//!
//! Every other crate depends on this one (api, store, allocator, master, agent, cli):
//! it owns the exact resource arithmetic and the Mesos text and JSON formats for these
//! values, so all components agree on them.

#![forbid(unsafe_code)]

pub mod attributes;
pub mod error;
pub mod ids;
pub mod intern;
pub mod ranges;
pub mod resources;
pub mod scalar;
pub mod task;

pub use attributes::{AttrValue, Attribute, Attributes};
pub use error::{AttributeError, ResourceError};
pub use ids::{AgentId, FrameworkId, OfferId, TaskId};
pub use ranges::{Range, Ranges};
pub use resources::{DiskInfo, Resource, Resources, Set, Value, UNRESERVED};
pub use scalar::Scalar;
pub use task::TaskState;
