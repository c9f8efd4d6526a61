//! Agent configuration ([`AgentConfig`]), filled by the `meseta agent` / `meseta dev` commands and
//! by the in-process test cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meseta_types::{Attributes, Resources};

/// Default relative cgroup prefix of tasks.
pub const DEFAULT_CGROUP_ROOT: &str = "meseta";
/// Default period of usage reports.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(5);

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Master base URL, e.g. `http://127.0.0.1:5050` (→ `ws://127.0.0.1:5050/api/meseta/v1/agent`),
    /// or a comma-separated list of the masters of a highly available cluster
    /// (`http://m1:5050,http://m2:5050`): the agent tries them in turn and follows a follower's
    /// redirect to the leader.
    pub master: String,
    /// Holds `agent_id`, `tasks/` and `updates/`.
    pub work_dir: PathBuf,
    /// The agent's own HTTP server address (port 0 = ephemeral).
    pub listen: SocketAddr,
    /// Total resources; `None` → [`crate::detect_resources`].
    pub resources: Option<Resources>,
    /// Attributes offered with the resources.
    pub attributes: Attributes,
    /// Host name; the machine's when `None`.
    pub hostname: Option<String>,
    /// Fault domain (`--domain region=…,zone=…`) sent at registration.
    pub domain: Option<meseta_api::domain::Domain>,
    /// The binary run as `<exe> shim <task_dir>`.
    pub meseta_exe: PathBuf,
    /// Relative cgroup prefix; tasks go to `<root>/<agent-id>/<task-id>`.
    pub cgroup_root: String,
    /// Period of usage reports.
    pub usage_interval: Duration,
    /// The user tasks run as when they name none (`--default-user`); `None`: `nobody` when the
    /// agent runs as root, the agent's own user otherwise. An agent that is not root runs tasks
    /// only as its own user: a task naming another one is refused (`TASK_ERROR`).
    pub default_user: Option<String>,
    /// Whether a task may run as `root` (uid 0, by name or resolved; `--allow-root`, off by
    /// default): without it such a task is refused (`TASK_ERROR` naming the user and the flag).
    pub allow_root: bool,
    /// The Docker engine's socket (`None`: DOCKER tasks are refused, `--no-docker`); probed at
    /// start, and the agent offers `docker:true` only when an engine answers there.
    pub docker_socket: Option<PathBuf>,
    /// Whether a DOCKER task may run privileged (`--docker-allow-privileged`, off by default:
    /// such a task is refused naming the flag).
    pub docker_allow_privileged: bool,
    /// How long a launched custom executor has to SUBSCRIBE before it is killed (Mesos'
    /// `--executor_registration_timeout`, 1 min).
    pub executor_registration_timeout: Duration,
    /// How long an executor that outlived an agent restart has to SUBSCRIBE again before it is
    /// killed and its tasks reported.
    pub executor_reregistration_timeout: Duration,
    /// The join token presented to the master (`--join-token-file`).
    pub join_token: Option<String>,
    /// TLS towards a `https`/`wss` master: the CA to trust (`--ca-cert`) and, for a master
    /// with mutual TLS, the client certificate and key (`--tls-cert`/`--tls-key`).
    pub master_tls: meseta_tls::ClientTls,
}

/// Where the Docker engine listens by default.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

impl AgentConfig {
    /// A configuration with defaults for everything but the master, the work dir and the listener.
    pub fn new(
        master: impl Into<String>,
        work_dir: impl Into<PathBuf>,
        listen: SocketAddr,
    ) -> Self {
        AgentConfig {
            master: master.into(),
            work_dir: work_dir.into(),
            listen,
            resources: None,
            attributes: Attributes::default(),
            hostname: None,
            domain: None,
            meseta_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("meseta")),
            cgroup_root: DEFAULT_CGROUP_ROOT.to_string(),
            usage_interval: DEFAULT_USAGE_INTERVAL,
            default_user: None,
            allow_root: false,
            docker_socket: Some(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
            docker_allow_privileged: false,
            executor_registration_timeout: Duration::from_secs(60),
            executor_reregistration_timeout: Duration::from_secs(15),
            join_token: None,
            master_tls: meseta_tls::ClientTls::default(),
        }
    }
}

/// The machine's host name (lossy UTF-8), `localhost` if it cannot be read.
pub(crate) fn machine_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Turn a master base URL into the agent WebSocket URL.
pub(crate) fn ws_url(master: &str) -> Option<String> {
    let master = master.trim().trim_end_matches('/');
    let rest = if let Some(r) = master.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = master.strip_prefix("https://") {
        format!("wss://{r}")
    } else if master.starts_with("ws://") || master.starts_with("wss://") {
        master.to_string()
    } else if master.contains("://") || master.is_empty() {
        return None;
    } else {
        format!("ws://{master}")
    };
    Some(format!("{rest}{}", meseta_api::agent::AGENT_WS_PATH))
}

