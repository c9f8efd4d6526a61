//! The one check every request passes: who is asking (a token, or a framework's principal and
//! secret), what the request needs (`meseta_acl::route::classify`), the bulk-delete guard, and
//! afterwards the filtering of listings and the audit entry.

use std::sync::{Arc, LazyLock};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use meseta_acl::guard::{self, Deletion};
use meseta_acl::route::{self, Need};
use meseta_acl::{Access, Credential, Denied, Grants, Kind, Resource};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::peek::CallFacts;
use crate::registry::Entry;
use crate::{unix_now, AuditEntry, Edge};

/// Largest body the check reads to find the ids a request names (scheduler calls may be large).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

static ALL: LazyLock<Arc<Grants>> = LazyLock::new(|| Arc::new(Grants::all()));
static NONE: LazyLock<Arc<Grants>> = LazyLock::new(|| Arc::new(Grants::default()));

/// The layer's state: the edge, and the router behind the layer for internal look-ups.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) edge: Arc<Edge>,
    pub(crate) inner: Router,
}

/// What the request was found to be, for the audit entry.
struct Facts {
    method: String,
    path: String,
    accessor: String,
    principal: Option<String>,
    targets: Vec<String>,
    /// Scheduler calls other than SUBSCRIBE and TEARDOWN (acknowledgements, accepts) are the
    /// hot path: audited only when refused.
    routine: bool,
    /// The named app's or group's version before the write, and the version it produced.
    before: Option<String>,
    after: Option<String>,
}

impl Facts {
    fn entry(&self, status: StatusCode, denied: Option<String>) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time: unix_now(),
            accessor: self.accessor.clone(),
            principal: self.principal.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            targets: self.targets.clone(),
            status: status.as_u16(),
            denied,
            before: self.before.clone(),
            after: self.after.clone(),
        }
    }
}

