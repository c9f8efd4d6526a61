//! The history runtime: samples `Master::usage_snapshot()` into a [`History`] every
//! [`HistoryConfig::sample_every`], writes the changed chunks to the master's store at most every
//! [`HistoryConfig::persist_every`] (and once more at shutdown), loads them at start, and answers
//! range queries in Prometheus' JSON shape.
//!
//! Entities: the cluster, each agent (`node="<agent id>"`) and each app (`app="<task name>"`: a
//! Marathon app's tasks carry its id with `/` as `_`). Series and metric names:
//! [`meseta_history::Series`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_history::{Entity, History, Series};
use meseta_master::usage::{used_amounts, UsageSnapshot};
use meseta_master::{Cancel, Master};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::Ui;

/// Store prefix of the history chunks.
pub const PREFIX: &str = "/meseta/history";

/// How often to sample and to persist.
#[derive(Clone, Copy, Debug)]
pub struct HistoryConfig {
    /// Sampling period (10 s: the fine tier's step).
    pub sample_every: Duration,
    /// Longest time a sample waits before it is in the store.
    pub persist_every: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            sample_every: Duration::from_secs(meseta_history::FINE_STEP as u64),
            persist_every: Duration::from_secs(60),
        }
    }
}

/// The history and whether it has been loaded from the store.
pub(crate) struct Shared {
    history: Mutex<History>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Load the stored history and start sampling and persisting.
pub(crate) fn spawn(master: Master, cancel: Cancel, cfg: HistoryConfig) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        history: Mutex::new(History::new()),
    });
    let s = Arc::clone(&shared);
    tokio::spawn(async move { run(master, cancel, cfg, s).await });
    shared
}

async fn run(master: Master, cancel: Cancel, cfg: HistoryConfig, shared: Arc<Shared>) {
    load(&master, &shared).await;
    let mut sample = tokio::time::interval(cfg.sample_every);
    let mut persist = tokio::time::interval(cfg.persist_every);
    persist.tick().await;
    loop {
        tokio::select! {
            _ = sample.tick() => {
                // After a restart, until the agents known from the store are back, the cluster
                // would read as empty: no sample rather than a false one.
                if master.agents_transitioning() {
                    continue;
                }
                let snap = master.usage_snapshot();
                let mut h = shared.lock();
                record(&mut h, &snap);
            }
            _ = persist.tick() => {
                let now = meseta_history_now();
                shared.lock().sweep(now);
                save(&master, &shared).await;
            }
            () = cancel.cancelled() => {
                save(&master, &shared).await;
                return;
            }
        }
    }
}

fn meseta_history_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn load(master: &Master, shared: &Shared) {
    let kvs = match master.store().list(PREFIX).await {
        Ok(kvs) => kvs,
        Err(e) => {
            tracing::warn!(error = %e, "history: cannot read the stored history; starting empty");
            return;
        }
    };
    let mut h = shared.lock();
    let mut bad = 0;
    for kv in &kvs {
        if h.load_chunk(PREFIX, &kv.key, &kv.value).is_err() {
            bad += 1;
        }
    }
    tracing::info!(chunks = kvs.len(), bad, "history loaded");
}

/// Changed chunks encoded and stored at a time: the encoded copies of a few hundred chunks
/// are alive at once, not of every agent's. They are written in a few transactions
/// ([`meseta_store::put_batched`]), not one write each: on etcd every write is a raft proposal.
const SAVE_BATCH: usize = 256;

async fn save(master: &Master, shared: &Shared) {
    loop {
        let chunks = shared.lock().take_dirty_at_most(PREFIX, SAVE_BATCH);
        let last = chunks.len() < SAVE_BATCH;
        let taken = chunks.len();
        if let Err((written, e)) = meseta_store::put_batched(master.store(), chunks).await {
            tracing::warn!(error = %e, written, not_stored = taken - written,
                "history: chunks not stored (kept in memory)");
        }
        if last {
            return;
        }
    }
}

/// Record one snapshot: cluster, per node and per app totals, allocations and usage (pure).
pub fn record(h: &mut History, snap: &UsageSnapshot) {
    let t = snap.timestamp as i64;
    let mut cluster = Sums::default();
    let mut nodes: BTreeMap<&str, Sums> = BTreeMap::new();
    let mut apps: BTreeMap<&str, Sums> = BTreeMap::new();
    for a in &snap.agents {
        cluster.total = add(cluster.total, a.total);
        let n = nodes.entry(&a.id).or_default();
        n.total = a.total;
    }
    for task in &snap.tasks {
        let used = task.usage.as_ref().map(used_amounts).unwrap_or([0.0; 4]);
        for s in [
            &mut cluster,
            nodes.entry(&task.agent_id).or_default(),
            apps.entry(&task.name).or_default(),
        ] {
            s.allocated = add(s.allocated, task.allocated);
            s.used = add(s.used, used);
            s.tasks += 1.0;
        }
    }
    cluster.write(h, &Entity::Cluster, t, true);
    for (id, s) in nodes {
        s.write(h, &Entity::Node(id.to_string()), t, true);
    }
    for (name, s) in apps {
        s.write(h, &Entity::App(name.to_string()), t, false);
    }
}

