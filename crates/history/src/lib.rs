//! Usage history kept by the master itself, without an external time-series database:
//! fixed-size rings of cluster, per-node and per-app samples at two resolutions, encoded in
//! chunks for the store, and read back as range queries.
//!
//! ```text
//!  sampler (every 10 s) ── History::record(entity, series, t, v) ──▶ fine ring   (10 s × 2160 = 6 h)
//!                                                                └─▶ coarse ring (5 min × 4032 = 14 d, mean)
//!  persister (every 60 s) ◀── History::take_dirty() ── encoded chunks, one store key per chunk
//!  restart ── History::load_chunk(key, bytes) for every stored chunk
//!  /api/v1/query_range ── History::range(entity, series, start, end, step)
//! ```
//!
//! Pure: no I/O, no clock (time is passed in, in unix seconds). Memory is bounded: a series
//! exists from its first non-zero value on (a series that stays 0 takes nothing and reads as
//! empty) and takes at most [`SERIES_BYTES`] (2 bytes per slot, both rings), an entity at most
//! [`Series::ALL`]`.len()` series; entities whose rings hold nothing are dropped by
//! [`History::sweep`]. A series that changes rarely — an agent's totals, its allocations and
//! task count between deployments — takes far less: its rings keep runs of equal values
//! (`ring.rs`), so ten thousand agents' histories cost megabytes, not a gigabyte.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
pub mod ring;

use std::collections::{BTreeMap, BTreeSet};

pub use codec::{chunk_key, parse_chunk_key, CodecError};
use ring::Ring;

/// The fine tier: one slot every 10 s.
pub const FINE_STEP: i64 = 10;
/// The fine tier holds 6 hours.
pub const FINE_LEN: usize = 6 * 3600 / FINE_STEP as usize;
/// The coarse tier: one slot every 5 minutes (the mean of the samples in it).
pub const COARSE_STEP: i64 = 300;
/// The coarse tier holds 14 days.
pub const COARSE_LEN: usize = 14 * 86400 / COARSE_STEP as usize;
/// Slots per stored chunk (divides both ring lengths).
pub const CHUNK_SLOTS: i64 = 144;
/// Heap bytes of one series at most (both rings, one value per slot).
pub const SERIES_BYTES: usize = (FINE_LEN + COARSE_LEN) * 2;

/// A resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// 10 s for 6 h.
    Fine,
    /// 5 min for 14 days.
    Coarse,
}

impl Tier {
    /// Seconds per slot.
    pub fn step(self) -> i64 {
        match self {
            Tier::Fine => FINE_STEP,
            Tier::Coarse => COARSE_STEP,
        }
    }

    fn len(self) -> usize {
        match self {
            Tier::Fine => FINE_LEN,
            Tier::Coarse => COARSE_LEN,
        }
    }

    fn code(self) -> u8 {
        match self {
            Tier::Fine => 0,
            Tier::Coarse => 1,
        }
    }

    fn from_code(c: u8) -> Option<Tier> {
        match c {
            0 => Some(Tier::Fine),
            1 => Some(Tier::Coarse),
            _ => None,
        }
    }
}

/// What a series measures: a resource and whether it is the total, the allocated or the used
/// amount (cpus; mem and disk in MiB; gpus), plus running tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    /// CPUs of the registered agents.
    CpusTotal,
    /// CPUs held by tasks.
    CpusAllocated,
    /// CPUs measured in use.
    CpusUsed,
    /// Memory of the agents, MiB.
    MemTotal,
    /// Memory held by tasks, MiB.
    MemAllocated,
    /// Memory measured in use, MiB.
    MemUsed,
    /// Disk of the agents, MiB.
    DiskTotal,
    /// Disk held by tasks, MiB.
    DiskAllocated,
    /// Sandbox bytes measured, MiB.
    DiskUsed,
    /// GPUs of the agents.
    GpusTotal,
    /// GPUs held by tasks.
    GpusAllocated,
    /// Live tasks.
    Tasks,
}

impl Series {
    /// Every series, in code order.
    pub const ALL: [Series; 12] = [
        Series::CpusTotal,
        Series::CpusAllocated,
        Series::CpusUsed,
        Series::MemTotal,
        Series::MemAllocated,
        Series::MemUsed,
        Series::DiskTotal,
        Series::DiskAllocated,
        Series::DiskUsed,
        Series::GpusTotal,
        Series::GpusAllocated,
        Series::Tasks,
    ];

