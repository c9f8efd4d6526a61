//! Who a task runs as, decided when the agent admits it ([`crate::tasks`]).
//!
//! ```text
//!  task user = the task's `user` ─or─ --default-user ─or─ nobody (agent is root) / the agent's user
//!  uid 0 (by name or resolved) without --allow-root ─▶ TASK_ERROR naming the user and the flag
//!  agent not root: only its own user ─▶ any other user is a TASK_ERROR naming both
//! ```
//!
//! A non-root agent cannot switch users, so it refuses a task naming another user rather than
//! silently running it as itself (what Mesos does with `--switch_user=false`): the framework
//! learns at once that the user it asked for is not available on this agent.

use meseta_isolation::user::Identity;

use crate::AgentConfig;

/// The default task user of an agent running as root.
pub(crate) const ROOT_AGENT_DEFAULT_USER: &str = "nobody";

/// The user a task runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// The resolved user.
    pub identity: Identity,
    /// Whether the agent must switch to it (it is not the agent's own user).
    pub switch: bool,
}

impl RunAs {
    /// The user name the shim switches to (`None`: stay the agent's user).
    pub fn shim_user(&self) -> Option<String> {
        self.switch.then(|| self.identity.name.clone())
    }
}

/// Decide who runs a task that asked for `requested`, on an agent running as `agent`.
pub(crate) fn task_user(
    cfg: &AgentConfig,
    agent: &Identity,
    requested: Option<&str>,
) -> Result<RunAs, String> {
    let requested = requested.map(str::trim).filter(|u| !u.is_empty());
    let agent_is_root = agent.uid == 0;
    let name = match (requested, cfg.default_user.as_deref()) {
        (Some(u), _) => u.to_string(),
        (None, Some(d)) if !d.trim().is_empty() => d.trim().to_string(),
        (None, _) if agent_is_root => ROOT_AGENT_DEFAULT_USER.to_string(),
        (None, _) => agent.name.clone(),
    };
    let identity = if name == agent.name {
        agent.clone()
    } else {
        Identity::resolve(&name).map_err(|e| format!("task user {name:?} is not usable: {e}"))?
    };
    if identity.uid == 0 && !cfg.allow_root {
        return Err(format!(
            "task user {name:?} is root (uid 0): this agent does not run tasks as root \
             (start it with --allow-root to allow it)"
        ));
    }
    if !agent_is_root && identity.uid != agent.uid {
        return Err(format!(
            "task user {name:?} is not available: this agent runs as {:?} and can only run \
             tasks as that user (run the agent as root to run tasks as other users)",
            agent.name
        ));
    }
    let switch = identity.uid != agent.uid;
    Ok(RunAs { identity, switch })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(default_user: Option<&str>, allow_root: bool) -> AgentConfig {
        let mut c = AgentConfig::new("http://m", "/w", "127.0.0.1:0".parse().expect("addr"));
        c.default_user = default_user.map(str::to_string);
        c.allow_root = allow_root;
        c
    }

    fn root() -> Identity {
        Identity::resolve("root").expect("root")
    }

    fn nobody() -> Identity {
        Identity::resolve("nobody").expect("user nobody")
    }

    #[test]
    fn a_root_agent_runs_tasks_without_a_user_as_nobody() {
        let r = task_user(&cfg(None, false), &root(), None).expect("nobody");
        assert_eq!(r.identity.name, "nobody");
        assert!(r.switch);
        assert_eq!(r.shim_user().as_deref(), Some("nobody"));
        let r = task_user(&cfg(None, false), &root(), Some("  ")).expect("blank is none");
        assert_eq!(r.identity.name, "nobody");
    }

    #[test]
    fn root_is_refused_by_name_or_uid_unless_allowed() {
        for (default, requested) in [(None, Some("root")), (Some("root"), None)] {
            let err = task_user(&cfg(default, false), &root(), requested).expect_err("refused");
            assert!(err.contains("\"root\""), "{err}");
            assert!(err.contains("--allow-root"), "{err}");
        }
        let r = task_user(&cfg(None, true), &root(), Some("root")).expect("allowed");
        assert_eq!(r.identity.uid, 0);
        assert!(!r.switch);
        assert_eq!(r.shim_user(), None);
    }

    #[test]
    fn default_user_and_unknown_users() {
        let r = task_user(&cfg(Some("nobody"), false), &root(), None).expect("default");
        assert_eq!(r.identity.name, "nobody");
        let err = task_user(&cfg(None, false), &root(), Some("no-such-user-meseta"))
            .expect_err("unknown");
        assert!(err.contains("no-such-user-meseta"), "{err}");
    }

    #[test]
    fn a_non_root_agent_runs_tasks_only_as_itself() {
        let me = nobody();
        let r = task_user(&cfg(None, false), &me, None).expect("itself");
        assert_eq!(r.identity, me);
        assert!(!r.switch);
        let r = task_user(&cfg(None, false), &me, Some("nobody")).expect("itself by name");
        assert!(!r.switch);
        let err = task_user(&cfg(None, true), &me, Some("root")).expect_err("other user");
        assert!(
            err.contains("\"root\"") && err.contains("\"nobody\""),
            "{err}"
        );
    }
}
