//! The web UI at `/ui` and the usage history behind its charts.
//!
//! ```text
//!  browser ── GET /ui/... ──▶ pages (maud, server-rendered; readable without JavaScript)
//!     │                          │ reads: the master's public endpoints on loopback (/v2, /scheduler,
//!     │                          │        /master) and Master::usage_snapshot()
//!     │                          └ charts: SVG from the history
//!     ├─ EventSource /v2/events ─▶ ui.js refreshes the page's live regions in place
//!     └─ forms ── ui.js ──▶ the public API (/v2/apps/…, …); without JavaScript they post to
//!                           /ui/… handlers that make the same public call on loopback
//!
//!  history::run: every 10 s Master::usage_snapshot() ──▶ meseta_history::History
//!                every 60 s dirty chunks ──▶ the master's Store (/meseta/history/…)
//!  /api/v1/query_range, /api/v1/query (Prometheus JSON), /ui/api/history (JSON)
//! ```
//!
//! The UI sees the master and the frameworks only through public reads: it is a client like
//! the CLI, served from the same listener.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actions;
mod assets;
pub mod history;
mod login;
mod pages;
mod source;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use meseta_master::{Cancel, Master};

pub use history::HistoryConfig;

/// What the UI's handlers share.
#[derive(Clone)]
pub(crate) struct Ui {
    pub master: Master,
    pub source: Arc<source::Source>,
    pub history: Arc<history::Shared>,
}

/// Start the history sampler and return the UI's routes (merged into the master's router).
pub fn start(master: &Master, cancel: &Cancel) -> Router {
    start_with(master, cancel, HistoryConfig::default())
}

/// [`start`] with another sampling configuration (tests sample faster).
pub fn start_with(master: &Master, cancel: &Cancel, cfg: HistoryConfig) -> Router {
    let source = match source::Source::new(master) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "ui: cannot build its loopback client");
            return Router::new();
        }
    };
    let history = history::spawn(master.clone(), cancel.clone(), cfg);
    let ui = Ui {
        master: master.clone(),
        source,
        history,
    };
    router(ui)
}

fn router(ui: Ui) -> Router {
    Router::new()
        .route("/ui", get(pages::dashboard::page))
        .route("/ui/", get(pages::dashboard::page))
        .route("/ui/services", get(pages::services::list))
        .route("/ui/services/{*id}", get(pages::services::detail))
        .route("/ui/jobs", get(pages::jobs::list))
        .route("/ui/jobs/{name}", get(pages::jobs::detail))
        .route("/ui/nodes", get(pages::nodes::list))
        .route("/ui/nodes/{id}", get(pages::nodes::detail))
        .route("/ui/frameworks", get(pages::frameworks::page))
        .route("/ui/tasks/{id}", get(pages::tasks::page))
        .route("/ui/actions/scale/{*id}", post(actions::scale))
        .route("/ui/actions/restart/{*id}", post(actions::restart))
        .route("/ui/actions/rollback/{*id}", post(actions::rollback))
        .route("/ui/actions/drain/{host}", post(actions::drain))
        .route("/ui/actions/down/{host}", post(actions::down))
        .route("/ui/actions/up/{host}", post(actions::up))
        .route("/ui/login", get(login::page).post(login::submit))
        .route("/ui/logout", get(login::logout))
        .route("/ui/static/ui.css", get(assets::css))
        .route("/ui/static/ui.js", get(assets::js))
        .route("/ui/api/history", get(history::json))
        .route("/api/v1/query_range", get(history::query_range))
        .route("/api/v1/query", get(history::query))
        .with_state(ui)
}

/// What a page reads with: the master's own reads, the public API as the page's viewer, and
/// the usage history.
pub(crate) struct Page {
    pub master: Master,
    pub source: source::Reader,
    pub history: Arc<history::Shared>,
}

impl axum::extract::FromRequestParts<Ui> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ui: &Ui,
    ) -> Result<Page, Self::Rejection> {
        Ok(Page {
            master: ui.master.clone(),
            source: ui.source.reader(viewer(&parts.headers)),
            history: ui.history.clone(),
        })
    }
}

/// The viewer's credential to forward: its `Authorization` header, or the sign-in cookie as
/// a bearer token.
fn viewer(headers: &axum::http::HeaderMap) -> Option<axum::http::HeaderValue> {
    use axum::http::header;
    if let Some(a) = headers.get(header::AUTHORIZATION) {
        return Some(a.clone());
    }
    let cookies = headers.get_all(header::COOKIE).iter();
    let bearer = meseta_acl::cookie_bearer(cookies.filter_map(|c| c.to_str().ok()))?;
    axum::http::HeaderValue::from_str(&bearer).ok()
}

/// How long a page waits for one public read before it shows what it has.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
