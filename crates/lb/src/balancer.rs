//! Choosing a backend: round-robin or least outstanding requests (power of two choices), passive
//! ejection after consecutive failures, and the canary split. The state of a backend
//! ([`Endpoint`]) outlives routing tables: a table swap that keeps a task keeps its counters.
//!
//! ```text
//!  request ─▶ split(header, weight) ─▶ group: canary | stable | any
//!                                        │ endpoints not ejected (all of them if every one is)
//!                                        ▼
//!                          pick: round-robin | P2C on outstanding
//! ```
//!
//! Time is passed in (`now`), so ejection is tested without sleeping.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::sharded::{shard, Padded, ShardedCounter, SHARDS};
use crate::metrics::BackendSeries;

/// How a backend is chosen among the eligible ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each in turn.
    RoundRobin,
    /// The less busy of two picked at random (least outstanding requests).
    LeastRequest,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "roundrobin" | "rr" => Ok(Algorithm::RoundRobin),
            "least-request" | "leastconn" | "p2c" => Ok(Algorithm::LeastRequest),
            other => Err(format!(
                "unknown balancing algorithm '{other}' (round-robin, least-request)"
            )),
        }
    }
}

/// When a backend is taken out of rotation.
#[derive(Clone, Copy, Debug)]
pub struct Ejection {
    /// Consecutive failures that eject it.
    pub after_failures: u32,
    /// For how long.
    pub duration: Duration,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            after_failures: 3,
            duration: Duration::from_secs(10),
        }
    }
}

/// One backend (a task's address) and what the balancer knows of it.
#[derive(Debug)]
pub struct Endpoint {
    /// The task.
    pub task_id: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its app version.
    pub version: String,
    /// Whether it is a canary.
    pub canary: bool,
    /// Requests and TCP connections in flight.
    pub outstanding: AtomicUsize,
    /// Requests (and connections) sent to it (counted per thread: every request of every
    /// worker adds to it).
    pub requests: ShardedCounter,
    /// Failures: connection errors, resets, timeouts and 5xx answers.
    pub failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// End of the ejection ([`ticks`]; 0: never ejected). An atomic: every request of every
    /// worker reads it.
    ejected_until: AtomicU64,
    /// Set when the backend left the routing table (it drains).
    pub removed: AtomicBool,
    /// Cancelled when draining is over: connections still open to it are cut.
    pub drained: CancellationToken,
    /// Its metric series, made on its first request (an endpoint serves one app).
    pub series: OnceLock<BackendSeries>,
}

impl Endpoint {
    /// A fresh endpoint.
    pub fn new(task_id: &str, addr: SocketAddr, version: &str, canary: bool) -> Endpoint {
        Endpoint {
            task_id: task_id.to_owned(),
            addr,
            version: version.to_owned(),
            canary,
            outstanding: AtomicUsize::new(0),
            requests: ShardedCounter::default(),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            drained: CancellationToken::new(),
            series: OnceLock::new(),
        }
    }

    /// Whether it is out of rotation at `now`.
    pub fn ejected(&self, now: Instant) -> bool {
        ticks(now) < self.ejected_until.load(Ordering::Relaxed)
    }

    /// Records a success: the failure streak ends. (Written only when there is a streak: the
    /// workers' requests would otherwise all write the same cache line.)
    pub fn succeeded(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns true when it ejected the endpoint.
    pub fn failed(&self, policy: &Ejection, now: Instant) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < policy.after_failures {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(ticks(now + policy.duration), Ordering::Relaxed);
        true
    }

    /// Counts one request or connection in flight until the guard drops.
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.inc();
        InFlight(self.clone())
    }
}

