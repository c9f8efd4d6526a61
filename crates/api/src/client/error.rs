//! Why a request of [`super::MasterClient`] failed.
//!
//! The master's endpoints report failures in two ways, and [`ClientError`] keeps each readable:
//!
//! - the Mesos and operator endpoints (`/master/*`, `/api/v1*`, `/api/meseta/v1/*`) answer a
//!   status with a short text or `{"message"}` body: [`ClientError::Http`],
//!   [`ClientError::Status`], [`ClientError::Decode`];
//! - the Marathon `/v2` and Chronos `/v1/scheduler` APIs ([`ApiKind`]) answer
//!   `{"message","details"}`, where `details` lists what is wrong with each field:
//!   [`ClientError::Api`] (an [`ApiError`]) and [`ClientError::Unreachable`],
//!   [`ClientError::Unreadable`], [`ClientError::InvalidJson`], which name the request as
//!   `METHOD /path`. Each keeps the wording the `meseta app`/`deploy` and `meseta job` verbs have
//!   always shown.

use std::fmt;

use serde_json::Value;

/// Longest non-JSON error body quoted in an [`ApiError`].
pub const MAX_QUOTED_BODY: usize = 500;

/// Why a request to the master failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token cannot go into an HTTP header.
    #[error("the token is not valid in an HTTP header (control characters?)")]
    BadToken,
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
    /// The CA file for `https` masters (`--ca-cert` / `MESETA_CA_CERT`) is unusable.
    #[error("CA certificate: {0}")]
    Tls(#[from] meseta_tls::TlsError),
    /// The master URL given to [`super::MasterClient::new`] names no master.
    #[error("no master URL in {given:?}")]
    NoMaster {
        /// The text given.
        given: String,
    },
    /// A Marathon or Chronos request could not be sent.
    #[error("cannot reach the master{} ({request})", at_master(*.api, .master))]
    Unreachable {
        /// The API asked.
        api: ApiKind,
        /// The master's base URL.
        master: String,
        /// `METHOD /path`.
        request: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer to a Marathon or Chronos request could not be read.
    #[error("{request}: cannot read the answer")]
    Unreadable {
        /// `METHOD /path`.
        request: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A Marathon or Chronos request was answered with a non-2xx status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A Marathon or Chronos answer is not JSON.
    #[error("{request}: the master sent invalid JSON")]
    InvalidJson {
        /// `METHOD /path`.
        request: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status, when the master answered with an unexpected one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// Whether the master answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether retrying later can help (transport errors, 5xx, broken streams).
    pub fn is_transient(&self) -> bool {
        match self.status() {
            Some(status) => status >= 500 || status == 307,
            None => matches!(
                self,
                ClientError::Http { .. }
                    | ClientError::Stream { .. }
                    | ClientError::Unreachable { .. }
                    | ClientError::Unreadable { .. }
            ),
        }
    }
}

/// Which of the master's JSON APIs a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// Marathon `/v2`.
    Marathon,
    /// Chronos `/v1/scheduler`.
    Chronos,
}

impl ApiKind {
    /// The path prefix of the API's requests (Marathon's paths carry their own `/v2`).
    pub fn prefix(self) -> &'static str {
        match self {
            ApiKind::Marathon => "",
            ApiKind::Chronos => "/v1/scheduler",
        }
    }
}

/// ` at <master>` in Marathon's wording, nothing in Chronos's.
fn at_master(api: ApiKind, master: &str) -> String {
    match api {
        ApiKind::Marathon => format!(" at {master}"),
        ApiKind::Chronos => String::new(),
    }
}

/// A non-2xx answer of the Marathon or Chronos API, with its message and the details of each
/// field.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The API that answered.
    pub api: ApiKind,
    /// `METHOD /path`.
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// The body's `message` (or the body text).
    pub message: String,
    /// One readable line per detail (`/path: error; error`).
    pub details: Vec<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({}", self.request, self.message, self.status)?;
        if self.api == ApiKind::Chronos {
            let reason = reqwest::StatusCode::from_u16(self.status)
                .ok()
                .and_then(|s| s.canonical_reason());
            write!(f, " {}", reason.unwrap_or("<unknown status code>"))?;
        }
        f.write_str(")")?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads an error body. Marathon's: `message` plus `details`, which is a string (bad JSON)
    /// or a list of `{"path","errors":[..]}` (validation); a body that is not JSON is quoted.
    /// Chronos's: the `message`, else the body text.
    pub fn from_body(api: ApiKind, request: String, status: u16, body: &str) -> ApiError {
        if api == ApiKind::Chronos {
            return ApiError {
                api,
                request,
                status,
                message: error_message(body),
                details: Vec::new(),
            };
        }
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| quote(body));
        let details = parsed
            .as_ref()
            .and_then(|v| v.get("details"))
            .map(detail_lines)
            .unwrap_or_default();
        ApiError {
            api,
            request,
            status,
            message,
            details,
        }
    }
}

