//! A typed HTTP client of the meseta master, used by the CLI (`meseta execute`, `task`, `node`,
//! `bench`) and by end-to-end tests.
//!
//! [`MasterClient`] wraps the operator endpoints; [`MasterClient::subscribe`] opens a Mesos v1
//! scheduler subscription ([`SchedulerSession`]) whose RecordIO body is decoded into
//! [`Event`]s, and whose [`SchedulerCaller`] sends calls with the right `Mesos-Stream-Id`.

use crate::recordio::{self, Decoder, RecordIoError};
use crate::scheduler::{Call, CallKind, Event, FrameworkInfo, IdValue, Subscribe};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// The scheduler API path.
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";
/// The response header carrying a subscription's stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// Timeout of ordinary (non-streaming) requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to the master failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its body not read.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The master answered with an unexpected status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The `message` field of the JSON body, or the body text.
        message: String,
    },
    /// The response body is not what the endpoint promises.
    #[error("invalid response from {url}: {reason}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The master refused the subscription with an ERROR event.
    #[error("master rejected the subscription: {message}")]
    Rejected {
        /// The ERROR event's message.
        message: String,
    },
    /// The event stream ended or broke.
    #[error("scheduler event stream broken: {reason}")]
    Stream {
        /// What happened.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status, when the master answered with an unexpected one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the master answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether retrying later can help (transport errors, 5xx, broken streams).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http { .. } | ClientError::Stream { .. } => true,
            ClientError::Status { status, .. } => *status >= 500 || *status == 307,
            ClientError::Decode { .. } | ClientError::Rejected { .. } => false,
        }
    }
}

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

/// A client of one master.
#[derive(Clone, Debug)]
pub struct MasterClient {
    base: String,
    http: reqwest::Client,
    stream_http: reqwest::Client,
}

