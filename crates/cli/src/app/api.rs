//! The HTTP side of `meseta app` and `meseta deploy`: a small client of the master's Marathon
//! `/v2` API that turns Marathon's error bodies (`{"message","details"}`) into readable errors.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest non-JSON error body quoted in an error.
const MAX_QUOTED_BODY: usize = 500;

/// A non-2xx answer of the master, with Marathon's message and the details of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// `METHOD /path`.
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// Marathon's `message` (or the body text).
    pub message: String,
    /// One readable line per detail (`/path: error; error`).
    pub details: Vec<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.request, self.message, self.status)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads a Marathon error body: `message` plus `details`, which is a string (bad JSON) or a
    /// list of `{"path","errors":[..]}` (validation); a body that is not JSON is quoted.
    pub fn from_body(request: String, status: u16, body: &str) -> ApiError {
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
        Value::Array(items) => items
            .iter()
            .map(|d| {
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
            })
            .collect(),
        Value::Null => Vec::new(),
        Value::String(_) => Vec::new(),
        other => vec![other.to_string()],
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The `Marathon-Deployment-Id` header, else the body's `deploymentId`, else the first of
    /// its `deployments[].id` (the 201 of `POST /v2/apps`).
    pub deployment_id: Option<String>,
}

/// A client of the master's `/v2` API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of the master at `base` (`http://host:port`).
    pub fn new(base: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// Sends one request; a non-2xx answer becomes an [`ApiError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the master at {} ({what})", self.base))?;
        let status = resp.status().as_u16();
        let header_id = resp
            .headers()
            .get("Marathon-Deployment-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .text()
            .await
            .with_context(|| format!("{what}: cannot read the answer"))?;
        if !(200..300).contains(&status) {
            return Err(ApiError::from_body(what, status, &text).into());
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{what}: the master sent invalid JSON"))?
        };
        let deployment_id = header_id.or_else(|| deployment_id_of(&body));
        Ok(Reply {
            status,
            body,
            deployment_id,
        })
    }

    /// `GET path` → JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.send(Method::GET, path, None).await?.body)
    }

    /// `GET path` → JSON, or `None` on 404.
    pub async fn get_opt(&self, path: &str) -> anyhow::Result<Option<Value>> {
        match self.send(Method::GET, path, None).await {
            Ok(r) => Ok(Some(r.body)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether `e` is a 404 answer.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == 404)
}

/// The deployment id in a deploymentResult or an AppInfo body.
pub fn deployment_id_of(body: &Value) -> Option<String> {
    if let Some(id) = body.get("deploymentId").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    body.get("deployments")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An app id in absolute form: `foo` → `/foo`, `//a/b/` → `/a/b`.
pub fn absolute_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

/// The URL path of an app: `/v2/apps/<id>` with each segment percent-encoded.
pub fn app_path(id: &str) -> String {
    format!("/v2/apps{}", encode_path(&absolute_id(id)))
}

/// Percent-encodes everything but unreserved characters, `/` and `:` (legal in a path segment,
/// and part of every version timestamp).
pub fn encode_path(p: &str) -> String {
    p.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-encodes one path segment (like [`encode_path`], but `/` too).
pub fn encode_component(p: &str) -> String {
    encode_path(p).replace('/', "%2F")
}

/// `?force=true|false`.
pub fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        "?force=false"
    }
}

/// Reads `file`, or stdin when `file` is `-`.
pub fn read_input(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))
    }
}

/// Reads a JSON document from `file`, or from stdin when `file` is `-`.
pub fn read_json(file: &str) -> anyhow::Result<Value> {
    let text = read_input(file)?;
    let name = if file == "-" { "stdin" } else { file };
    serde_json::from_str(&text).with_context(|| format!("{name} is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_errors_list_each_path() {
        let body = json!({"message":"Object is not valid","details":[
            {"path":"/upgradeStrategy/minimumHealthCapacity","errors":["is greater than 1"]},
            {"path":"/cmd","errors":["must not be empty","too short"]}]})
        .to_string();
        let e = ApiError::from_body("POST /v2/apps".into(), 422, &body);
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
        let e = ApiError::from_body("PUT /v2/apps/a".into(), 400, &body);
        assert_eq!(e.details, ["Unexpected end-of-input"]);
        let e = ApiError::from_body("GET /v2/x".into(), 502, "  Bad Gateway \n");
        assert_eq!(e.to_string(), "GET /v2/x: Bad Gateway (502)");
        let e = ApiError::from_body("GET /v2/x".into(), 500, "");
        assert_eq!(e.message, "no message");
        let long = "x".repeat(2000);
        let e = ApiError::from_body("GET /v2/x".into(), 500, &long);
        assert_eq!(e.message.chars().count(), MAX_QUOTED_BODY + 1);
    }

    #[test]
    fn not_found_is_recognised_through_anyhow() {
        let e: anyhow::Error = ApiError::from_body("GET /v2/apps/x".into(), 404, "{}").into();
        assert!(is_not_found(&e));
        let e: anyhow::Error = ApiError::from_body("GET /v2/apps/x".into(), 409, "{}").into();
        assert!(!is_not_found(&e));
        assert!(!is_not_found(&anyhow::anyhow!("other")));
    }

    #[test]
    fn deployment_ids_come_from_results_or_app_info() {
        assert_eq!(
            deployment_id_of(&json!({"version":"v","deploymentId":"d1"})).as_deref(),
            Some("d1")
        );
        assert_eq!(
            deployment_id_of(&json!({"id":"/a","deployments":[{"id":"d2"}]})).as_deref(),
            Some("d2")
        );
        assert_eq!(deployment_id_of(&json!({"id":"/a","deployments":[]})), None);
    }

    #[test]
    fn app_paths_are_absolute_and_encoded() {
        assert_eq!(app_path("foo"), "/v2/apps/foo");
        assert_eq!(app_path("//prod/web/"), "/v2/apps/prod/web");
        assert_eq!(app_path("/a b"), "/v2/apps/a%20b");
        assert_eq!(
            encode_component("2021-01-01T00:00:00.000Z"),
            "2021-01-01T00:00:00.000Z"
        );
        assert_eq!(encode_component("a/b"), "a%2Fb");
    }
}
