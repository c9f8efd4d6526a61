//! The connections of the etcd backend: gRPC channels (unary calls) and one `reqwest` client
//! (the gateway's watch streams) over several endpoints (cluster members), a bounded timeout on
//! every call, failover to the next member, and the mapping of gRPC statuses and gateway errors
//! (`{"error","code","message"}` with a gRPC status code) to [`StoreError`].
//!
//! Failover: the client talks to one member (the "current" one) and moves to the next when a
//! call cannot connect, times out or gets a 5xx. Whether the same call is then retried on the
//! next member depends on [`Retry`]: reads and idempotent calls are, writes only when the
//! request surely never reached a member (connection refused), as etcd's own client does; an
//! ambiguous write (sent, then the member died) returns [`StoreError::Unavailable`] and the
//! caller decides (its next call already goes to another member). Over gRPC, "never sent" is a
//! call that failed to connect (see `grpc::Failure`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::grpc::{self, path, Channels, Failure};
use super::wire::ErrorBody;
use crate::StoreError;

/// Longest wait for one unary call (connect included).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection to a member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a failed call may be sent again to the next member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent calls: retry on any transport failure or 5xx.
    Always,
    /// Writes: retry only if the request was never delivered (connection failed).
    IfNotSent,
}

/// A failed attempt on one member: whether to try the next one, and the error otherwise.
enum Attempt {
    /// The member is unusable (down, timing out, 5xx); `sent` if the request may have landed.
    Unusable { sent: bool, why: String },
    /// The member answered with an error that another member would give too.
    Refused(StoreError),
}

/// Access to the members of one etcd cluster: gRPC for unary calls, the JSON gateway for
/// watches.
pub(crate) struct Client {
    http: reqwest::Client,
    grpc: Channels,
    endpoints: Vec<String>,
    current: AtomicUsize,
}

impl Client {
    /// A client for `endpoints` (`http://host:port`, no trailing slash, at least one).
    pub(crate) fn new(endpoints: Vec<String>) -> Result<Client, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoint given".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| StoreError::Backend(format!("building the etcd http client: {e}")))?;
        Ok(Client {
            http,
            grpc: Channels::new(&endpoints, CONNECT_TIMEOUT)?,
            endpoints,
            current: AtomicUsize::new(0),
        })
    }

    /// The members, in order.
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The member calls go to first.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len()
    }

    /// Moves away from member `failed` (unless another call already did).
    pub(crate) fn advance(&self, failed: usize) {
        let next = (failed + 1) % self.endpoints.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
        tracing::debug!(failed = %self.endpoints[failed], next = %self.endpoints[next],
            "etcd member unusable; moving to the next one");
    }

    /// The gRPC call `path` with `req`, failing over between members like [`Client::call`].
    pub(crate) async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        req: Req,
        retry: Retry,
    ) -> Result<Resp, StoreError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.failover(retry, |idx| {
            let req = req.clone();
            async move {
                let answer = self.grpc.unary(idx, path, req).await;
                attempt_of(&self.endpoints[idx], path, answer)
            }
        })
        .await
    }

    /// A lease keep-alive over gRPC, failing over like a read (it is idempotent).
    pub(crate) async fn keep_alive(&self, id: i64) -> Result<grpc::LeaseAnswer, StoreError> {
        self.failover(Retry::Always, |idx| async move {
            let answer = self.grpc.keep_alive(idx, id).await;
            attempt_of(&self.endpoints[idx], path::LEASE_KEEP_ALIVE, answer)
        })
        .await
    }

    /// Tries `attempt` on the current member and then the others: a member that cannot be used
    /// is left for the next one (the call is tried there too if `retry` allows it).
    async fn failover<T, F, Fut>(&self, retry: Retry, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let start = self.current();
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let idx = (start + i) % self.endpoints.len();
            match attempt(idx).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Refused(e)) => return Err(e),
                Err(Attempt::Unusable { sent, why }) => {
                    self.advance(idx);
                    if sent && retry == Retry::IfNotSent {
                        return Err(StoreError::Unavailable(format!(
                            "{why} (the write may or may not have been applied)"
                        )));
                    }
                    last = why;
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "no etcd member answered; last error: {last}"
        )))
    }

    /// POSTs `body` to the gateway `path` and decodes the answer, failing over between members.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        retry: Retry,
    ) -> Result<Resp, StoreError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| StoreError::Encode(format!("encoding etcd request {path}: {e}")))?;
        let bytes = self
            .failover(retry, |idx| self.attempt(idx, path, body.clone()))
            .await?;
        decode(path, &bytes)
    }

    async fn attempt(
        &self,
        idx: usize,
        path: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, Attempt> {
        let url = format!("{}{path}", self.endpoints[idx]);
        let resp = self
            .http
            .post(&url)
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Attempt::Unusable {
                sent: !e.is_connect(),
                why: format!("POST {url}: {e}"),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Attempt::Unusable {
            sent: true,
            why: format!("reading the answer of {url}: {e}"),
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let err = refusal(status, &bytes);
        match err {
            StoreError::Unavailable(why) => Err(Attempt::Unusable {
                sent: true,
                why: format!("POST {url}: {why}"),
            }),
            other => Err(Attempt::Refused(other)),
        }
    }

    /// Opens a streamed call (a watch) on the current member, failing over like a read; no
    /// total timeout, only the connect timeout and [`REQUEST_TIMEOUT`] for the answer's head.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<(usize, reqwest::Response), StoreError> {
        let start = self.current();
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let idx = (start + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[idx]);
            let req = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send();
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, req).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => {
                    last = format!("POST {url}: {e}");
                    self.advance(idx);
                    continue;
                }
                Err(_) => {
                    last = format!("POST {url}: no answer within {REQUEST_TIMEOUT:?}");
                    self.advance(idx);
                    continue;
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok((idx, resp));
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            match refusal(status, &bytes) {
                StoreError::Unavailable(why) => {
                    last = format!("POST {url}: {why}");
                    self.advance(idx);
                }
                other => return Err(other),
            }
        }
        Err(StoreError::Unavailable(format!(
            "no etcd member answered; last error: {last}"
        )))
    }
}

