//! One typed HTTP client of the meseta master, used by every CLI verb (`meseta execute`, `task`,
//! `node`, `app`, `deploy`, `job`, …) and the benchmarks.
//!
//! [`MasterClient`] holds the connection pools and the masters' URLs (one, or the several masters
//! of a highly available cluster, whose leader each request finds: [`masters`]); each API the
//! master serves is a group of its methods:
//!
//! ```text
//! MasterClient ── state, slaves, frameworks, get_path, operator_call,      Mesos v0/v1 operator,
//!      │          teardown, kill_task, task_logs, …                       meseta's own endpoints
//!      ├───────── subscribe → SchedulerSession, SchedulerCaller           subscription.rs
//!      ├───────── marathon() → /v2 apps, deployments, canaries, events    marathon.rs
//!      └───────── chronos() → /v1/scheduler jobs, runs, graph             chronos.rs
//! ```
//!
//! Failures are [`ClientError`]s ([`error`]), worded as each API words them; ids in URLs are
//! percent-encoded by [`path`].

pub mod chronos;
pub mod error;
pub mod marathon;
pub mod masters;
pub mod path;
pub mod subscription;

pub use chronos::Chronos;
pub use error::{error_message, ApiError, ApiKind, ClientError};
pub use marathon::{Marathon, Reply, SseStream};
pub use subscription::{SchedulerCaller, SchedulerSession, SCHEDULER_PATH, STREAM_ID_HEADER};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use masters::{Failure, Masters, Sent};

/// Timeout of ordinary (non-streaming) requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A slice of a task's sandbox log file (`GET /api/meseta/v1/tasks/{id}/logs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The bytes read (lossily decoded), starting at `offset`.
    pub data: String,
    /// The file offset of `data`.
    pub offset: u64,
    /// The file's size now.
    pub size: u64,
}

/// Redirects one request follows (a follower's 307 to the leader takes one).
const MAX_REDIRECTS: usize = 5;

/// The environment variable naming the CA file that clients trust for `https` masters.
pub const CA_CERT_ENV: &str = "MESETA_CA_CERT";

/// A client of the master, or of the masters of a highly available cluster; clones share the
/// connection pools and the knowledge of which master leads.
#[derive(Clone, Debug)]
pub struct MasterClient {
    masters: Arc<Masters>,
    http: reqwest::Client,
    stream_http: reqwest::Client,
    /// An `Authorization` value sent instead of the client's own (see [`MasterClient::acting_as`]).
    acting_as: Option<reqwest::header::HeaderValue>,
}

impl MasterClient {
    /// A client of the master at `base_url`, e.g. `http://127.0.0.1:5050`, or of the masters of a
    /// comma-separated list (`http://m1:5050,http://m2:5050`), whose leader each request finds
    /// (see [`masters`]).
    ///
    /// Requests carry `Authorization: Bearer $MESETA_TOKEN` when that variable is set, and
    /// `https` masters are verified against the CA file named by `MESETA_CA_CERT`, if set (else
    /// the platform's roots); see [`MasterClient::with_options`].
    pub fn new(base_url: impl Into<String>) -> Result<MasterClient, ClientError> {
        MasterClient::with_options(base_url, env_token().as_deref(), env_ca().as_deref())
    }

    /// A client like [`MasterClient::new`] whose every request carries `Authorization: Bearer
    /// <token>` (masters started with `--acl` want one), or none for `None`.
    pub fn with_token(
        base_url: impl Into<String>,
        token: Option<&str>,
    ) -> Result<MasterClient, ClientError> {
        MasterClient::with_options(base_url, token, env_ca().as_deref())
    }

    /// [`MasterClient::new`] trusting the CA certificates of the PEM file `ca` for `https`
    /// masters (`--ca-cert`); `None`: the platform's roots.
    pub fn with_ca(
        base_url: impl Into<String>,
        ca: Option<&std::path::Path>,
    ) -> Result<MasterClient, ClientError> {
        MasterClient::with_options(base_url, env_token().as_deref(), ca)
    }

    /// A client sending `token` (if any) and trusting `ca` (if any) for `https` masters.
    pub fn with_options(
        base_url: impl Into<String>,
        token: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> Result<MasterClient, ClientError> {
        let given = base_url.into();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| ClientError::BadToken)?;
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let tls = match ca {
            Some(ca) => Some(meseta_tls::client_config(ca, None)?),
            // Plain masters only: no platform roots to load.
            None if !given.contains("https://") => {
                Some(Arc::unwrap_or_clone(meseta_tls::plain_client_config()))
            }
            None => None,
        };
        let masters = Masters::parse(&given).ok_or_else(|| ClientError::NoMaster {
            given: given.clone(),
        })?;
        let build = |timeout: Option<Duration>| {
            // A follower answers 307 with the leader's URL; reqwest sends the same method and
            // body there (bodies here are bytes, never streams).
            let mut b = reqwest::Client::builder()
                .default_headers(headers.clone())
                .no_proxy()
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                .connect_timeout(Duration::from_secs(5));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            if let Some(tls) = &tls {
                b = b.tls_backend_preconfigured(tls.clone());
            }
            b.build().map_err(|source| ClientError::Http {
                url: given.clone(),
                source,
            })
        };
        Ok(MasterClient {
            http: build(Some(REQUEST_TIMEOUT))?,
            stream_http: build(None)?,
            masters,
            acting_as: None,
        })
    }