    /// The Prometheus-style metric name (`meseta_cpus_used`).
    pub fn metric(self) -> &'static str {
        match self {
            Series::CpusTotal => "meseta_cpus_total",
            Series::CpusAllocated => "meseta_cpus_allocated",
            Series::CpusUsed => "meseta_cpus_used",
            Series::MemTotal => "meseta_mem_total_mib",
            Series::MemAllocated => "meseta_mem_allocated_mib",
            Series::MemUsed => "meseta_mem_used_mib",
            Series::DiskTotal => "meseta_disk_total_mib",
            Series::DiskAllocated => "meseta_disk_allocated_mib",
            Series::DiskUsed => "meseta_disk_used_mib",
            Series::GpusTotal => "meseta_gpus_total",
            Series::GpusAllocated => "meseta_gpus_allocated",
            Series::Tasks => "meseta_tasks_live",
        }
    }

    /// The series of a metric name.
    pub fn from_metric(name: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|s| s.metric() == name)
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Series> {
        Series::ALL.get(usize::from(c)).copied()
    }
}

/// Whose figures: the whole cluster, one node (agent id) or one app (task name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    /// The cluster.
    Cluster,
    /// One agent, by id.
    Node(String),
    /// One app, by the name its tasks carry.
    App(String),
}

/// Both rings of one series, and the running mean of the coarse slot being filled.
#[derive(Clone, Debug)]
struct Rings {
    fine: Ring,
    coarse: Ring,
    acc_slot: i64,
    acc_sum: f64,
    acc_n: u32,
}

impl Rings {
    fn new() -> Rings {
        Rings {
            fine: Ring::new(Tier::Fine.len()),
            coarse: Ring::new(Tier::Coarse.len()),
            acc_slot: i64::MIN,
            acc_sum: 0.0,
            acc_n: 0,
        }
    }

    fn ring(&self, tier: Tier) -> &Ring {
        match tier {
            Tier::Fine => &self.fine,
            Tier::Coarse => &self.coarse,
        }
    }

    fn ring_mut(&mut self, tier: Tier) -> &mut Ring {
        match tier {
            Tier::Fine => &mut self.fine,
            Tier::Coarse => &mut self.coarse,
        }
    }

    /// Record `v` at `t`; returns the coarse slot touched when the value was kept.
    fn record(&mut self, t: i64, v: f64) -> Option<(i64, i64)> {
        let fs = t.div_euclid(FINE_STEP);
        if !self.fine.set(fs, v) {
            return None;
        }
        let cs = t.div_euclid(COARSE_STEP);
        if cs != self.acc_slot {
            self.acc_slot = cs;
            self.acc_sum = 0.0;
            self.acc_n = 0;
        }
        self.acc_sum += v;
        self.acc_n += 1;
        self.coarse.set(cs, self.acc_sum / f64::from(self.acc_n));
        Some((fs, cs))
    }
}

/// A chunk that changed since the last [`History::take_dirty`].
type ChunkId = (Entity, Tier, i64);

/// The history of every entity.
#[derive(Debug, Default)]
pub struct History {
    entities: BTreeMap<Entity, BTreeMap<Series, Rings>>,
    dirty: BTreeSet<ChunkId>,
}