#[derive(Default)]
struct Sums {
    total: [f64; 4],
    allocated: [f64; 4],
    used: [f64; 4],
    tasks: f64,
}

fn add(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

impl Sums {
    fn write(&self, h: &mut History, e: &Entity, t: i64, with_total: bool) {
        use Series::*;
        if with_total {
            for (s, v) in [CpusTotal, MemTotal, DiskTotal, GpusTotal]
                .iter()
                .zip(self.total)
            {
                h.record(e, *s, t, v);
            }
        }
        for (s, v) in [CpusAllocated, MemAllocated, DiskAllocated, GpusAllocated]
            .iter()
            .zip(self.allocated)
        {
            h.record(e, *s, t, v);
        }
        for (s, v) in [CpusUsed, MemUsed, DiskUsed].iter().zip(self.used) {
            h.record(e, *s, t, v);
        }
        h.record(e, Tasks, t, self.tasks);
    }
}

/// A selector `metric{label="value"}` parsed from a PromQL-like query.
#[derive(Debug, PartialEq)]
pub(crate) struct Selector {
    pub series: Series,
    pub entity: Entity,
}

/// Parse `name`, `name{node="id"}` or `name{app="name"}`; the message says what is accepted.
pub(crate) fn parse_selector(q: &str) -> Result<Selector, String> {
    let q = q.trim();
    let (name, labels) = match q.split_once('{') {
        Some((n, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .ok_or_else(|| format!("unclosed '{{' in query {q:?}"))?;
            (n.trim(), Some(inner.trim()))
        }
        None => (q, None),
    };
    let series = Series::from_metric(name).ok_or_else(|| {
        let names: Vec<&str> = Series::ALL.iter().map(|s| s.metric()).collect();
        format!(
            "unknown metric {name:?}: expected one of {}",
            names.join(", ")
        )
    })?;
    let entity = match labels.filter(|l| !l.is_empty()) {
        None => Entity::Cluster,
        Some(l) => {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("expected label=\"value\" in {l:?}"))?;
            let v = v
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("label value must be quoted in {l:?}"))?;
            match k.trim() {
                "node" => Entity::Node(v.to_string()),
                "app" => Entity::App(v.trim_start_matches('/').replace('/', "_")),
                other => return Err(format!("unknown label {other:?}: expected node or app")),
            }
        }
    };
    Ok(Selector { series, entity })
}

/// `query_range` parameters.
#[derive(Deserialize)]
pub(crate) struct RangeParams {
    query: String,
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

fn prom_error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// A Prometheus time: unix seconds (fractions allowed).
fn parse_time(name: &str, v: Option<&str>, default: i64) -> Result<i64, String> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f as i64)
            .ok_or_else(|| format!("invalid {name} {s:?}: expected unix seconds")),
    }
}