/// The middleware (see the module docs).
pub(crate) async fn check(
    axum::extract::State(gate): axum::extract::State<Gate>,
    req: Request,
    next: Next,
) -> Response {
    let edge = &gate.edge;
    let enabled = edge.cfg.enabled;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let need = route::classify(method.as_str(), &path);
    let ident = identify(edge, req.headers());
    let valid = ident.as_ref().ok().and_then(Option::as_ref);
    let mut facts = Facts {
        method: method.to_string(),
        path: req.uri().to_string(),
        accessor: valid.map(|e| e.token.accessor.clone()).unwrap_or_default(),
        principal: valid.and_then(|e| e.token.principal.clone()),
        targets: Vec::new(),
        routine: false,
        before: None,
        after: None,
    };
    let entry = match (&ident, enabled, &need) {
        (_, _, Need::Public) | (_, false, _) => ident.clone().ok().flatten(),
        (Err(reason), true, _) => return unauthorized(edge, &facts, reason),
        (Ok(None), true, _) => return unauthorized(edge, &facts, "a token is required"),
        (Ok(Some(e)), true, _) => Some(e.clone()),
    };
    let grants: &Arc<Grants> = match (&entry, enabled) {
        (_, false) => &ALL,
        (Some(e), true) => &e.grants,
        (None, true) => &NONE,
    };
    // With ACLs off a scheduler call needs no look inside (it is the launch path).
    let (req, decision) = if !enabled && need == Need::Framework {
        facts.routine = true;
        (req, Ok(()))
    } else {
        match decide(&need, grants, req, &mut facts).await {
            Ok(v) => v,
            Err(resp) => return *resp,
        }
    };
    if let Err(d) = decision {
        return denied(edge, &facts, &d);
    }
    // Apps and jobs may reference only the secrets their writer may read.
    let req = if enabled && !matches!(method, Method::GET | Method::HEAD) && defines_tasks(&path) {
        let (req, body) = match read_body(req).await {
            Ok(v) => v,
            Err(resp) => return *resp,
        };
        if let Some(b) = &body {
            if let Err(d) = secret_sources(b)
                .iter()
                .try_for_each(|p| grants.allows(Access::Read, Resource::new(Kind::Secrets, p)))
            {
                return denied(edge, &facts, &d);
            }
        }
        req
    } else {
        req
    };
    let deletion = (method == Method::DELETE)
        .then(|| guard::deletion(&path))
        .flatten();
    let mut would_go = 0;
    if let Some(d) = &deletion {
        would_go = count(&gate.inner, d).await;
        if let Err(resp) = guarded(edge, grants, d, would_go, query.as_deref(), &facts) {
            return *resp;
        }
    }
    let filter = match need {
        Need::Listing(k) if !grants.covers_all(Access::Read, k) => Some(k),
        _ => None,
    };
    // Writes of apps and groups record the version before and after in their audit entry.
    let versioned = matches!(
        need,
        Need::One(Access::Write | Access::Admin, Kind::Apps, _)
            | Need::BodyIds(Access::Write, Kind::Apps)
    );
    if let Need::One(_, Kind::Apps, id) = &need {
        if versioned && id.len() > 1 {
            facts.before = version_of(&gate.inner, id).await;
        }
    }
    let mut resp = next.run(req).await;
    if versioned && resp.status().is_success() {
        let (r, after) = answered_version(resp).await;
        resp = r;
        facts.after = after;
    }
    if let Some(kind) = filter {
        resp = if path.ends_with("/events") {
            crate::events::filter(resp, kind, Grants::clone(grants))
        } else {
            filter_body(resp, kind, grants).await
        };
    }
    let refused = matches!(
        resp.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    if refused {
        // A refusal by the endpoint itself (an agent without its client certificate or join
        // token, a framework's bad call): audited with the endpoint's own words, GETs too.
        let (r, why) = refusal_message(resp).await;
        resp = r;
        edge.audit.record(facts.entry(resp.status(), Some(why)));
    } else if !matches!(method, Method::GET | Method::HEAD) && !facts.routine {
        edge.audit.record(facts.entry(resp.status(), None));
    }
    if deletion.is_some() && resp.status().is_success() && !facts.accessor.is_empty() {
        if let Ok(mut w) = edge.deletes.lock() {
            w.record(&facts.accessor, unix_now(), would_go.max(1));
        }
    }
    resp
}

/// The token a request presents: `Ok(None)` without one, `Err(reason)` for a bad one. The
/// `Authorization` header, or else the web UI's sign-in cookie.
fn identify(edge: &Edge, headers: &HeaderMap) -> Result<Option<Arc<Entry>>, String> {
    let from_cookie;
    let value = match headers.get(header::AUTHORIZATION) {
        Some(v) => v
            .to_str()
            .map_err(|_| "malformed Authorization header".to_string())?,
        None => {
            let cookies = headers.get_all(header::COOKIE).iter();
            let cookie = meseta_acl::cookie_bearer(cookies.filter_map(|c| c.to_str().ok()));
            let Some(bearer) = cookie else {
                return Ok(None);
            };
            from_cookie = bearer;
            from_cookie.as_str()
        }
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
    let cred = meseta_acl::parse_authorization(value, b64)
        .ok_or_else(|| "malformed Authorization header: use 'Bearer <token>'".to_string())?;
    let snap = edge.registry.snapshot();
    let (secret, principal) = match &cred {
        Credential::Token(t) => (t.as_str(), None),
        Credential::Basic { principal, secret } => (secret.as_str(), Some(principal.as_str())),
    };
    let entry = snap
        .by_hash(&meseta_acl::hash_secret(secret))
        .ok_or_else(|| match principal {
            Some(p) => format!("wrong secret for principal {p}"),
            None => "unknown or revoked token".to_string(),
        })?;
    if let Some(p) = principal {
        if entry.token.principal.as_deref() != Some(p) {
            return Err(format!("wrong secret for principal {p}"));
        }
    }
    if entry.token.expired(unix_now()) {
        return Err("token expired".to_string());
    }
    Ok(Some(entry.clone()))
}

type Decided = (Request, Result<(), Denied>);

/// Whether `grants` allow what the request needs; reads the body when the ids are in it.
async fn decide(
    need: &Need,
    grants: &Arc<Grants>,
    req: Request,
    facts: &mut Facts,
) -> Result<Decided, Box<Response>> {
    let allowed = |a, k, n: &str| grants.allows(a, Resource::new(k, n));
    let d = match need {
        Need::Public | Need::Authenticated => Ok(()),
        Need::One(a, k, name) => {
            if !name.is_empty() {
                facts.targets.push(name.clone());
            }
            allowed(*a, *k, name)
        }
        Need::Listing(k) => grants.allows_some(Access::Read, *k),
        Need::BodyIds(a, k) => {
            let (req, body) = read_body(req).await?;
            let ids = body.as_ref().and_then(|b| route::body_ids(*k, b));
            let d = match &ids {
                Some(ids) => ids.iter().try_for_each(|id| allowed(*a, *k, id)),
                None => allowed(*a, *k, ""),
            };
            facts.targets = ids.unwrap_or_default();
            return Ok((req, d));
        }
        Need::OperatorCall => {
            let (req, body) = read_body(req).await?;
            let t = body
                .as_ref()
                .and_then(|b| b.get("type")?.as_str())
                .unwrap_or("");
            let (a, k) = route::operator_call(t);
            facts.targets.push(t.to_string());
            return Ok((req, allowed(a, k, "")));
        }
        Need::Framework => {
            let (mut req, bytes) = read_bytes(req).await?;
            // A pointer copy: the grants are shared with the token's registry entry.
            let g = Arc::clone(grants);
            req.extensions_mut()
                .insert(meseta_master::TaskUsers(std::sync::Arc::new(
                    move |u: &str| {
                        g.allows(Access::Write, Resource::new(Kind::Users, u))
                            .map_err(|d| d.missing)
                    },
                )));
            let call = CallFacts::read(&bytes);
            let t = call.as_ref().and_then(|c| c.kind.as_deref());
            facts.routine = !matches!(t, Some("SUBSCRIBE" | "TEARDOWN"));
            let d = call
                .as_ref()
                .map_or(Ok(()), |c| framework_call(grants, c, facts));
            return Ok((req, d));
        }
    };
    Ok((req, d))
}

/// A scheduler call's roles (SUBSCRIBE, RESERVE), task users (SUBSCRIBE, LAUNCH) and the
/// secrets its tasks reference.
fn framework_call(g: &Grants, call: &CallFacts, facts: &mut Facts) -> Result<(), Denied> {
    if let (Some(p), Some(mine)) = (call.principal.as_deref(), &facts.principal) {
        if p != mine {
            return Err(Denied {
                missing: format!("framework principal {p} (authenticated as {mine})"),
            });
        }
    }
    // Task users are checked by the master task by task (TASK_ERROR, not a 4xx on the call,
    // which would end a framework): see `TaskUsers` in `decide`; here they are only recorded.
    for t in &call.tasks {
        if let Some(u) = &t.user {
            facts.targets.push(format!("user:{u}"));
        }
        // A task may reference only secrets the caller may read.
        for r in &t.secrets {
            g.allows(Access::Read, Resource::new(Kind::Secrets, r))?;
        }
    }
    let roles = call.roles.iter().filter(|r| !r.is_empty() && *r != "*");
    let users = call.user.iter().filter(|u| !u.is_empty());
    facts
        .targets
        .extend(roles.clone().map(|r| format!("role:{r}")));
    facts
        .targets
        .extend(users.clone().map(|u| format!("user:{u}")));
    for r in roles {
        g.allows(Access::Write, Resource::new(Kind::Roles, r))?;
    }
    for u in users {
        g.allows(Access::Write, Resource::new(Kind::Users, u))?;
    }
    Ok(())
}

/// Whether requests to `path` may carry app, group, pod or job definitions.
fn defines_tasks(path: &str) -> bool {
    ["/v2/", "/v1/jobs", "/scheduler/", "/v1/scheduler/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Every secret `source` a definition names (`secrets: {name: {source}}` at any depth: apps,
/// the apps of groups, pods, Metronome's `run`).
fn secret_sources(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(secrets)) = m.get("secrets") {
                    out.extend(
                        secrets
                            .values()
                            .filter_map(|s| s.get("source")?.as_str())
                            .map(str::to_string),
                    );
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// The request with its body read (and put back), and the body as JSON if it is JSON.
async fn read_body(req: Request) -> Result<(Request, Option<Value>), Box<Response>> {
    let (req, bytes) = read_bytes(req).await?;
    Ok((req, serde_json::from_slice(&bytes).ok()))
}

/// The request with its body read (and put back, sharing the bytes), and the body.
async fn read_bytes(req: Request) -> Result<(Request, Bytes), Box<Response>> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        Box::new(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            json!([]),
        ))
    })?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

/// How many apps (or jobs) a delete would remove.
async fn count(inner: &Router, d: &Deletion) -> usize {
    let Deletion::Group(g) = d else { return 1 };
    let uri = if g == "/" {
        "/v2/groups".to_string()
    } else {
        format!("/v2/groups{g}")
    };
    let Ok(req) = Request::get(uri).body(Body::empty()) else {
        return 0;
    };
    let Ok(resp) = inner.clone().oneshot(req).await;
    if !resp.status().is_success() {
        return 0;
    }
    match axum::body::to_bytes(resp.into_body(), BODY_LIMIT).await {
        Ok(b) => serde_json::from_slice(&b)
            .map(|v| guard::apps_in_group(&v))
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The version of the app, or else the group, `id` (for the audit entry).
async fn version_of(inner: &Router, id: &str) -> Option<String> {
    for (uri, pointer) in [
        (format!("/v2/apps{id}"), "/app/version"),
        (format!("/v2/groups{id}?embed=group.groups"), "/version"),
    ] {
        let req = Request::get(uri).body(Body::empty()).ok()?;
        let Ok(resp) = inner.clone().oneshot(req).await;
        if !resp.status().is_success() {
            continue;
        }
        let bytes = axum::body::to_bytes(resp.into_body(), BODY_LIMIT)
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        return v
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    None
}

/// Largest answer of a write read for its `version`; larger ones pass unread.
const ANSWER_LIMIT: u64 = 1024 * 1024;

/// The `version` a write's JSON answer carries, and the answer put back together.
async fn answered_version(resp: Response) -> (Response, Option<String>) {
    let small = axum::body::HttpBody::size_hint(resp.body())
        .upper()
        .is_some_and(|n| n <= ANSWER_LIMIT);
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !small || !json {
        return (resp, None);
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ANSWER_LIMIT as usize).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    let version = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("version")?.as_str().map(str::to_string));
    (Response::from_parts(parts, Body::from(bytes)), version)
}

/// Largest refusal read for its message.
const REFUSAL_LIMIT: usize = 64 * 1024;

/// What a refusal says: its JSON `message`, or its text (at most 200 characters), and the
/// refusal put back together.
async fn refusal_message(resp: Response) -> (Response, String) {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, REFUSAL_LIMIT).await else {
        return (
            Response::from_parts(parts, Body::empty()),
            "refused by the endpoint".to_string(),
        );
    };
    let why = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
    let why = if why.trim().is_empty() {
        "refused by the endpoint".to_string()
    } else {
        why
    };
    (Response::from_parts(parts, Body::from(bytes)), why)
}

/// The bulk-delete guard: refused without `?confirm=true`, and without an admin grant on what
/// goes when ACLs are on.
fn guarded(
    edge: &Edge,
    g: &Grants,
    d: &Deletion,
    would_go: usize,
    query: Option<&str>,
    facts: &Facts,
) -> Result<(), Box<Response>> {
    // Deletes count per token: requests without one (ACLs off) have only the per-request limit.
    let recent = if facts.accessor.is_empty() {
        0
    } else {
        edge.deletes
            .lock()
            .map(|mut w| w.recent(&facts.accessor, unix_now()))
            .unwrap_or(0)
    };
    let Some(why) = guard::needs_confirmation(d, would_go, recent, edge.cfg.bulk_delete_limit)
    else {
        return Ok(());
    };
    if !guard::confirmed(query) {
        let msg = format!(
            "{why}: nothing was deleted; repeat with ?{}=true (needs an admin grant when ACLs are on)",
            guard::CONFIRM_PARAM
        );
        edge.audit
            .record(facts.entry(StatusCode::CONFLICT, Some(why)));
        let details = json!([{"wouldDelete": would_go}]);
        return Err(Box::new(reply(StatusCode::CONFLICT, &msg, details)));
    }
    let (kind, name) = match d {
        Deletion::Group(n) | Deletion::App(n) => (Kind::Apps, n.as_str()),
        Deletion::Job(n) => (Kind::Jobs, n.as_str()),
    };
    g.allows(Access::Admin, Resource::new(kind, name))
        .map_err(|d| Box::new(denied(edge, facts, &d)))
}

fn reply(status: StatusCode, message: &str, details: Value) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "details": details})),
    )
        .into_response()
}

