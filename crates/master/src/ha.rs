//! High availability: several masters share one store (etcd); one leads, the others follow.
//!
//! A process running [`run_ha`] binds its listener once and keeps serving on it whatever its
//! role; only the router behind it changes:
//!
//! ```text
//!            ┌────────────── campaign (store::election) ──────────────┐
//!            ▼                                                         │
//!   follower router ──elected──▶ Master::new(fenced store) + leader router ──lost──┘
//!   307 → leader                  agents, frameworks, built-in schedulers      (connections
//!   503 while none                recovered from the store                      closed)
//! ```
//!
//! A follower answers every request with `307 Temporary Redirect` to the same path on the
//! leader (Marathon and Chronos clients follow it), `GET /master/redirect` with `//host:port`
//! of the leader as Mesos does, `/v2/leader`, `/scheduler/leader` and `/v1/scheduler/leader`
//! with `{"leader": "host:port"}`, and `/health` and `/version` itself. While no leader is
//! known it answers 503. The leader writes only through the fenced store of its
//! [`Leadership`]: after losing the lease, even before noticing, none of its writes lands.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use meseta_store::election::{Election, LeaderInfo};
use meseta_store::Store;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{http, Cancel, Master, MasterConfig, MasterError};

/// How a master takes part in the election.
#[derive(Clone, Debug)]
pub struct HaOptions {
    /// Lifetime of the leader's lease after its last keep-alive: how long a dead leader goes
    /// unnoticed at most.
    pub lease_ttl: Duration,
    /// Base URL other masters redirect clients to, e.g. `http://10.0.0.2:5050` (default:
    /// `http://<hostname>:<port>`).
    pub advertise_url: Option<String>,
}

impl Default for HaOptions {
    fn default() -> Self {
        HaOptions {
            lease_ttl: Duration::from_secs(2),
            advertise_url: None,
        }
    }
}

/// What the process knows about the election, shared with the follower router.
#[derive(Default)]
struct View {
    leader: Option<LeaderInfo>,
}

/// A master process in an HA group: its address, and the task running it.
pub struct HaHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// This process's base URL as published when it leads.
    pub url: String,
    cancel: Cancel,
    task: tokio::task::JoinHandle<Result<(), MasterError>>,
    leading: tokio::sync::watch::Receiver<Option<Master>>,
}

impl HaHandle {
    /// The master while this process leads.
    pub fn leader(&self) -> Option<Master> {
        self.leading.borrow().clone()
    }

    /// Waits until this process leads (or has stopped).
    pub async fn wait_leading(&mut self) -> Option<Master> {
        loop {
            if let Some(m) = self.leading.borrow_and_update().clone() {
                return Some(m);
            }
            if self.leading.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Stops: resigns leadership (so another master takes over at once) and stops serving.
    pub async fn shutdown(self) -> Result<(), MasterError> {
        self.cancel.cancel();
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(MasterError::Serve(std::io::Error::other(e.to_string()))),
        }
    }

    /// Waits until the process stops by itself (a fatal error).
    pub async fn wait(&mut self) -> Result<(), MasterError> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(MasterError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Binds `cfg.listen` and takes part in the leader election on `store`: follows (redirecting
/// clients to the leader) until elected, then runs the master over the fenced store with the
/// routes of `extra` (built-in schedulers, started anew each time this process is elected),
/// and follows again if leadership is lost.
pub async fn start_ha<F>(
    cfg: MasterConfig,
    ha: HaOptions,
    store: Arc<dyn Store>,
    extra: F,
) -> Result<HaHandle, MasterError>
where
    F: Fn(&Master, &Cancel) -> Router + Send + Sync + 'static,
{
    let tls = crate::server_tls(&cfg)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (listener, addr) = crate::bind(cfg.listen).await?;
    let url = ha
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}:{}", cfg.hostname, addr.port()))
        .trim_end_matches('/')
        .to_string();
    let me = LeaderInfo {
        id: uuid::Uuid::new_v4().to_string(),
        url: url.clone(),
        elected_at: 0.0,
    };
    let view = Arc::new(RwLock::new(View::default()));
    let current = Arc::new(RwLock::new(follower_router(view.clone(), me.id.clone())));
    let cancel = Cancel::new();
    let server = serve(listener, current.clone(), cancel.clone(), tls);
    let (leading_tx, leading) = tokio::sync::watch::channel(None);
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let roles = run_roles(
            cfg,
            ha,
            store,
            extra,
            addr,
            me,
            view,
            current,
            leading_tx,
            c.clone(),
        )
        .await;
        c.cancel();
        let served = server.await;
        roles?;
        match served {
            Ok(r) => r,
            Err(e) => Err(MasterError::Serve(std::io::Error::other(e.to_string()))),
        }
    });
    tracing::info!(%addr, %url, "master listening (HA: campaigning for leadership)");
    Ok(HaHandle {
        addr,
        url,
        cancel,
        task,
        leading,
    })
}

/// Serves whatever router is current (the follower's or the leader's).
fn serve(
    listener: TcpListener,
    current: Arc<RwLock<Router>>,
    cancel: Cancel,
    tls: Option<Arc<meseta_tls::tokio_rustls::rustls::ServerConfig>>,
) -> tokio::task::JoinHandle<Result<(), MasterError>> {
    let dispatch = Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let router = current.read().unwrap_or_else(|e| e.into_inner()).clone();
        async move { router.oneshot(req).await }
    }));
    crate::serve(listener, dispatch, cancel, tls)
}