/// `t` as nanoseconds since the process's first look at the clock, plus one (so that 0 is
/// before any instant).
fn ticks(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// A request or connection in flight on an endpoint.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service's round-robin position, one per thread slot: each worker thread goes round on
/// its own, so that the workers do not all write one shared cache line per request. Every
/// worker still visits the backends in turn, so over all of them each backend gets its share.
#[derive(Debug, Default)]
pub struct Cursor {
    slots: [Padded<AtomicUsize>; SHARDS],
}

impl Cursor {
    /// The position of the calling thread.
    pub fn here(&self) -> &AtomicUsize {
        &self.slots[shard()].0
    }
}

/// Which versions a request may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Canary backends only.
    Canary,
    /// Stable (non-canary) backends only.
    Stable,
    /// Any backend.
    Any,
}

/// The canary split: `header` is the request's canary header value, `weight` the canary's
/// percent share of the rest, `roll` a uniform number in `0..100`.
pub fn split(header: Option<&str>, weight: Option<u32>, has_canary: bool, roll: u32) -> Group {
    if !has_canary {
        return Group::Any;
    }
    match header.map(|h| h.trim().to_ascii_lowercase()) {
        Some(h) if matches!(h.as_str(), "0" | "false" | "no" | "stable") => Group::Stable,
        Some(_) => Group::Canary,
        None => match weight {
            Some(w) if roll < w => Group::Canary,
            Some(_) => Group::Stable,
            None => Group::Any,
        },
    }
}

