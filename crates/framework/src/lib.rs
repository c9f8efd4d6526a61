//! The framework kit: the in-process scheduler session every built-in scheduler (Marathon's
//! services, Chronos' jobs) runs on, and what a Rust framework implements to run inside meseta.
//!
//! ```text
//!   clients (HTTP edge) ── Handle::ask(request) ──┐
//!                                                 ▼
//!   store ◀── Persist ── session task ── Scheduler callbacks (pure, sync) ── [Command]
//!                          │    ▲                                   │
//!    SUBSCRIBE/ACCEPT/     │    │ offers, updates (acknowledged),   │ Publish
//!    DECLINE/KILL/REVIVE…  ▼    │ rescinds, inverse offers          ▼
//!                        Master (FrameworkConnection)          Handle::subscribe_events
//! ```
//!
//! The kit owns the subscription and its bookkeeping: it subscribes only while the scheduler
//! has work, with the framework id stored under the scheduler's key; resubscribes after a delay;
//! drains events in batches; acknowledges every status update; SUPPRESSes and REVIVEs by what
//! the scheduler wants; reconciles periodically; and after a master restart waits until every
//! agent known before is back before it tells the scheduler which tasks the master knows.
//! A scheduler implements [`Scheduler`]: callbacks get the input and the time and return
//! [`Command`]s, which the kit executes in order. [`Command::Persist`] takes the scheduler's
//! changes as one [`Commit`] ([`Scheduler::persist`]) and holds the commands after it until that
//! write is done (write-ahead: persist, then launch); [`Command::Reply`]s are released only
//! after the writes of their round. One commit is written at a time while the scheduler goes on
//! with the next rounds; their changes all go into the next commit (group commit), so a slow
//! store (etcd's round trips) delays launches but does not stall the scheduler.
//!
//! A framework that launches `n` tasks and counts how they ended:
//!
//! ```no_run
//! use std::time::SystemTime;
//! use meseta_api::scheduler::{CommandInfo, IdValue, Offer, TaskInfo, TaskStatus};
//! use meseta_framework::{Command, FrameworkSpec, Scheduler};
//! use meseta_types::Resources;
//!
//! struct Count { n: usize, launched: usize, ended: usize }
//!
//! impl Scheduler for Count {
//!     type Request = tokio::sync::oneshot::Sender<usize>;
//!     fn spec(&self) -> FrameworkSpec { FrameworkSpec::new("count") }
//!     fn has_work(&self) -> bool { true }
//!     fn wants_offers(&self, _: SystemTime) -> bool { self.launched < self.n }
//!     fn offers(&mut self, offers: Vec<Offer>, _: SystemTime) -> Vec<Command> {
//!         offers.into_iter().map(|o| {
//!             let tasks = (self.launched..self.n).map(|i| TaskInfo {
//!                 name: format!("t{i}"), task_id: IdValue::new(format!("t{i}")),
//!                 agent_id: Some(o.agent_id.clone()),
//!                 resources: Resources::parse("cpus:0.01;mem:8").expect("literal"),
//!                 command: Some(CommandInfo { value: Some("true".into()),
//!                     ..CommandInfo::default() }),
//!                 ..TaskInfo::default()
//!             }).collect();
//!             self.launched = self.n;
//!             Command::Launch { offer_id: o.id, tasks }
//!         }).collect()
//!     }
//!     fn status(&mut self, s: &TaskStatus, _: SystemTime) -> Vec<Command> {
//!         self.ended += usize::from(s.state.is_terminal());
//!         vec![]
//!     }
//!     fn request(&mut self, reply: Self::Request, _: SystemTime) -> Vec<Command> {
//!         let ended = self.ended;
//!         vec![Command::reply(move || { let _ = reply.send(ended); })]
//!     }
//! }
//!
//! # async fn example(master: meseta_master::Master) {
//! let (handle, inbox) = meseta_framework::channel("count");
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let scheduler = Count { n: 3, launched: 0, ended: 0 };
//! tokio::spawn(meseta_framework::run(master, scheduler, inbox, cancel));
//! let ended = handle.ask(|reply| reply).await;
//! # }
//! ```
//!
//! (A real framework also declines what it does not use and launches only what fits.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod handle;
mod scheduler;
mod session;

pub use command::{Command, Reply};
pub use handle::{channel, Handle, Inbox, Published, Unavailable};
pub use scheduler::{Commit, FrameworkSpec, Scheduler};
pub use session::run;