#[allow(clippy::too_many_arguments)]
async fn run_roles<F>(
    cfg: MasterConfig,
    ha: HaOptions,
    store: Arc<dyn Store>,
    extra: F,
    addr: SocketAddr,
    me: LeaderInfo,
    view: Arc<RwLock<View>>,
    current: Arc<RwLock<Router>>,
    leading: tokio::sync::watch::Sender<Option<Master>>,
    cancel: Cancel,
) -> Result<(), MasterError>
where
    F: Fn(&Master, &Cancel) -> Router + Send + Sync + 'static,
{
    let election = Election::new(store.clone(), ha.lease_ttl);
    let follower = follower_router(view.clone(), me.id.clone());
    loop {
        let mut candidate = me.clone();
        candidate.elected_at = crate::unix_now();
        let observe = |l: Option<LeaderInfo>| {
            let mut v = view.write().unwrap_or_else(|e| e.into_inner());
            if v.leader != l {
                match &l {
                    Some(l) if l.id != candidate.id => {
                        tracing::info!(leader = %l.url, "following the leading master")
                    }
                    Some(_) => {}
                    None => tracing::info!("no leading master"),
                }
            }
            v.leader = l;
        };
        let leadership = tokio::select! {
            r = election.campaign(&candidate, observe) => r?,
            () = cancel.cancelled() => return Ok(()),
        };
        tracing::info!(url = %me.url, revision = leadership.revision(), "elected leading master");
        let term = cancel.child_token();
        let master = match Master::new(cfg.clone(), leadership.fenced_store()).await {
            Ok(m) => m,
            // The store blinked while the new leader read it: give the lead up and try again.
            Err(MasterError::Store(e)) if e.is_retryable() => {
                tracing::warn!(error = %e, "the new leader could not load the store; resigning");
                leadership.resign().await;
                tokio::time::sleep(ha.lease_ttl / 2).await;
                continue;
            }
            // A store of another schema, or an unfinished restore: say so and stop.
            Err(e) => {
                leadership.resign().await;
                return Err(e);
            }
        };
        master.core().set_address(addr);
        let router = http::router_with(master.clone(), extra(&master, &term));
        let edge = master.core().config().edge.clone();
        let router = crate::core::EdgeLayer::apply(edge.as_ref(), router, &master);
        *current.write().unwrap_or_else(|e| e.into_inner()) = router;
        let m = master.clone();
        let t = term.clone();
        let timers = tokio::spawn(async move { m.run_timers(t).await });
        let _ = leading.send(Some(master.clone()));
        let lost = tokio::select! {
            why = leadership.lost() => Some(why),
            () = cancel.cancelled() => None,
        };
        // Step down: stop every part of this term before anything else may be served.
        *current.write().unwrap_or_else(|e| e.into_inner()) = follower.clone();
        let _ = leading.send(None);
        term.cancel();
        master.core().close_connections();
        let _ = timers.await;
        match lost {
            Some(why) => {
                tracing::warn!(reason = %why, "lost leadership; following again");
                view.write().unwrap_or_else(|e| e.into_inner()).leader = None;
            }
            None => {
                leadership.resign().await;
                return Ok(());
            }
        }
    }
}

/// The routes of a follower (see the module docs).
fn follower_router(view: Arc<RwLock<View>>, me: String) -> Router {
    Router::new().fallback(move |req: Request| {
        let leader = view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .leader
            .clone()
            .filter(|l| l.id != me);
        async move { follow(req, leader) }
    })
}

fn follow(req: Request, leader: Option<LeaderInfo>) -> Response {
    let path = req.uri().path();
    match path {
        "/health" | "/master/health" => return StatusCode::OK.into_response(),
        "/version" => {
            return axum::Json(serde_json::json!({
                "version": crate::MESOS_VERSION,
                "meseta_version": env!("CARGO_PKG_VERSION"),
            }))
            .into_response()
        }
        _ => {}
    }
    let Some(leader) = leader else {
        return crate::http::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master elected yet; retry shortly".to_string(),
        );
    };
    match path {
        "/master/redirect" | "/redirect" => redirect(format!("//{}", leader.host_port())),
        "/v2/leader" | "/scheduler/leader" | "/v1/scheduler/leader" => {
            axum::Json(serde_json::json!({ "leader": leader.host_port() })).into_response()
        }
        _ => {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or(path);
            redirect(format!("{}{pq}", leader.url))
        }
    }
}

fn redirect(location: String) -> Response {
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> LeaderInfo {
        LeaderInfo {
            id: "x".into(),
            url: "http://10.0.0.2:5050".into(),
            elected_at: 0.0,
        }
    }

    fn req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    }

    fn location(r: &Response) -> String {
        r.headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn follower_redirects_to_the_same_path_on_the_leader() {
        let r = follow(req("/v2/apps?embed=apps.tasks"), Some(leader()));
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            location(&r),
            "http://10.0.0.2:5050/v2/apps?embed=apps.tasks"
        );
        let r = follow(req("/master/redirect"), Some(leader()));
        assert_eq!(location(&r), "//10.0.0.2:5050");
    }

    #[test]
    fn follower_without_leader_is_unavailable_but_healthy() {
        assert_eq!(
            follow(req("/v2/apps"), None).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(follow(req("/health"), None).status(), StatusCode::OK);
        assert_eq!(
            follow(req("/v2/leader"), Some(leader())).status(),
            StatusCode::OK
        );
    }
}
