//! The masters a [`MasterClient`] knows, and how one request finds the leading one.
//!
//! A highly available cluster runs several masters; one leads, the others (followers) answer
//! every request with `307 Temporary Redirect` to the leader, or `503 {"message":"no leading
//! master elected yet"}` while none is known. A request goes to the master that answered last
//! (leader stickiness), then around the list once:
//!
//! ```text
//!  leader (last to answer) ─▶ next listed ─▶ … ─▶ last listed
//!     307: followed by reqwest (same method and body), the leader then answers
//!     503 "no leading master…" or a connection error: next master
//!     other answers: returned as they are (and their master becomes the leader)
//! ```
//!
//! Only requests that cannot do harm twice go around: GET, HEAD, PUT, DELETE and OPTIONS, and any
//! request that never reached a server (connection refused or not established).

use std::sync::{Arc, Mutex, PoisonError};

use reqwest::{Method, RequestBuilder, Response};

use super::{error_message, ApiError, ApiKind, ClientError, MasterClient};

/// The message start of a follower's 503 while no leader is known.
pub const NO_LEADER_MESSAGE: &str = "no leading master";

/// The listed masters and the one that answered last; shared by the clones of a client.
#[derive(Debug)]
pub(super) struct Masters {
    /// Base URLs as given (no trailing slash), in order, without repeats.
    list: Vec<String>,
    /// The base URL of the master that answered last.
    leader: Mutex<String>,
}

impl Masters {
    /// Parses a comma-separated list of base URLs; `None` when it names none.
    pub(super) fn parse(text: &str) -> Option<Arc<Masters>> {
        let mut list: Vec<String> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let base = entry.trim_end_matches('/').to_string();
            if !base.is_empty() && !list.contains(&base) {
                list.push(base);
            }
        }
        let first = list.first()?.clone();
        Some(Arc::new(Masters {
            list,
            leader: Mutex::new(first),
        }))
    }

    /// The listed base URLs.
    pub(super) fn list(&self) -> &[String] {
        &self.list
    }

    /// The base URL of the master that answered last (the first listed before any answer).
    pub(super) fn leader(&self) -> String {
        self.leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The masters to try, in order: the leader, then the listed ones after it, around once.
    pub(super) fn candidates(&self) -> Vec<String> {
        let leader = self.leader();
        let start = self
            .list
            .iter()
            .position(|m| *m == leader)
            .map_or(0, |i| i + 1);
        let mut order = vec![leader.clone()];
        for i in 0..self.list.len() {
            let m = &self.list[(start + i) % self.list.len()];
            if *m != leader {
                order.push(m.clone());
            }
        }
        order
    }

    /// The master at `base` did not answer usably: when it was the leader, the next listed master
    /// takes its place (so later requests do not wait for it first).
    pub(super) fn failed(&self, base: &str) {
        let mut leader = self.leader.lock().unwrap_or_else(PoisonError::into_inner);
        if *leader != base {
            return;
        }
        let next = self
            .list
            .iter()
            .position(|m| m == base)
            .map_or(0, |i| (i + 1) % self.list.len());
        if let Some(m) = self.list.get(next) {
            *leader = m.clone();
        }
    }

    /// The master at `base` answered `path` (sent as `base + path`) from `final_url`, where the
    /// redirects it followed ended: that master (the redirect's target, when redirected) leads.
    pub(super) fn answered(&self, base: &str, path: &str, final_url: &reqwest::Url) {
        let leader = leader_base(base, path, final_url);
        *self.leader.lock().unwrap_or_else(PoisonError::into_inner) = leader;
    }
}

/// The base URL of the master that answered at `final_url` a request sent as `base + path`:
/// `base` when not redirected to another host, else `final_url` without `path` (or its origin).
fn leader_base(base: &str, path: &str, final_url: &reqwest::Url) -> String {
    let sent = reqwest::Url::parse(&format!("{base}{path}"));
    if sent.is_ok_and(|s| s.origin() == final_url.origin()) {
        return base.to_string();
    }
    match final_url.as_str().strip_suffix(path) {
        Some(b) if !path.is_empty() && b.contains("://") => b.trim_end_matches('/').to_string(),
        _ => final_url.origin().ascii_serialization(),
    }
}

/// Whether a request of `method` may be sent again after a failure that may have reached a
/// server.
fn idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// Whether a transport error happened before any server got the request.
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// An answer from some master.
pub(super) struct Sent {
    /// The answer, body unread.
    pub(super) resp: Response,
    /// The URL it was sent to (before redirects).
    pub(super) url: String,
}