/// A Prometheus duration: seconds, or a number with `s`, `m`, `h`, `d`.
fn parse_step(v: Option<&str>) -> Result<i64, String> {
    let Some(s) = v else { return Ok(60) };
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        Some('d') => (&s[..s.len() - 1], 86400.0),
        _ => (s, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .map(|n| (n * mult) as i64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("invalid step {s:?}: expected seconds (>= 1) or a duration like 5m"))
}

/// `GET /api/v1/query_range?query=&start=&end=&step=` (Prometheus' matrix result).
pub(crate) async fn query_range(State(ui): State<Ui>, Query(p): Query<RangeParams>) -> Response {
    let now = meseta_history_now();
    let parsed = (|| {
        let sel = parse_selector(&p.query)?;
        let end = parse_time("end", p.end.as_deref(), now)?;
        let start = parse_time("start", p.start.as_deref(), end - 3600)?;
        let step = parse_step(p.step.as_deref())?;
        if end < start {
            return Err("end is before start".to_string());
        }
        if (end - start) / step > 11_000 {
            return Err("exceeded maximum resolution of 11,000 points per timeseries".to_string());
        }
        Ok((sel, start, end, step))
    })();
    let (sel, start, end, step) = match parsed {
        Ok(v) => v,
        Err(m) => return prom_error(m),
    };
    let points = ui
        .history
        .lock()
        .range(&sel.entity, sel.series, start, end, step);
    let values: Vec<Value> = points
        .iter()
        .map(|(t, v)| json!([t, v.to_string()]))
        .collect();
    let result = if values.is_empty() {
        vec![]
    } else {
        vec![json!({"metric": metric_labels(&sel), "values": values})]
    };
    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}

/// `query` parameters.
#[derive(Deserialize)]
pub(crate) struct InstantParams {
    query: String,
}

/// `GET /api/v1/query?query=` (the latest sample, Prometheus' vector result).
pub(crate) async fn query(State(ui): State<Ui>, Query(p): Query<InstantParams>) -> Response {
    let sel = match parse_selector(&p.query) {
        Ok(s) => s,
        Err(m) => return prom_error(m),
    };
    let now = meseta_history_now();
    let result = match ui.history.lock().latest(&sel.entity, sel.series) {
        Some(v) => vec![json!({"metric": metric_labels(&sel), "value": [now, v.to_string()]})],
        None => vec![],
    };
    Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        .into_response()
}

fn metric_labels(sel: &Selector) -> Value {
    let mut m = json!({"__name__": sel.series.metric()});
    match &sel.entity {
        Entity::Cluster => {}
        Entity::Node(id) => m["node"] = json!(id),
        Entity::App(id) => m["app"] = json!(id),
    }
    m
}

/// `history` parameters.
#[derive(Deserialize)]
pub(crate) struct JsonParams {
    /// `cluster`, `node:<id>` or `app:<name>`.
    entity: Option<String>,
    /// Seconds back from now (default 1 h).
    range: Option<i64>,
    step: Option<i64>,
}

/// `GET /ui/api/history?entity=&range=&step=`: every series of one entity as JSON.
pub(crate) async fn json(State(ui): State<Ui>, Query(p): Query<JsonParams>) -> Response {
    let entity = match p.entity.as_deref().unwrap_or("cluster") {
        "cluster" => Entity::Cluster,
        e => match e.split_once(':') {
            Some(("node", id)) => Entity::Node(id.to_string()),
            Some(("app", id)) => Entity::App(id.trim_start_matches('/').replace('/', "_")),
            _ => {
                return crate::pages::json_error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid entity {e:?}: expected cluster, node:<id> or app:<name>"),
                )
            }
        },
    };
    let now = meseta_history_now();
    let range = p.range.unwrap_or(3600).clamp(60, 14 * 86400);
    let step = p.step.unwrap_or((range / 120).max(10)).max(1);
    let h = ui.history.lock();
    let series: serde_json::Map<String, Value> = Series::ALL
        .iter()
        .map(|s| {
            let pts = h.range(&entity, *s, now - range, now, step);
            (s.metric().to_string(), json!(pts))
        })
        .collect();
    Json(json!({"start": now - range, "end": now, "step": step, "series": series})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_master::usage::{AgentUsage, TaskUsageRow};

    #[test]
    fn selectors_name_a_series_and_an_entity() {
        let s = parse_selector("meseta_cpus_used").expect("ok");
        assert_eq!((s.series, s.entity), (Series::CpusUsed, Entity::Cluster));
        let s = parse_selector(r#"meseta_mem_used_mib{app="/prod/web"}"#).expect("ok");
        assert_eq!(s.entity, Entity::App("prod_web".into()));
        let s = parse_selector(r#"meseta_cpus_allocated{ node = "a-1" }"#).expect("ok");
        assert_eq!(s.entity, Entity::Node("a-1".into()));
        assert!(parse_selector("up")
            .expect_err("unknown")
            .contains("meseta_cpus_used"));
        assert!(parse_selector(r#"meseta_cpus_used{pod="x"}"#).is_err());
        assert!(parse_selector(r#"meseta_cpus_used{app=x}"#).is_err());
        assert_eq!(parse_step(Some("5m")), Ok(300));
        assert!(parse_step(Some("0")).is_err());
    }

    #[test]
    fn a_snapshot_is_recorded_for_the_cluster_each_node_and_each_app() {
        let agent = |id: &str| AgentUsage {
            id: id.into(),
            hostname: id.into(),
            active: true,
            total: [4.0, 4096.0, 10000.0, 0.0],
            allocated: [0.0; 4],
        };
        let usage = meseta_api::state::TaskUsageView {
            cpus_used: 0.9,
            mem_total_bytes: 100 << 20,
            ..Default::default()
        };
        let task = |id: &str, agent: &str, name: &str| TaskUsageRow {
            id: id.into(),
            name: name.into(),
            framework_id: "f".into(),
            agent_id: agent.into(),
            state: meseta_types::TaskState::Running,
            allocated: [1.0, 128.0, 0.0, 0.0],
            usage: Some(usage.clone()),
        };
        let snap = UsageSnapshot {
            timestamp: 1_800_000_000.0,
            agents: vec![agent("a"), agent("b")],
            tasks: vec![
                task("t1", "a", "web"),
                task("t2", "b", "web"),
                task("t3", "b", "db"),
            ],
        };
        let mut h = History::new();
        record(&mut h, &snap);
        let get = |e: Entity, s| h.latest(&e, s).expect("recorded");
        assert_eq!(get(Entity::Cluster, Series::CpusTotal), 8.0);
        assert_eq!(get(Entity::Cluster, Series::CpusAllocated), 3.0);
        assert!((get(Entity::Cluster, Series::CpusUsed) - 2.7).abs() < 0.02);
        assert_eq!(get(Entity::Node("b".into()), Series::Tasks), 2.0);
        assert_eq!(get(Entity::App("web".into()), Series::MemUsed), 200.0);
        assert_eq!(
            h.latest(&Entity::App("web".into()), Series::CpusTotal),
            None
        );
    }
}