    /// This client (sharing its connection pools) sending `authorization` as the
    /// `Authorization` header of every request instead of its own token (`None`: its own, if
    /// any). A server that reads on behalf of its callers (the web UI, built without a token of
    /// its own) forwards each caller's credential, so the master filters and refuses as it
    /// would for the caller.
    pub fn acting_as(&self, authorization: Option<reqwest::header::HeaderValue>) -> MasterClient {
        MasterClient {
            acting_as: authorization,
            ..self.clone()
        }
    }

    /// The master's Marathon `/v2` API.
    pub fn marathon(&self) -> Marathon<'_> {
        Marathon { client: self }
    }

    /// The master's Chronos `/v1/scheduler` API.
    pub fn chronos(&self) -> Chronos<'_> {
        Chronos { client: self }
    }

    /// The base URL (no trailing slash) of the master that answered last: the leader, once
    /// found; the first listed before any answer.
    pub fn base_url(&self) -> String {
        self.masters.leader()
    }

    /// The listed masters' base URLs.
    pub fn masters(&self) -> &[String] {
        self.masters.list()
    }

    /// Sends `method path` through the ordinary pool, built further by `build`.
    async fn send_plain(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Sent, ClientError> {
        self.send(&self.http, method, path, build)
            .await
            .map_err(Failure::plain)
    }

    async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let Sent { resp, url } = self.send_plain(Method::GET, path, |r| r).await?;
        let resp = expect_status(resp, &url, &[200]).await?;
        read_json(resp, &url).await
    }

    /// `GET /master/state`.
    pub async fn state(&self) -> Result<Value, ClientError> {
        self.get_json("/master/state").await
    }

    /// `GET /master/slaves`.
    pub async fn slaves(&self) -> Result<Value, ClientError> {
        self.get_json("/master/slaves").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Value, ClientError> {
        self.get_json("/version").await
    }

    /// `GET /health`: `Ok` when the master answers 200.
    pub async fn health(&self) -> Result<(), ClientError> {
        let Sent { resp, url } = self.send_plain(Method::GET, "/health", |r| r).await?;
        expect_status(resp, &url, &[200]).await.map(drop)
    }

    /// `GET` any master path as JSON (e.g. `/master/roles`).
    pub async fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        self.get_json(path).await
    }

    /// `GET` any master path into `T`: only the fields `T` names are kept, which is cheaper
    /// than a whole [`Value`] for a large answer read for a few fields.
    pub async fn get_path_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let Sent { resp, url } = self.send_plain(Method::GET, path, |r| r).await?;
        let resp = expect_status(resp, &url, &[200]).await?;
        read_json(resp, &url).await
    }

    /// `DELETE` a master path; 2xx is success.
    pub async fn delete_path(&self, path: &str) -> Result<(), ClientError> {
        let Sent { resp, url } = self.send_plain(Method::DELETE, path, |r| r).await?;
        expect_status(resp, &url, &[200, 202, 204]).await.map(drop)
    }

    /// `method path` with an optional JSON body; the JSON answer (`null` when empty) when the
    /// status is one of `ok`.
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Value, ClientError> {
        let Sent { resp, url } = self
            .send_plain(method, path, |r| match body {
                Some(b) => r.json(b),
                None => r,
            })
            .await?;
        let resp = expect_status(resp, &url, ok).await?;
        let text = resp.text().await.map_err(http_err(&url))?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A v1 operator API call (`POST /api/v1`); returns the JSON answer (`null` when empty).
    pub async fn operator_call(&self, call: &Value) -> Result<Value, ClientError> {
        let Sent { resp, url } = self
            .send_plain(Method::POST, "/api/v1", |r| r.json(call))
            .await?;
        let resp = expect_status(resp, &url, &[200, 202]).await?;
        let text = resp.text().await.map_err(http_err(&url))?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /master/frameworks`.
    pub async fn frameworks(&self) -> Result<Value, ClientError> {
        self.get_json("/master/frameworks").await
    }

    /// `POST /master/teardown` (`frameworkId=<id>`): kill the framework's tasks and remove it.
    pub async fn teardown(&self, framework_id: &str) -> Result<(), ClientError> {
        let body = format!("frameworkId={}", path::segment(framework_id));
        let Sent { resp, url } = self
            .send_plain(Method::POST, "/master/teardown", |r| {
                r.header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone())
            })
            .await?;
        expect_status(resp, &url, &[200]).await.map(drop)
    }

    /// `POST /api/meseta/v1/tasks/{id}/kill`; 404 when the task is unknown.
    pub async fn kill_task(&self, task_id: &str) -> Result<(), ClientError> {
        let path = format!("/api/meseta/v1/tasks/{}/kill", path::segment(task_id));
        let Sent { resp, url } = self.send_plain(Method::POST, &path, |r| r).await?;
        expect_status(resp, &url, &[200, 202]).await.map(drop)
    }

    /// `GET /api/meseta/v1/tasks/{id}/logs?stream=&offset=&length=`; `stream` is `stdout` or
    /// `stderr`.
    pub async fn task_logs(
        &self,
        task_id: &str,
        stream: &str,
        offset: u64,
        length: u64,
    ) -> Result<LogChunk, ClientError> {
        let path = format!(
            "/api/meseta/v1/tasks/{}/logs?stream={}&offset={offset}&length={length}",
            path::segment(task_id),
            path::segment(stream),
        );
        let Sent { resp, url } = self.send_plain(Method::GET, &path, |r| r).await?;
        let resp = expect_status(resp, &url, &[200]).await?;
        let value = read_json(resp, &url).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// One request of `api` at its prefix + `path`, with a JSON `body`; a non-2xx answer
    /// becomes an [`ApiError`] naming `METHOD path`.
    async fn api_request(
        &self,
        api: ApiKind,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let request = format!("{method} {path}");
        let resp = self
            .api_response(&self.http, api, method, path, "application/json", body)
            .await?;
        let status = resp.status().as_u16();
        let deployment_header = resp
            .headers()
            .get(marathon::DEPLOYMENT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = match resp.text().await {
            Ok(text) => text,
            Err(source) => return Err(ClientError::Unreadable { request, source }),
        };
        Ok(Answer {
            request,
            status,
            deployment_header,
            text,
        })
    }

    /// Sends one request of `api` through `http`; returns the 2xx response with its body
    /// unread.
    async fn api_response(
        &self,
        http: &reqwest::Client,
        api: ApiKind,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let request = format!("{method} {path}");
        let full_path = format!("{}{path}", api.prefix());
        let build = |r: reqwest::RequestBuilder| {
            let r = r.header(reqwest::header::ACCEPT, accept);
            match body {
                Some(b) => r.json(b),
                None => r,
            }
        };
        let resp = match self.send(http, method, &full_path, build).await {
            Ok(sent) => sent.resp,
            Err(failure) => return Err(failure.api(api, request)),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        match resp.text().await {
            Ok(text) => Err(ApiError::from_body(api, request, status, &text).into()),
            Err(source) => Err(ClientError::Unreadable { request, source }),
        }
    }
}

/// A 2xx answer of [`MasterClient::api_request`].
struct Answer {
    /// `METHOD /path`.
    request: String,
    status: u16,
    /// The `Marathon-Deployment-Id` header.
    deployment_header: Option<String>,
    text: String,
}

impl Answer {
    /// The body as JSON; an empty body is `null`.
    fn json_or_null(&self) -> Result<Value, ClientError> {
        if self.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        self.json()
    }

    /// The body as JSON.
    fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_str(&self.text).map_err(|source| ClientError::InvalidJson {
            request: self.request.clone(),
            source,
        })
    }
}

fn http_err(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
    move |source| ClientError::Http {
        url: url.to_string(),
        source,
    }
}

async fn expect_status(
    resp: reqwest::Response,
    url: &str,
    ok: &[u16],
) -> Result<reqwest::Response, ClientError> {
    let status = resp.status().as_u16();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let mut message = error_message(&body);
    if message.is_empty() {
        message = "(empty body)".to_string();
    }
    Err(ClientError::Status {
        url: url.to_string(),
        status,
        message,
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> Result<T, ClientError> {
    let bytes = resp.bytes().await.map_err(http_err(url))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// `MESETA_TOKEN`, when set and not empty.
fn env_token() -> Option<String> {
    std::env::var("MESETA_TOKEN").ok().filter(|t| !t.is_empty())
}

/// The file `MESETA_CA_CERT` names, when set.
fn env_ca() -> Option<std::path::PathBuf> {
    std::env::var_os(CA_CERT_ENV).map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_trailing_slash_is_dropped() {
        let c = MasterClient::new("http://127.0.0.1:5050/").expect("client");
        assert_eq!(c.base_url(), "http://127.0.0.1:5050");
        assert_eq!(c.masters(), ["http://127.0.0.1:5050"]);
    }

    #[test]
    fn a_list_of_masters_starts_at_the_first() {
        let c = MasterClient::new("http://m1:5050, http://m2:5050/").expect("client");
        assert_eq!(c.base_url(), "http://m1:5050");
        assert_eq!(c.masters(), ["http://m1:5050", "http://m2:5050"]);
        assert!(matches!(
            MasterClient::new(" , "),
            Err(ClientError::NoMaster { .. })
        ));
    }
}