impl MasterClient {
    /// A client of the master at `base_url`, e.g. `http://127.0.0.1:5050`.
    pub fn new(base_url: impl Into<String>) -> Result<MasterClient, ClientError> {
        let base = base_url.into().trim_end_matches('/').to_string();
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(5));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|source| ClientError::Http {
                url: base.clone(),
                source,
            })
        };
        Ok(MasterClient {
            http: build(Some(REQUEST_TIMEOUT))?,
            stream_http: build(None)?,
            base,
        })
    }

    /// The master's base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let url = self.url(path);
        let resp = self.http.get(&url).send().await.map_err(http_err(&url))?;
        let resp = expect_status(resp, &url, &[200]).await?;
        read_json(resp, &url).await
    }

    /// `GET /master/state`.
    pub async fn state(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/master/state").await
    }

    /// `GET /master/slaves`.
    pub async fn slaves(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/master/slaves").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/version").await
    }

    /// `GET /health`: `Ok` when the master answers 200.
    pub async fn health(&self) -> Result<(), ClientError> {
        let url = self.url("/health");
        let resp = self.http.get(&url).send().await.map_err(http_err(&url))?;
        expect_status(resp, &url, &[200]).await.map(drop)
    }

    /// `GET` any master path as JSON (e.g. `/master/roles`).
    pub async fn get_path(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.get_json(path).await
    }

    /// `DELETE` a master path; 2xx is success.
    pub async fn delete_path(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(http_err(&url))?;
        expect_status(resp, &url, &[200, 202, 204]).await.map(drop)
    }

    /// A v1 operator API call (`POST /api/v1`); returns the JSON answer (`null` when empty).
    pub async fn operator_call(
        &self,
        call: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.url("/api/v1");
        let resp = self
            .http
            .post(&url)
            .json(call)
            .send()
            .await
            .map_err(http_err(&url))?;
        let resp = expect_status(resp, &url, &[200, 202]).await?;
        let text = resp.text().await.map_err(http_err(&url))?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// `GET /master/frameworks`.
    pub async fn frameworks(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/master/frameworks").await
    }

    /// `POST /master/teardown` (`frameworkId=<id>`): kill the framework's tasks and remove it.
    pub async fn teardown(&self, framework_id: &str) -> Result<(), ClientError> {
        let url = self.url("/master/teardown");
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("frameworkId={}", path_segment(framework_id)))
            .send()
            .await
            .map_err(http_err(&url))?;
        expect_status(resp, &url, &[200]).await.map(drop)
    }

    /// `POST /api/meseta/v1/tasks/{id}/kill`; 404 when the task is unknown.
    pub async fn kill_task(&self, task_id: &str) -> Result<(), ClientError> {
        let url = self.url(&format!(
            "/api/meseta/v1/tasks/{}/kill",
            path_segment(task_id)
        ));
        let resp = self.http.post(&url).send().await.map_err(http_err(&url))?;
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
        let url = self.url(&format!(
            "/api/meseta/v1/tasks/{}/logs?stream={}&offset={offset}&length={length}",
            path_segment(task_id),
            path_segment(stream),
        ));
        let resp = self.http.get(&url).send().await.map_err(http_err(&url))?;
        let resp = expect_status(resp, &url, &[200]).await?;
        let value = read_json(resp, &url).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// POSTs one scheduler call and expects 202.
    async fn post_call(&self, call: &Call, stream_id: Option<&str>) -> Result<(), ClientError> {
        let url = self.url(SCHEDULER_PATH);
        let mut req = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(recordio::to_ascii_json(call));
        if let Some(id) = stream_id {
            req = req.header(STREAM_ID_HEADER, id);
        }
        let resp = req.send().await.map_err(http_err(&url))?;
        expect_status(resp, &url, &[200, 202]).await.map(drop)
    }

    /// Subscribes `framework_info` (re-subscribing when its `id` is set) and waits for the
    /// SUBSCRIBED event, which [`SchedulerSession::next_event`] then returns first.
    pub async fn subscribe(
        &self,
        framework_info: FrameworkInfo,
    ) -> Result<SchedulerSession, ClientError> {
        let url = self.url(SCHEDULER_PATH);
        let call = Call {
            framework_id: framework_info.id.clone(),
            kind: CallKind::Subscribe {
                subscribe: Subscribe {
                    framework_info,
                    suppressed_roles: None,
                },
            },
        };
        let resp = self
            .stream_http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(recordio::to_ascii_json(&call))
            .send()
            .await
            .map_err(http_err(&url))?;
        let resp = expect_status(resp, &url, &[200]).await?;
        let stream_id = resp
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode {
                url: url.clone(),
                reason: format!("missing {STREAM_ID_HEADER} header"),
            })?;
        let mut session = SchedulerSession {
            caller: SchedulerCaller {
                client: self.clone(),
                stream_id,
                framework_id: IdValue::default(),
            },
            body: Some(resp),
            decoder: Decoder::new(),
            pending: VecDeque::new(),
        };
        session.await_subscribed().await?;
        Ok(session)
    }
}

/// Sends calls on behalf of a subscribed framework; cheap to clone and usable while another task
/// reads the event stream.
#[derive(Clone, Debug)]
pub struct SchedulerCaller {
    client: MasterClient,
    stream_id: String,
    framework_id: IdValue,
}

impl SchedulerCaller {
    /// The subscription's `Mesos-Stream-Id`.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The framework id assigned in SUBSCRIBED.
    pub fn framework_id(&self) -> &IdValue {
        &self.framework_id
    }

    /// Sends `kind` with the framework id and stream id; `Ok` on 202.
    pub async fn call(&self, kind: CallKind) -> Result<(), ClientError> {
        let call = Call {
            framework_id: Some(self.framework_id.clone()),
            kind,
        };
        self.client.post_call(&call, Some(&self.stream_id)).await
    }
}

/// An open scheduler subscription.
#[derive(Debug)]
pub struct SchedulerSession {
    caller: SchedulerCaller,
    body: Option<reqwest::Response>,
    decoder: Decoder,
    pending: VecDeque<Event>,
}

impl SchedulerSession {
    /// The subscription's `Mesos-Stream-Id`.
    pub fn stream_id(&self) -> &str {
        self.caller.stream_id()
    }

    /// The framework id assigned in SUBSCRIBED.
    pub fn framework_id(&self) -> &IdValue {
        self.caller.framework_id()
    }

    /// A handle that sends calls for this subscription.
    pub fn caller(&self) -> SchedulerCaller {
        self.caller.clone()
    }

    /// Sends `kind` with the framework id and stream id; `Ok` on 202.
    pub async fn call(&self, kind: CallKind) -> Result<(), ClientError> {
        self.caller.call(kind).await
    }