/// Why no master answered a request usably.
#[derive(Debug)]
pub(super) enum Failure {
    /// The request could not be sent (or its answer not received) at `base` (as `url`).
    Transport {
        /// The master's base URL.
        base: String,
        /// The URL requested.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// A 503 whose body was read (no leading master, on every master tried last).
    Answered {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
}

impl Failure {
    /// As an error of the Mesos and operator endpoints ([`ClientError::Http`] or
    /// [`ClientError::Status`]).
    pub(super) fn plain(self) -> ClientError {
        match self {
            Failure::Transport { url, source, .. } => ClientError::Http { url, source },
            Failure::Answered { url, status, body } => {
                let mut message = error_message(&body);
                if message.is_empty() {
                    message = "(empty body)".to_string();
                }
                ClientError::Status {
                    url,
                    status,
                    message,
                }
            }
        }
    }

    /// As an error of the Marathon or Chronos API ([`ClientError::Unreachable`] or
    /// [`ClientError::Api`]), naming the request as `METHOD /path`.
    pub(super) fn api(self, api: ApiKind, request: String) -> ClientError {
        match self {
            Failure::Transport { base, source, .. } => ClientError::Unreachable {
                api,
                master: base,
                request,
                source,
            },
            Failure::Answered { status, body, .. } => {
                ApiError::from_body(api, request, status, &body).into()
            }
        }
    }
}

impl MasterClient {
    /// Sends `method path` (built further by `build`, called once per master tried) through
    /// `http` to the leading master, as the module docs describe. Any answer but a follower's
    /// "no leading master" 503 is returned with its body unread.
    pub(super) async fn send(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Sent, Failure> {
        let retry_any = idempotent(&method);
        let mut last: Option<Failure> = None;
        for base in self.masters.candidates() {
            let url = format!("{base}{path}");
            let mut request = http.request(method.clone(), &url);
            if let Some(auth) = &self.acting_as {
                request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
            }
            let failure = match build(request).send().await {
                Ok(resp) if resp.status().as_u16() == 503 => {
                    let status = 503;
                    let final_url = resp.url().clone();
                    let body = match resp.text().await {
                        Ok(body) => body,
                        Err(source) => return Err(Failure::Transport { base, url, source }),
                    };
                    if !error_message(&body).starts_with(NO_LEADER_MESSAGE) {
                        // A leader's own 503 (e.g. its store failed): an answer, not a follower.
                        self.masters.answered(&base, path, &final_url);
                        return Err(Failure::Answered { url, status, body });
                    }
                    self.masters.failed(&base);
                    Failure::Answered { url, status, body }
                }
                Ok(resp) => {
                    self.masters.answered(&base, path, resp.url());
                    return Ok(Sent { resp, url });
                }
                Err(source) => {
                    if !(retry_any || never_sent(&source)) {
                        return Err(Failure::Transport { base, url, source });
                    }
                    self.masters.failed(&base);
                    Failure::Transport { base, url, source }
                }
            };
            last = Some(failure);
        }
        Err(last.unwrap_or_else(|| unreachable_list(&self.masters)))
    }
}

/// The failure of a request to an empty list (never: a client holds at least one master).
fn unreachable_list(masters: &Masters) -> Failure {
    Failure::Answered {
        url: masters.list().join(","),
        status: 503,
        body: format!("{NO_LEADER_MESSAGE} among no masters"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated() {
        let m = Masters::parse(" http://m1:5050/, http://m2:5050 ,,http://m1:5050").expect("list");
        assert_eq!(m.list(), ["http://m1:5050", "http://m2:5050"]);
        assert_eq!(m.leader(), "http://m1:5050");
        assert!(Masters::parse(" , ").is_none());
        assert!(Masters::parse("").is_none());
    }

    #[test]
    fn candidates_start_at_the_leader_and_go_around_once() {
        let m = Masters::parse("http://a,http://b,http://c").expect("list");
        assert_eq!(m.candidates(), ["http://a", "http://b", "http://c"]);
        m.answered("http://b", "/x", &url("http://b/x"));
        assert_eq!(m.candidates(), ["http://b", "http://c", "http://a"]);
        // Redirected to a master not listed: it goes first, then the whole list.
        m.answered(
            "http://c",
            "/v2/apps?embed=apps.tasks",
            &url("http://10.0.0.2:5050/v2/apps?embed=apps.tasks"),
        );
        assert_eq!(m.leader(), "http://10.0.0.2:5050");
        assert_eq!(
            m.candidates(),
            ["http://10.0.0.2:5050", "http://a", "http://b", "http://c"]
        );
        // A leader that fails gives way to the listed masters.
        m.failed("http://10.0.0.2:5050");
        assert_eq!(m.candidates(), ["http://a", "http://b", "http://c"]);
        m.failed("http://b");
        assert_eq!(m.leader(), "http://a");
        m.failed("http://a");
        assert_eq!(m.candidates(), ["http://b", "http://c", "http://a"]);
        m.failed("http://c");
        m.failed("http://b");
        assert_eq!(m.leader(), "http://c");
        m.failed("http://c");
        assert_eq!(m.leader(), "http://a");
    }

    #[test]
    fn the_leader_base_keeps_a_path_prefix() {
        assert_eq!(
            leader_base("http://m1", "/x", &url("http://m1/x")),
            "http://m1"
        );
        assert_eq!(
            leader_base(
                "http://m1/meseta",
                "/v2/apps",
                &url("http://m2:80/meseta/v2/apps")
            ),
            "http://m2/meseta"
        );
        assert_eq!(
            leader_base("http://m1", "/a", &url("http://m2:5050/elsewhere")),
            "http://m2:5050"
        );
    }

    #[test]
    fn only_harmless_requests_go_around_after_reaching_a_server() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(idempotent(&Method::DELETE) && idempotent(&Method::HEAD));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }

    #[test]
    fn failures_keep_each_apis_wording() {
        let body = r#"{"message":"no leading master elected yet"}"#.to_string();
        let f = Failure::Answered {
            url: "http://m/master/state".into(),
            status: 503,
            body: body.clone(),
        };
        let e = f.plain();
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "http://m/master/state answered 503: no leading master elected yet"
        );
        let f = Failure::Answered {
            url: "http://m/v2/apps".into(),
            status: 503,
            body,
        };
        let e = f.api(ApiKind::Marathon, "GET /v2/apps".into());
        assert_eq!(e.status(), Some(503));
        assert_eq!(
            e.to_string(),
            "GET /v2/apps: no leading master elected yet (503)"
        );
    }
}
