//! The HTTP lookup API, as Mesos-DNS serves it (served by the master beside its own routes):
//!
//! - `GET /v1/version` → `{"Service","URL","Version"}`;
//! - `GET /v1/config` → the DNS settings (`Domain`, `TTL`, `Resolvers`, `Listener`, …);
//! - `GET /v1/hosts/{host}` → `[{"host","ip"}]` (A records; `host` with the root dot);
//! - `GET /v1/services/{service}` → `[{"service","host","ip","port"}]` (SRV records; `port` is a
//!   string, as Mesos-DNS has it).
//!
//! A name without records gets Mesos-DNS's one blank entry (`[{"host":"","ip":""}]`), status 200.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::zone::Snapshot;
use crate::Config;

#[derive(Clone)]
struct Api {
    snapshot: Arc<ArcSwap<Snapshot>>,
    cfg: Arc<Config>,
    listener: String,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `[{"host","ip"}]` of `name` in `snap`.
pub fn hosts(snap: &Snapshot, name: &str) -> Value {
    let name = normalize(name);
    let list: Vec<Value> = snap
        .names
        .hosts
        .get(&name)
        .into_iter()
        .flatten()
        .map(|ip| json!({"host": format!("{name}."), "ip": ip.to_string()}))
        .collect();
    if list.is_empty() {
        json!([{"host": "", "ip": ""}])
    } else {
        Value::Array(list)
    }
}

/// `[{"service","host","ip","port"}]` of `name` in `snap`.
pub fn services(snap: &Snapshot, name: &str) -> Value {
    let name = normalize(name);
    let list: Vec<Value> = snap
        .names
        .services
        .get(&name)
        .into_iter()
        .flatten()
        .map(|s| {
            json!({"service": name, "host": format!("{}.", s.target), "ip": s.ip.to_string(),
                   "port": s.port.to_string()})
        })
        .collect();
    if list.is_empty() {
        json!([{"service": "", "host": "", "ip": "", "port": ""}])
    } else {
        Value::Array(list)
    }
}

/// The lookup API's routes over `snapshot`; `listener` is the DNS server's address.
pub fn router(snapshot: Arc<ArcSwap<Snapshot>>, cfg: Config, listener: String) -> Router {
    let api = Api {
        snapshot,
        cfg: Arc::new(cfg),
        listener,
    };
    Router::new()
        .route(
            "/v1/version",
            get(|| async {
                Json(json!({"Service": "meseta-dns", "URL": "",
                            "Version": env!("CARGO_PKG_VERSION")}))
            }),
        )
        .route(
            "/v1/config",
            get(|State(a): State<Api>| async move {
                Json(json!({
                    "Domain": a.cfg.domain, "TTL": a.cfg.ttl, "Listener": a.listener,
                    "Resolvers": a.cfg.upstream.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                    "Timeout": crate::upstream::TIMEOUT.as_secs(),
                    "RefreshSeconds": 0, "DnsOn": true, "HttpOn": true,
                    "SOAMname": format!("ns1.{}.", a.cfg.domain),
                    "SOARname": format!("root.ns1.{}.", a.cfg.domain),
                }))
            }),
        )
        .route(
            "/v1/hosts/{host}",
            get(|State(a): State<Api>, Path(h): Path<String>| async move {
                Json(hosts(&a.snapshot.load(), &h))
            }),
        )
        .route(
            "/v1/services/{service}",
            get(|State(a): State<Api>, Path(s): Path<String>| async move {
                Json(services(&a.snapshot.load(), &s))
            }),
        )
        .with_state(api)
}