/// Picks an endpoint of `group` from `all`, skipping those in `tried`; ejected endpoints only
/// when every candidate is ejected. `counter` is the service's round-robin position.
pub fn pick<'a, E: AsRef<Endpoint>>(
    all: &'a [E],
    group: Group,
    tried: &[SocketAddr],
    algorithm: Algorithm,
    counter: &AtomicUsize,
    now: Instant,
) -> Option<&'a E> {
    let in_group = |e: &&E| match group {
        Group::Any => true,
        Group::Canary => e.as_ref().canary,
        Group::Stable => !e.as_ref().canary,
    };
    // Counted and indexed in place: no list is made per request.
    let fresh = |e: &&E| in_group(e) && !tried.contains(&e.as_ref().addr);
    let healthy = |e: &&E| fresh(e) && !e.as_ref().ejected(now);
    let n_healthy = all.iter().filter(healthy).count();
    let (n, nth): (usize, &dyn Fn(usize) -> Option<&'a E>) = if n_healthy > 0 {
        (n_healthy, &|i| all.iter().filter(healthy).nth(i))
    } else {
        (all.iter().filter(fresh).count(), &|i| {
            all.iter().filter(fresh).nth(i)
        })
    };
    match (n, algorithm) {
        (0, _) => None,
        (1, _) => nth(0),
        (n, Algorithm::RoundRobin) => nth(counter.fetch_add(1, Ordering::Relaxed) % n),
        (n, Algorithm::LeastRequest) => {
            let ia = fastrand::usize(..n);
            let ib = (ia + 1 + fastrand::usize(..n - 1)) % n;
            let (a, b) = (nth(ia)?, nth(ib)?);
            let load = |e: &E| e.as_ref().outstanding.load(Ordering::Relaxed);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn eps(n: usize, canaries: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let addr: SocketAddr = format!("127.0.0.1:{}", 31000 + i).parse().expect("addr");
                Arc::new(Endpoint::new(
                    &format!("t{i}"),
                    addr,
                    "v",
                    i >= n - canaries,
                ))
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_each_in_turn_and_skips_tried() {
        let e = eps(3, 0);
        let c = AtomicUsize::new(0);
        let now = Instant::now();
        let picks: Vec<u16> = (0..6)
            .map(|_| {
                pick(&e, Group::Any, &[], Algorithm::RoundRobin, &c, now)
                    .expect("one")
                    .addr
                    .port()
            })
            .collect();
        assert_eq!(picks, [31000, 31001, 31002, 31000, 31001, 31002]);
        let tried = [e[0].addr, e[1].addr];
        let p = pick(&e, Group::Any, &tried, Algorithm::RoundRobin, &c, now).expect("one");
        assert_eq!(p.addr, e[2].addr);
        let all: Vec<SocketAddr> = e.iter().map(|x| x.addr).collect();
        assert!(pick(&e, Group::Any, &all, Algorithm::RoundRobin, &c, now).is_none());
    }

    #[test]
    fn every_thread_visits_each_backend_in_turn() {
        let e = eps(3, 0);
        let c = Cursor::default();
        let now = Instant::now();
        let round = || -> Vec<u16> {
            let mut ports: Vec<u16> = (0..3)
                .map(|_| {
                    let p = pick(&e, Group::Any, &[], Algorithm::RoundRobin, c.here(), now);
                    p.expect("one").addr.port()
                })
                .collect();
            ports.sort_unstable();
            ports
        };
        assert_eq!(round(), [31000, 31001, 31002]);
        let there = std::thread::scope(|s| s.spawn(round).join().expect("thread"));
        assert_eq!(there, [31000, 31001, 31002]);
    }

    #[test]
    fn least_request_prefers_the_idle_backend() {
        let e = eps(2, 0);
        let _busy: Vec<InFlight> = (0..5).map(|_| e[0].start()).collect();
        let c = AtomicUsize::new(0);
        for _ in 0..50 {
            let p = pick(
                &e,
                Group::Any,
                &[],
                Algorithm::LeastRequest,
                &c,
                Instant::now(),
            );
            assert_eq!(p.expect("one").addr, e[1].addr);
        }
        drop(_busy);
        assert_eq!(e[0].outstanding.load(Ordering::Relaxed), 0);
        assert_eq!(e[0].requests.get(), 5);
    }

    #[test]
    fn consecutive_failures_eject_for_a_while_and_a_success_resets_the_streak() {
        let e = eps(2, 0);
        let policy = Ejection {
            after_failures: 3,
            duration: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        assert!(!e[0].failed(&policy, t0));
        assert!(!e[0].failed(&policy, t0));
        e[0].succeeded();
        assert!(!e[0].failed(&policy, t0));
        assert!(!e[0].failed(&policy, t0));
        assert!(e[0].failed(&policy, t0), "third in a row ejects");
        assert!(e[0].ejected(t0 + Duration::from_secs(9)));
        assert!(!e[0].ejected(t0 + Duration::from_secs(10)));
        let c = AtomicUsize::new(0);
        for _ in 0..4 {
            let p = pick(&e, Group::Any, &[], Algorithm::RoundRobin, &c, t0).expect("one");
            assert_eq!(p.addr, e[1].addr, "the ejected one gets nothing");
        }
        // Every backend ejected: they all get traffic again rather than none.
        for _ in 0..3 {
            e[1].failed(&policy, t0);
        }
        assert!(pick(&e, Group::Any, &[], Algorithm::RoundRobin, &c, t0).is_some());
    }

    #[test]
    fn the_canary_header_and_weight_choose_the_group() {
        assert_eq!(split(Some("1"), Some(0), true, 50), Group::Canary);
        assert_eq!(split(Some("Stable"), Some(100), true, 0), Group::Stable);
        assert_eq!(split(None, Some(0), true, 0), Group::Stable);
        assert_eq!(split(None, Some(10), true, 9), Group::Canary);
        assert_eq!(split(None, Some(10), true, 10), Group::Stable);
        assert_eq!(split(None, None, true, 10), Group::Any);
        assert_eq!(split(Some("1"), Some(100), false, 0), Group::Any);
    }

    #[test]
    fn a_weighted_split_sends_about_its_share() {
        let canary = (0..10_000)
            .filter(|_| split(None, Some(20), true, fastrand::u32(..100)) == Group::Canary)
            .count();
        assert!((1_700..2_300).contains(&canary), "{canary}");
    }

    #[test]
    fn groups_pick_only_their_versions() {
        let e = eps(4, 1);
        let c = AtomicUsize::new(0);
        let now = Instant::now();
        for _ in 0..8 {
            let p = pick(&e, Group::Canary, &[], Algorithm::RoundRobin, &c, now).expect("one");
            assert!(p.canary);
            let p = pick(&e, Group::Stable, &[], Algorithm::LeastRequest, &c, now).expect("one");
            assert!(!p.canary);
        }
    }
}
