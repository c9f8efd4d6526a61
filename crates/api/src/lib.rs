//! Wire types shared by meseta's processes and clients.
//!
//! - [`scheduler`]: the Mesos v1 scheduler HTTP API (`/api/v1/scheduler`) calls and events, in JSON.
//! - [`container`]: Mesos `ContainerInfo` (Docker containers), its validation and its Marathon
//!   and Chronos forms.
//! - [`recordio`]: Mesos RecordIO framing of event streams.
//! - [`client`]: the typed HTTP client of the master (Mesos, operator, Marathon `/v2` and Chronos
//!   APIs) for the CLI, the benchmarks and tests.
//! - [`executor`]: the Mesos v1 executor HTTP API (`/api/v1/executor` on the agent) and
//!   `ExecutorInfo`.
//! - [`agent`]: the agent ⇄ master protocol (one WebSocket per agent).
//! - [`domain`]: fault domains (region, zone) of agents and masters.
//! - [`state`]: the Mesos v0 operator JSON shapes (`/master/state`, `/master/slaves`).
//! - [`operator`]: meseta's own operator endpoints (task kill, task logs) and the Mesos v1
//!   operator calls ([`operator::v1::Call`]).
//! - [`maintenance`]: Mesos maintenance machines and schedules.
//! - [`chronos`]: the Chronos job JSON.
//! - [`marathon`]: Marathon `/v2` app definitions (input) and apps (output).
#![forbid(unsafe_code)]

pub mod agent;
pub mod chronos;
pub mod client;
pub mod container;
pub mod domain;
pub mod executor;
pub mod maintenance;
pub mod marathon;
pub mod operator;
pub mod recordio;
pub mod scheduler;
pub mod secret_path;
pub mod state;