/// What a failed gRPC call means for failover.
fn attempt_of<T>(endpoint: &str, path: &str, r: Result<T, Failure>) -> Result<T, Attempt> {
    match r {
        Ok(answer) => Ok(answer),
        Err(Failure::NotSent(why)) => Err(Attempt::Unusable {
            sent: false,
            why: format!("gRPC {endpoint}{path}: {why}"),
        }),
        Err(Failure::Unanswered(why)) => Err(Attempt::Unusable {
            sent: true,
            why: format!("gRPC {endpoint}{path}: {why}"),
        }),
        // A call cut off on the way (the stream reset, the member going away): like no answer.
        Err(Failure::Status(tonic::Code::Cancelled, message)) => Err(Attempt::Unusable {
            sent: true,
            why: format!("gRPC {endpoint}{path}: cancelled: {message}"),
        }),
        Err(Failure::Status(code, message)) => {
            let body = ErrorBody {
                code: i32::from(code),
                message,
                error: String::new(),
            };
            match error_from(grpc::http_status(code), &body) {
                StoreError::Unavailable(why) => Err(Attempt::Unusable {
                    sent: true,
                    why: format!("gRPC {endpoint}{path}: {why}"),
                }),
                other => Err(Attempt::Refused(other)),
            }
        }
    }
}

/// Decodes a successful answer.
pub(crate) fn decode<Resp: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<Resp, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        StoreError::Backend(format!("unexpected etcd answer to {path}: {e}: {text}"))
    })
}

/// gRPC status codes the gateway reports in `code`.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const UNAVAILABLE: i32 = 14;
}

/// Maps a gateway error answer to a [`StoreError`]. `LeaseNotFound` carries id 0: callers that
/// know the lease put its id in (see [`with_lease`]); `Compacted` (a read at a compacted
/// revision) carries zeros: etcd does not say which revisions.
pub(crate) fn refusal(status: reqwest::StatusCode, bytes: &[u8]) -> StoreError {
    let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_default();
    error_from(status.as_u16(), &body)
}