    async fn await_subscribed(&mut self) -> Result<(), ClientError> {
        loop {
            match self.read_event().await? {
                Some(Event::Subscribed { subscribed }) => {
                    self.caller.framework_id = subscribed.framework_id.clone();
                    self.pending.push_back(Event::Subscribed { subscribed });
                    return Ok(());
                }
                Some(Event::Error { error }) => {
                    return Err(ClientError::Rejected {
                        message: error.message,
                    })
                }
                Some(_) => continue,
                None => {
                    return Err(ClientError::Stream {
                        reason: "stream ended before SUBSCRIBED".into(),
                    })
                }
            }
        }
    }

    /// The next event; `Ok(None)` once the master closed the stream. Event types meseta does not
    /// model are skipped.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        self.read_event().await
    }

    async fn read_event(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(record) = self.decoder.next_record().map_err(stream_err)? {
                if let Some(ev) = parse_event(&record)? {
                    return Ok(Some(ev));
                }
                continue;
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.chunk().await {
                Ok(Some(bytes)) => self.decoder.feed(&bytes),
                Ok(None) => {
                    self.body = None;
                    if self.decoder.buffered() > 0 {
                        return Err(ClientError::Stream {
                            reason: format!(
                                "stream ended inside a record ({} bytes left)",
                                self.decoder.buffered()
                            ),
                        });
                    }
                    return Ok(None);
                }
                Err(e) => {
                    self.body = None;
                    return Err(ClientError::Stream {
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

/// Decodes one record; `None` for event types [`Event`] does not model.
fn parse_event(record: &[u8]) -> Result<Option<Event>, ClientError> {
    let value: serde_json::Value = serde_json::from_slice(record).map_err(stream_err)?;
    let known = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| Event::TYPE_NAMES.contains(&t));
    if !known {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ClientError::Stream {
            reason: format!("invalid event: {e}"),
        })
}

fn stream_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Stream {
        reason: e.to_string(),
    }
}

impl From<RecordIoError> for ClientError {
    fn from(e: RecordIoError) -> Self {
        stream_err(e)
    }
}

fn http_err(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
    move |source| ClientError::Http {
        url: url.to_string(),
        source,
    }
}

/// Percent-encodes everything but unreserved characters, for one path segment or query value.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `message` field of a JSON error body, else the trimmed body text.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string())
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

async fn read_json(resp: reqwest::Response, url: &str) -> Result<serde_json::Value, ClientError> {
    let bytes = resp.bytes().await.map_err(http_err(url))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_json_message() {
        assert_eq!(
            error_message(r#"{"message":"task t1 not found"}"#),
            "task t1 not found"
        );
        assert_eq!(
            error_message("Framework cannot be found\n"),
            "Framework cannot be found"
        );
        assert_eq!(error_message(r#"{"other":1}"#), r#"{"other":1}"#);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("web.1-a_b~"), "web.1-a_b~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn unknown_event_types_are_skipped() {
        let rec = br#"{"type":"RESCIND_INVERSE_OFFER","rescind_inverse_offer":{"inverse_offer_id":{"value":"o"}}}"#;
        assert!(parse_event(rec).expect("valid").is_none());
        let rec = br#"{"type":"INVERSE_OFFERS","inverse_offers":{"inverse_offers":[]}}"#;
        assert!(matches!(
            parse_event(rec).expect("valid"),
            Some(Event::InverseOffers { .. })
        ));
        let hb = parse_event(br#"{"type":"HEARTBEAT"}"#).expect("valid");
        assert_eq!(hb, Some(Event::Heartbeat));
        assert!(parse_event(b"{not json").is_err());
    }

    #[test]
    fn status_errors_carry_the_server_message() {
        let e = ClientError::Status {
            url: "http://m/x".into(),
            status: 404,
            message: "unknown task t1".into(),
        };
        assert!(e.is_not_found());
        assert!(e.to_string().contains("unknown task t1"));
        assert!(!e.is_transient());
    }

    #[test]
    fn base_url_trailing_slash_is_dropped() {
        let c = MasterClient::new("http://127.0.0.1:5050/").expect("client");
        assert_eq!(c.base_url(), "http://127.0.0.1:5050");
        assert_eq!(c.url("/health"), "http://127.0.0.1:5050/health");
    }
}