/// One point of a range query: unix seconds and value.
pub type Point = (i64, f64);

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Record `v` for `series` of `entity` at unix second `t` (NaN and infinities are ignored).
    pub fn record(&mut self, entity: &Entity, series: Series, t: i64, v: f64) {
        if !v.is_finite() {
            return;
        }
        let known = self
            .entities
            .get(entity)
            .is_some_and(|e| e.contains_key(&series));
        if !known && v == 0.0 {
            // A series takes its rings at its first non-zero value: the gpus of a cluster
            // without any, or the disk of apps that hold none, cost nothing.
            return;
        }
        let rings = match self.entities.get_mut(entity) {
            Some(e) => e,
            None => self.entities.entry(entity.clone()).or_default(),
        }
        .entry(series)
        .or_insert_with(Rings::new);
        if let Some((fs, cs)) = rings.record(t, v) {
            self.dirty
                .insert((entity.clone(), Tier::Fine, fs.div_euclid(CHUNK_SLOTS)));
            self.dirty
                .insert((entity.clone(), Tier::Coarse, cs.div_euclid(CHUNK_SLOTS)));
        }
    }

    /// The points of `series` of `entity` in `[start, end]` every `step` seconds, from the fine
    /// tier when it still holds `start`, else from the coarse one. Each point is the latest slot
    /// at or before its time within one `step` (or one slot), so a coarse step is not empty
    /// between samples; instants without a sample are left out.
    pub fn range(
        &self,
        entity: &Entity,
        series: Series,
        start: i64,
        end: i64,
        step: i64,
    ) -> Vec<Point> {
        let Some(rings) = self.entities.get(entity).and_then(|e| e.get(&series)) else {
            return Vec::new();
        };
        let step = step.max(1);
        let tier = if rings.fine.holds(start.div_euclid(FINE_STEP)) || !rings.coarse.has_data() {
            Tier::Fine
        } else {
            Tier::Coarse
        };
        let ring = rings.ring(tier);
        let ts = tier.step();
        let look_back = (step / ts).max(1);
        let mut out = Vec::new();
        let mut t = start;
        while t <= end && out.len() < 11_000 {
            let slot = t.div_euclid(ts);
            if let Some(v) = (0..look_back).find_map(|k| ring.get(slot - k)) {
                out.push((t, v));
            }
            t += step;
        }
        out
    }

    /// The latest value of `series` of `entity`.
    pub fn latest(&self, entity: &Entity, series: Series) -> Option<f64> {
        let r = self.entities.get(entity)?.get(&series)?;
        r.fine.head().and_then(|h| r.fine.get(h))
    }

    /// The entities with any history.
    pub fn entities(&self) -> impl Iterator<Item = &Entity> {
        self.entities.keys()
    }

    /// Drop the series (and entities) with no sample in the 14 days before `now` (nodes and
    /// apps long gone).
    pub fn sweep(&mut self, now: i64) {
        let oldest = now.div_euclid(COARSE_STEP) - COARSE_LEN as i64;
        self.entities.retain(|_, series| {
            series.retain(|_, r| r.coarse.head().is_some_and(|h| h > oldest));
            !series.is_empty()
        });
    }

    /// Heap bytes of the rings now.
    pub fn heap_bytes(&self) -> usize {
        self.entities
            .values()
            .flat_map(|s| s.values())
            .map(|r| r.fine.heap_bytes() + r.coarse.heap_bytes())
            .sum()
    }

    /// Heap bytes the rings of the series that exist may take at most (the bound the docs
    /// state: [`SERIES_BYTES`] each, reached by values that change at every sample).
    pub fn max_heap_bytes(&self) -> usize {
        self.entities
            .values()
            .flat_map(|s| s.values())
            .map(|r| r.fine.max_heap_bytes() + r.coarse.max_heap_bytes())
            .sum()
    }

    /// The chunks changed since the last call, encoded: `(store key under prefix, bytes)`.
    pub fn take_dirty(&mut self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.take_dirty_at_most(prefix, usize::MAX)
    }

    /// Up to `n` of the changed chunks, encoded, in key order; the others stay changed. A
    /// persister that stores a few hundred at a time holds no encoded copy of the whole history
    /// (one chunk per agent and tier: a 10,000-agent cluster's took ~6 MiB at once).
    pub fn take_dirty_at_most(&mut self, prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some((entity, tier, chunk)) = self.dirty.pop_first() else {
                break;
            };
            let Some(series) = self.entities.get(&entity) else {
                continue;
            };
            let bytes = codec::encode(tier, chunk, series.iter().map(|(s, r)| (*s, r.ring(tier))));
            out.push((chunk_key(prefix, &entity, tier, chunk), bytes));
        }
        out
    }

    /// Load one stored chunk (at start). Slots already outside their ring's window are ignored;
    /// so are chunks of a tier or series this version does not know.
    pub fn load_chunk(&mut self, prefix: &str, key: &str, bytes: &[u8]) -> Result<(), CodecError> {
        let (entity, tier) = parse_chunk_key(prefix, key)?;
        let decoded = codec::decode(bytes)?;
        if decoded.tier != tier {
            return Err(CodecError::Mismatch(key.to_string()));
        }
        let series = self.entities.entry(entity).or_default();
        for (s, values) in decoded.series {
            let rings = series.entry(s).or_insert_with(Rings::new);
            let ring = rings.ring_mut(tier);
            let first = decoded.chunk * CHUNK_SLOTS;
            for (i, bits) in values.into_iter().enumerate() {
                if bits != ring::MISSING {
                    ring.set_bits(first + i as i64, bits);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