/// Maps a gateway error (HTTP status and gRPC status body) to a [`StoreError`].
pub(crate) fn error_from(status: u16, body: &ErrorBody) -> StoreError {
    let msg = if body.message.is_empty() {
        body.error.clone()
    } else {
        body.message.clone()
    };
    let too_large = msg.contains("too many operations")
        || msg.contains("request is too large")
        || msg.contains("larger than max");
    match body.code {
        _ if too_large => StoreError::TooLarge(msg),
        code::NOT_FOUND if msg.contains("lease not found") => StoreError::LeaseNotFound(0),
        code::OUT_OF_RANGE if msg.contains("compacted") => StoreError::Compacted {
            requested: 0,
            oldest: 0,
        },
        code::INVALID_ARGUMENT if msg.contains("key is not provided") => {
            StoreError::InvalidKey(String::new())
        }
        code::UNAVAILABLE | code::DEADLINE_EXCEEDED | code::RESOURCE_EXHAUSTED => {
            StoreError::Unavailable(format!("etcd: {msg}"))
        }
        _ if status >= 500 => StoreError::Unavailable(format!("etcd answered {status}: {msg}")),
        _ => StoreError::Backend(format!("etcd refused the request ({status}): {msg}")),
    }
}

/// Puts `lease` into a `LeaseNotFound` that came without an id.
pub(crate) fn with_lease(e: StoreError, lease: i64) -> StoreError {
    match e {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(lease),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: i32, message: &str) -> StoreError {
        let body = ErrorBody {
            code,
            message: message.into(),
            error: message.into(),
        };
        error_from(status, &body)
    }

    /// (sent?, the error) of a failed gRPC attempt; `None` for sent when refused.
    fn grpc(f: Failure) -> (Option<bool>, String) {
        match attempt_of::<()>("http://m:1", path::TXN, Err(f)) {
            Ok(()) => unreachable!("a failure"),
            Err(Attempt::Unusable { sent, why }) => (Some(sent), why),
            Err(Attempt::Refused(e)) => (None, format!("{e:?}")),
        }
    }

    #[test]
    fn grpc_failures_decide_failover_like_the_gateway_did() {
        assert_eq!(grpc(Failure::NotSent("refused".into())).0, Some(false));
        assert_eq!(grpc(Failure::Unanswered("timeout".into())).0, Some(true));
        let (sent, why) = grpc(Failure::Status(
            tonic::Code::Unavailable,
            "etcdserver: leader changed".into(),
        ));
        assert_eq!(sent, Some(true), "{why}");
        assert_eq!(
            grpc(Failure::Status(tonic::Code::Cancelled, "reset".into())).0,
            Some(true)
        );
        let (sent, e) = grpc(Failure::Status(
            tonic::Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into(),
        ));
        assert_eq!(sent, None);
        assert!(e.starts_with("TooLarge"), "{e}");
        let (sent, e) = grpc(Failure::Status(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into(),
        ));
        assert_eq!(sent, None);
        assert!(e.starts_with("LeaseNotFound"), "{e}");
    }

    #[test]
    fn gateway_errors_map_to_typed_store_errors() {
        let e = err(400, 3, "etcdserver: too many operations in txn request");
        assert!(matches!(e, StoreError::TooLarge(_)), "{e:?}");
        let e = err(400, 3, "etcdserver: request is too large");
        assert!(matches!(e, StoreError::TooLarge(_)), "{e:?}");
        let e = err(
            429,
            8,
            "grpc: received message larger than max (2097162 vs. 2097152)",
        );
        assert!(matches!(e, StoreError::TooLarge(_)), "{e:?}");
        let e = err(429, 8, "etcdserver: too many requests");
        assert!(e.is_retryable(), "{e:?}");
        let e = err(404, 5, "etcdserver: requested lease not found");
        assert!(matches!(with_lease(e, 7), StoreError::LeaseNotFound(7)));
        let e = err(503, 14, "etcdserver: leader changed");
        assert!(e.is_retryable(), "{e:?}");
        let e = err(502, 0, "");
        assert!(e.is_retryable(), "{e:?}");
        let e = err(400, 11, "mvcc: required revision has been compacted");
        assert!(matches!(e, StoreError::Compacted { .. }), "{e:?}");
        let e = err(400, 3, "etcdserver: duplicate key given in txn request");
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    }
}