/// The agent WebSocket URLs of a comma-separated list of master base URLs, in order, without
/// repeats; `Err` names the first entry that is not a master URL (or the whole text when it
/// names none).
pub(crate) fn ws_urls(masters: &str) -> Result<Vec<String>, String> {
    let mut urls: Vec<String> = Vec::new();
    for entry in masters.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let url = ws_url(entry).ok_or_else(|| entry.to_string())?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    if urls.is_empty() {
        return Err(masters.to_string());
    }
    Ok(urls)
}

/// Where a redirect of the WebSocket handshake at `current` (a `ws://` or `wss://` URL) leads:
/// the `Location` as an agent WebSocket URL. An `http(s)://` location becomes `ws(s)://`, a
/// scheme-relative one (`//host:port`, as `/master/redirect` answers) takes `current`'s scheme,
/// a path-only one `current`'s host; a location without a path gets the agent path. `None` when
/// the location is none of these.
pub(crate) fn redirect_target(current: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let (scheme, rest) = current.split_once("://")?;
    let absolute = if let Some(r) = location.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = location.strip_prefix("https://") {
        format!("wss://{r}")
    } else if location.starts_with("ws://") || location.starts_with("wss://") {
        location.to_string()
    } else if let Some(r) = location.strip_prefix("//") {
        format!("{scheme}://{r}")
    } else if location.starts_with('/') {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        format!("{scheme}://{authority}{location}")
    } else {
        return None;
    };
    let (target_scheme, target_rest) = absolute.split_once("://")?;
    let authority_end = target_rest
        .find(['/', '?', '#'])
        .unwrap_or(target_rest.len());
    if authority_end == 0 {
        return None;
    }
    let path = &target_rest[authority_end..];
    if path.is_empty() || path == "/" {
        let authority = &target_rest[..authority_end];
        return Some(format!(
            "{target_scheme}://{authority}{}",
            meseta_api::agent::AGENT_WS_PATH
        ));
    }
    Some(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_from_http() {
        assert_eq!(
            ws_url("http://127.0.0.1:5050").as_deref(),
            Some("ws://127.0.0.1:5050/api/meseta/v1/agent")
        );
        assert_eq!(
            ws_url("https://m:1/").as_deref(),
            Some("wss://m:1/api/meseta/v1/agent")
        );
        assert_eq!(
            ws_url("m:5050").as_deref(),
            Some("ws://m:5050/api/meseta/v1/agent")
        );
        assert_eq!(ws_url("ftp://x"), None);
        assert_eq!(ws_url(""), None);
    }

    #[test]
    fn master_lists_become_ws_urls_in_order() {
        assert_eq!(
            ws_urls(" http://m1:5050 , http://m2:5050/,m1:5050,").expect("valid list"),
            [
                "ws://m1:5050/api/meseta/v1/agent",
                "ws://m2:5050/api/meseta/v1/agent"
            ]
        );
        assert_eq!(
            ws_urls("http://m1:5050").expect("one master"),
            ["ws://m1:5050/api/meseta/v1/agent"]
        );
        assert_eq!(
            ws_urls("http://m1:5050,ftp://x"),
            Err("ftp://x".to_string())
        );
        assert_eq!(ws_urls(" , "), Err(" , ".to_string()));
    }

    #[test]
    fn redirects_lead_to_ws_urls() {
        let here = "ws://m1:5050/api/meseta/v1/agent";
        assert_eq!(
            redirect_target(here, "http://10.0.0.2:5050/api/meseta/v1/agent").as_deref(),
            Some("ws://10.0.0.2:5050/api/meseta/v1/agent")
        );
        assert_eq!(
            redirect_target(here, "https://m2/api/meseta/v1/agent").as_deref(),
            Some("wss://m2/api/meseta/v1/agent")
        );
        assert_eq!(
            redirect_target(here, "//m2:5050").as_deref(),
            Some("ws://m2:5050/api/meseta/v1/agent")
        );
        assert_eq!(
            redirect_target("wss://m1/api/meseta/v1/agent", "//m2:5050/").as_deref(),
            Some("wss://m2:5050/api/meseta/v1/agent")
        );
        assert_eq!(
            redirect_target(here, "/elsewhere?x=1").as_deref(),
            Some("ws://m1:5050/elsewhere?x=1")
        );
        assert_eq!(redirect_target(here, "m2:5050"), None);
        assert_eq!(redirect_target(here, "http:///x"), None);
        assert_eq!(redirect_target(here, ""), None);
    }
}
