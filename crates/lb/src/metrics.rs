//! What the balancer counts: Prometheus series per app and backend (requests by status class,
//! proxy errors, latency histograms, TCP connections) for `GET /metrics`, and per app version
//! requests and errors for the status page, which a canary judge reads.
//!
//! What every proxied request counts (requests, latency, errors, per version) is counted per
//! thread and summed on scrape ([`sharded`]): the workers never share a cache line or a lock
//! for it.

pub mod sharded;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use sharded::{ShardedCounter, ShardedHistogram};

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    backend: String,
    code: String,
}

/// Labels of per-backend series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    app: String,
    backend: String,
}

/// Labels of per-app series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

/// Requests and errors of one app version.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Requests answered or failed.
    pub requests: ShardedCounter,
    /// Of which 5xx answers (the backend's or the balancer's).
    pub errors: ShardedCounter,
}

/// All the balancer's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, ShardedCounter>,
    errors: Family<BackendLabels, ShardedCounter>,
    latency: Family<BackendLabels, ShardedHistogram>,
    connections: Family<BackendLabels, Counter>,
    upgrades: Family<BackendLabels, Counter>,
    unrouted: Family<AppLabels, Counter>,
    versions: Mutex<BTreeMap<(String, String), Arc<VersionStats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the balancer's series.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("meseta_lb");
        let requests = Family::<RequestLabels, ShardedCounter>::default();
        let errors = Family::<BackendLabels, ShardedCounter>::default();
        let latency = Family::<BackendLabels, ShardedHistogram>::default();
        let connections = Family::<BackendLabels, Counter>::default();
        let upgrades = Family::<BackendLabels, Counter>::default();
        let unrouted = Family::<AppLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests proxied, by app, backend and status class",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Backend failures: connection refused or reset, timeouts",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the backend's response head",
            latency.clone(),
        );
        registry.register(
            "tcp_connections",
            "TCP connections proxied",
            connections.clone(),
        );
        registry.register(
            "upgrades",
            "HTTP connections upgraded (WebSocket) and spliced to a backend",
            upgrades.clone(),
        );
        registry.register(
            "unrouted",
            "Requests answered by the balancer itself (no app, no backend, bad request)",
            unrouted.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
            connections,
            upgrades,
            unrouted,
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The series of one backend of `app` at `version`, looked up once and then counted into
    /// without label hashing or locks shared by all requests.
    pub fn backend(&self, app: &str, backend: &str, version: &str) -> BackendSeries {
        BackendSeries {
            labels: BackendLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
            },
            requests: Default::default(),
            latency: OnceLock::new(),
            errors: OnceLock::new(),
            version: self.version(app, version),
        }
    }

    /// A response of `status` from `backend` of `app` after `seconds`.
    pub fn response(&self, app: &str, backend: &str, version: &str, status: u16, seconds: f64) {
        let code = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&RequestLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&BackendLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
            })
            .observe(seconds);
        self.version_outcome(app, version, status >= 500);
    }

    /// A failure of `backend` (no response; the request may go on to another backend).
    pub fn failure(&self, app: &str, backend: &str) {
        self.errors
            .get_or_create(&BackendLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// A request that got no backend's response, last tried on `version`.
    pub fn failed_request(&self, app: &str, version: &str) {
        self.version_outcome(app, version, true);
    }

    /// A TCP connection proxied to `backend`.
    pub fn connection(&self, app: &str, backend: &str) {
        self.connections
            .get_or_create(&BackendLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// An HTTP connection upgraded and spliced to `backend`.
    pub fn upgrade(&self, app: &str, backend: &str) {
        self.upgrades
            .get_or_create(&BackendLabels {
                app: app.to_owned(),
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// A request the balancer answered itself (`app` empty when no app matched).
    pub fn unrouted(&self, app: &str) {
        self.unrouted
            .get_or_create(&AppLabels {
                app: app.to_owned(),
            })
            .inc();
    }

    fn version_outcome(&self, app: &str, version: &str, error: bool) {
        let stats = self.version(app, version);
        stats.requests.inc();
        if error {
            stats.errors.inc();
        }
    }

    /// The counters of `version` of `app`.
    pub fn version(&self, app: &str, version: &str) -> Arc<VersionStats> {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((app.to_owned(), version.to_owned()))
            .or_default()
            .clone()
    }

    /// Every (app, version) counted: (requests, errors).
    pub fn versions(&self) -> BTreeMap<(String, String), (u64, u64)> {
        let map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, v)| (k.clone(), (v.requests.get(), v.errors.get())))
            .collect()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The series of one backend (see [`Metrics::backend`]); each is created in the registry on
/// its first use, so `/metrics` shows only what happened.
#[derive(Debug)]
pub struct BackendSeries {
    labels: BackendLabels,
    /// Requests by status class 1xx..5xx.
    requests: [OnceLock<ShardedCounter>; 5],
    latency: OnceLock<ShardedHistogram>,
    errors: OnceLock<ShardedCounter>,
    version: Arc<VersionStats>,
}

impl BackendSeries {
    /// A response of `status` after `seconds`.
    pub fn response(&self, m: &Metrics, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5);
        self.requests[class - 1]
            .get_or_init(|| {
                m.requests
                    .get_or_create(&RequestLabels {
                        app: self.labels.app.clone(),
                        backend: self.labels.backend.clone(),
                        code: format!("{class}xx"),
                    })
                    .clone()
            })
            .inc();
        self.latency
            .get_or_init(|| m.latency.get_or_create(&self.labels).clone())
            .observe(seconds);
        self.outcome(status >= 500);
    }

    /// A failure (no response; the request may go on to another backend).
    pub fn failure(&self, m: &Metrics) {
        self.errors
            .get_or_init(|| m.errors.get_or_create(&self.labels).clone())
            .inc();
    }

    /// A request that got no backend's response, last tried here.
    pub fn failed_request(&self) {
        self.outcome(true);
    }

    fn outcome(&self, error: bool) {
        self.version.requests.inc();
        if error {
            self.version.errors.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_count_per_backend_and_version() {
        let m = Metrics::new();
        m.response("/web", "127.0.0.1:1", "v1", 200, 0.002);
        m.response("/web", "127.0.0.1:1", "v1", 503, 0.002);
        m.failure("/web", "127.0.0.1:2");
        m.failure("/web", "127.0.0.1:2");
        m.failed_request("/web", "v2");
        let v = m.versions();
        assert_eq!(v[&("/web".to_owned(), "v1".to_owned())], (2, 1));
        assert_eq!(v[&("/web".to_owned(), "v2".to_owned())], (1, 1));
        let text = m.render();
        assert!(
            text.contains(
                r#"meseta_lb_requests_total{app="/web",backend="127.0.0.1:1",code="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"meseta_lb_errors_total{app="/web",backend="127.0.0.1:2"} 2"#));
        assert!(text.contains("meseta_lb_request_duration_seconds_bucket"));
        assert!(
            text.contains(
                r#"meseta_lb_request_duration_seconds_bucket{le="0.0025",app="/web",backend="127.0.0.1:1"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"meseta_lb_request_duration_seconds_count{app="/web",backend="127.0.0.1:1"} 2"#
        ));
        assert!(text.contains("# TYPE meseta_lb_request_duration_seconds histogram"));
        assert!(text.contains("# TYPE meseta_lb_requests counter"));
    }

    #[test]
    fn backend_series_count_into_the_same_registry_and_versions() {
        let m = Metrics::new();
        let b = m.backend("/web", "127.0.0.1:1", "v1");
        b.response(&m, 200, 0.001);
        b.response(&m, 204, 0.001);
        b.response(&m, 502, 0.001);
        b.failure(&m);
        b.failed_request();
        m.response("/web", "127.0.0.1:1", "v1", 200, 0.002);
        assert_eq!(m.versions()[&("/web".to_owned(), "v1".to_owned())], (5, 2));
        let text = m.render();
        assert!(
            text.contains(
                r#"meseta_lb_requests_total{app="/web",backend="127.0.0.1:1",code="2xx"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"meseta_lb_requests_total{app="/web",backend="127.0.0.1:1",code="5xx"} 1"#
        ));
        assert!(!text.contains(r#"code="4xx""#), "{text}");
        assert!(text.contains(r#"meseta_lb_errors_total{app="/web",backend="127.0.0.1:1"} 1"#));
    }
}