fn quote(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        return "no message".to_string();
    }
    match t.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &t[..cut]),
        None => t.to_string(),
    }
}

/// The readable lines of a Marathon `details` value.
pub fn detail_lines(details: &Value) -> Vec<String> {
    match details {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(items) => items.iter().map(detail_line).collect(),
        Value::Null | Value::String(_) => Vec::new(),
        other => vec![other.to_string()],
    }
}

/// `/path: error; error` for one `{"path","errors"}` item; other items as they are.
fn detail_line(d: &Value) -> String {
    let path = d.get("path").and_then(Value::as_str).unwrap_or("/");
    let errors: Vec<String> = match d.get("errors") {
        Some(Value::Array(e)) => e
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if errors.is_empty() {
        d.as_str().map_or_else(|| d.to_string(), str::to_string)
    } else {
        format!("{path}: {}", errors.join("; "))
    }
}

/// The `message` field of a JSON error body, else the trimmed body text.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn validation_errors_list_each_path() {
        let body = json!({"message":"Object is not valid","details":[
            {"path":"/upgradeStrategy/minimumHealthCapacity","errors":["is greater than 1"]},
            {"path":"/cmd","errors":["must not be empty","too short"]}]})
        .to_string();
        let e = ApiError::from_body(ApiKind::Marathon, "POST /v2/apps".into(), 422, &body);
        assert_eq!(
            e.to_string(),
            "POST /v2/apps: Object is not valid (422)\n  \
             /upgradeStrategy/minimumHealthCapacity: is greater than 1\n  \
             /cmd: must not be empty; too short"
        );
    }

    #[test]
    fn string_details_and_plain_bodies_are_kept() {
        let body =
            json!({"message":"Invalid JSON","details":"Unexpected end-of-input"}).to_string();
        let e = ApiError::from_body(ApiKind::Marathon, "PUT /v2/apps/a".into(), 400, &body);
        assert_eq!(e.details, ["Unexpected end-of-input"]);
        let e = ApiError::from_body(
            ApiKind::Marathon,
            "GET /v2/x".into(),
            502,
            "  Bad Gateway \n",
        );
        assert_eq!(e.to_string(), "GET /v2/x: Bad Gateway (502)");
        let e = ApiError::from_body(ApiKind::Marathon, "GET /v2/x".into(), 500, "");
        assert_eq!(e.message, "no message");
        let long = "x".repeat(2000);
        let e = ApiError::from_body(ApiKind::Marathon, "GET /v2/x".into(), 500, &long);
        assert_eq!(e.message.chars().count(), MAX_QUOTED_BODY + 1);
    }

    #[test]
    fn api_errors_keep_their_status() {
        let e: ClientError =
            ApiError::from_body(ApiKind::Marathon, "GET /v2/apps/x".into(), 404, "{}").into();
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "GET /v2/apps/x: {} (404)");
        let e: ClientError =
            ApiError::from_body(ApiKind::Marathon, "GET /v2/apps/x".into(), 409, "{}").into();
        assert!(!e.is_not_found() && !e.is_transient());
        let e: ClientError =
            ApiError::from_body(ApiKind::Marathon, "GET /v2/apps".into(), 503, "{}").into();
        assert!(e.is_transient());
    }

    #[test]
    fn chronos_errors_show_the_status_reason_and_the_plain_message() {
        let body = json!({"message":"job 'x' does not exist","status":"Bad Request"}).to_string();
        let e = ApiError::from_body(ApiKind::Chronos, "PUT /job/x".into(), 400, &body);
        assert_eq!(
            e.to_string(),
            "PUT /job/x: job 'x' does not exist (400 Bad Request)"
        );
        let e = ApiError::from_body(ApiKind::Chronos, "GET /jobs".into(), 404, "");
        assert_eq!(e.to_string(), "GET /jobs:  (404 Not Found)");
    }
}