fn unauthorized(edge: &Edge, facts: &Facts, reason: &str) -> Response {
    edge.audit
        .record(facts.entry(StatusCode::UNAUTHORIZED, Some(reason.to_string())));
    if facts.method == "GET" && ui_page(&facts.path) {
        // A browser: to the sign-in form, which comes back here once signed in.
        let to = format!(
            "/ui/login?next={}&reason={}",
            query_value(&facts.path),
            query_value(reason)
        );
        return match header::HeaderValue::from_str(&to) {
            Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
            Err(_) => StatusCode::UNAUTHORIZED.into_response(),
        };
    }
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        reason,
        json!([{"reason": reason}]),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"meseta\""),
    );
    r
}

/// Whether `uri` is a page of the web UI (not its scripts, styles or JSON).
fn ui_page(uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or(uri);
    (path == "/ui" || path.starts_with("/ui/"))
        && !path.starts_with("/ui/static/")
        && !path.starts_with("/ui/api/")
}

/// `s` percent-encoded for a query value.
fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn denied(edge: &Edge, facts: &Facts, d: &Denied) -> Response {
    edge.audit
        .record(facts.entry(StatusCode::FORBIDDEN, Some(d.missing.clone())));
    reply(
        StatusCode::FORBIDDEN,
        &d.to_string(),
        json!([{"missing": d.missing}]),
    )
}

/// A JSON listing with only what `g` may read.
async fn filter_body(resp: Response, kind: Kind, g: &Grants) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "listing too large to filter",
            json!([]),
        );
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(Bytes::new()));
    };
    route::filter_listing(kind, g, &mut v);
    let out = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}
