//! Policies (named lists of rules), tokens (an accessor, a secret hash, the policies they
//! carry) and the evaluation of a token's [`Grants`] against one [`Resource`].
//!
//! A rule grants an [`Access`] level (`read` < `write` < `admin`, each implying the ones below)
//! on every resource of one [`Kind`] whose name starts with the rule's prefix. App, group and
//! pod ids match by path segments: the prefix `/team-a/` covers `/team-a` and `/team-a/web`,
//! never `/team-ab`. An empty prefix or `*` covers the whole kind.

use serde::{Deserialize, Serialize};

/// How much a rule grants; each level implies the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Look: GET requests, listings, event streams.
    Read,
    /// Change: create, update, delete, scale, run.
    Write,
    /// Dangerous or administrative: bulk deletes, ACL management, the audit log.
    Admin,
}

impl Access {
    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Marathon apps, groups and pods, by id path prefix.
    Apps,
    /// Chronos and Metronome jobs, by name prefix.
    Jobs,
    /// Roles a framework may register for and reserve for, by role name prefix.
    Roles,
    /// Agents (maintenance, drain), by agent id or host name prefix.
    Nodes,
    /// Operator endpoints (`/master/*`, `/api/v1`, metrics, the UI).
    Operator,
    /// Users a token's tasks may run as, by exact name (or `*`).
    Users,
    /// Tokens, policies and the audit log.
    Acl,
    /// Secrets, by path prefix: read lists their metadata and lets apps and jobs reference
    /// them, write puts and deletes them.
    Secrets,
}

impl Kind {
    /// The kind's name as policies spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Apps => "apps",
            Kind::Jobs => "jobs",
            Kind::Roles => "roles",
            Kind::Nodes => "nodes",
            Kind::Operator => "operator",
            Kind::Users => "users",
            Kind::Acl => "acl",
            Kind::Secrets => "secrets",
        }
    }
}

/// One grant: `access` on every resource of `resource` kind matching `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The kind of resource.
    pub resource: Kind,
    /// Name prefix (`/team-a/`, `team-a-`); empty or `*` for all.
    #[serde(default)]
    pub prefix: String,
    /// The level granted.
    pub access: Access,
}

impl Rule {
    /// Whether this rule covers the resource named `name` of kind `kind`.
    pub fn covers(&self, kind: Kind, name: &str) -> bool {
        if self.resource != kind {
            return false;
        }
        let p = self.prefix.as_str();
        if p.is_empty() || p == "*" {
            return true;
        }
        match kind {
            Kind::Apps | Kind::Secrets => path_within(name, p),
            Kind::Users => name == p,
            _ => name.starts_with(p),
        }
    }

    /// Whether this rule reaches into (covers a part of) the subtree of app path `name`.
    fn reaches_below(&self, name: &str) -> bool {
        self.resource == Kind::Apps && path_within(&self.prefix, name)
    }
}

/// `name` lies at or below the path `prefix`, compared by whole segments (no allocation: this
/// runs for every item of every filtered listing).
fn path_within(name: &str, prefix: &str) -> bool {
    let name = name.trim_matches('/');
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A named set of rules, applied with `meseta acl policy apply FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Unique name, e.g. `team-a`.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The grants.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Why a policy is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Names are `[a-zA-Z0-9_.-]{1,64}`.
    #[error("invalid policy name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// App and secret prefixes are paths.
    #[error("rule {index}: an apps or secrets prefix must start with '/', got {prefix:?}")]
    BadAppPrefix {
        /// Index of the rule.
        index: usize,
        /// The prefix given.
        prefix: String,
    },
}

impl Policy {
    /// Checks the name and the rules.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !valid_name(&self.name) {
            return Err(PolicyError::BadName(self.name.clone()));
        }
        for (index, r) in self.rules.iter().enumerate() {
            let p = &r.prefix;
            let paths = matches!(r.resource, Kind::Apps | Kind::Secrets);
            if paths && !(p.is_empty() || p == "*" || p.starts_with('/')) {
                return Err(PolicyError::BadAppPrefix {
                    index,
                    prefix: p.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `s` is a valid policy name or principal.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A stored token: never its secret, only the secret's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Public id: safe to show, names the token in listings and the audit log.
    pub accessor: String,
    /// Hex SHA-256 of the secret ([`crate::hash_secret`]).
    pub secret_hash: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Names of the policies it carries.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Global admin on everything (the bootstrap token).
    #[serde(default)]
    pub management: bool,
    /// The framework principal this token authenticates with HTTP basic auth, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Unix seconds of creation.
    pub created: f64,
    /// Unix seconds after which it is refused, if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<f64>,
}

impl Token {
    /// Whether it is past its expiry at `now` (unix seconds).
    pub fn expired(&self, now: f64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// A resource a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its name (app id, job name, role, agent, user); `""` for the whole kind.
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// `kind` named `name`.
    pub fn new(kind: Kind, name: &'a str) -> Resource<'a> {
        Resource { kind, name }
    }
}

/// A refusal, naming the permission that was missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: missing {missing}")]
pub struct Denied {
    /// E.g. `write on apps /team-b/web`.
    pub missing: String,
}

impl Denied {
    fn new(access: Access, r: Resource<'_>) -> Denied {
        let name = if r.name.is_empty() { "*" } else { r.name };
        Denied {
            missing: format!("{} on {} {}", access.as_str(), r.kind.as_str(), name),
        }
    }
}

/// What one token may do: its rules, flattened from its policies once per token version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Admin on everything.
    pub management: bool,
    /// The rules of all its policies.
    pub rules: Vec<Rule>,
}

impl Grants {
    /// The grants of `token` given the known `policies` (unknown policy names grant nothing).
    pub fn of(token: &Token, policies: &[Policy]) -> Grants {
        let rules = policies
            .iter()
            .filter(|p| token.policies.iter().any(|n| n == &p.name))
            .flat_map(|p| p.rules.iter().cloned())
            .collect();
        Grants {
            management: token.management,
            rules,
        }
    }

    /// Everything (the bootstrap token, or ACLs off).
    pub fn all() -> Grants {
        Grants {
            management: true,
            rules: Vec::new(),
        }
    }

    /// `Ok` when some rule grants at least `access` on `r`.
    pub fn allows(&self, access: Access, r: Resource<'_>) -> Result<(), Denied> {
        if self.management
            || self
                .rules
                .iter()
                .any(|rule| rule.access >= access && rule.covers(r.kind, r.name))
        {
            return Ok(());
        }
        Err(Denied::new(access, r))
    }

    /// `Ok` when the token may see at least part of a listing of `kind` (it then gets the
    /// listing filtered with [`Grants::allows`] per item).
    pub fn allows_some(&self, access: Access, kind: Kind) -> Result<(), Denied> {
        if self.management
            || self
                .rules
                .iter()
                .any(|r| r.resource == kind && r.access >= access)
        {
            return Ok(());
        }
        Err(Denied::new(access, Resource::new(kind, "")))
    }

    /// Whether some rule grants at least `access` on every resource of `kind` (then listings
    /// need no filtering).
    pub fn covers_all(&self, access: Access, kind: Kind) -> bool {
        self.management
            || self.rules.iter().any(|r| {
                r.resource == kind
                    && r.access >= access
                    && (matches!(r.prefix.as_str(), "" | "*")
                        || (kind == Kind::Apps && r.prefix.trim_matches('/').is_empty()))
            })
    }

    /// Whether a group at app path `group` should stay in a filtered tree: the token may
    /// read it, or something below it.
    pub fn sees_into(&self, group: &str) -> bool {
        self.management
            || self
                .allows(Access::Read, Resource::new(Kind::Apps, group))
                .is_ok()
            || self.rules.iter().any(|r| r.reaches_below(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(rules: &[(Kind, &str, Access)]) -> Grants {
        Grants {
            management: false,
            rules: rules
                .iter()
                .map(|(k, p, a)| Rule {
                    resource: *k,
                    prefix: p.to_string(),
                    access: *a,
                })
                .collect(),
        }
    }

    #[test]
    fn app_prefixes_match_whole_segments() {
        let g = grants(&[(Kind::Apps, "/team-a/", Access::Write)]);
        let app = |n| Resource::new(Kind::Apps, n);
        assert!(g.allows(Access::Write, app("/team-a/web")).is_ok());
        assert!(g.allows(Access::Read, app("/team-a")).is_ok());
        assert!(g.allows(Access::Read, app("team-a/x/y")).is_ok());
        let d = g
            .allows(Access::Read, app("/team-ab/web"))
            .expect_err("other team");
        assert_eq!(d.missing, "read on apps /team-ab/web");
        assert!(g.allows(Access::Read, app("/")).is_err());
    }

    #[test]
    fn levels_imply_the_ones_below() {
        let g = grants(&[(Kind::Jobs, "etl-", Access::Read)]);
        let job = Resource::new(Kind::Jobs, "etl-daily");
        assert!(g.allows(Access::Read, job).is_ok());
        let d = g.allows(Access::Write, job).expect_err("read only");
        assert_eq!(d.missing, "write on jobs etl-daily");
        let admin = grants(&[(Kind::Jobs, "", Access::Admin)]);
        assert!(admin.allows(Access::Write, job).is_ok());
    }

    #[test]
    fn users_match_exactly_and_star_matches_all() {
        let g = grants(&[(Kind::Users, "nobody", Access::Write)]);
        assert!(g
            .allows(Access::Write, Resource::new(Kind::Users, "nobody"))
            .is_ok());
        assert!(g
            .allows(Access::Write, Resource::new(Kind::Users, "nobody2"))
            .is_err());
        let all = grants(&[(Kind::Roles, "*", Access::Write)]);
        assert!(all
            .allows(Access::Write, Resource::new(Kind::Roles, "x"))
            .is_ok());
    }

    #[test]
    fn kinds_do_not_leak_into_each_other() {
        let g = grants(&[(Kind::Apps, "*", Access::Admin)]);
        assert!(g
            .allows(Access::Read, Resource::new(Kind::Jobs, "x"))
            .is_err());
        assert!(g.allows_some(Access::Read, Kind::Apps).is_ok());
        assert!(g.allows_some(Access::Read, Kind::Jobs).is_err());
        assert!(Grants::all()
            .allows(Access::Admin, Resource::new(Kind::Acl, ""))
            .is_ok());
    }

    #[test]
    fn filtered_trees_keep_the_path_to_granted_groups() {
        let g = grants(&[(Kind::Apps, "/team-a/", Access::Read)]);
        assert!(g.sees_into("/"));
        assert!(g.sees_into("/team-a"));
        assert!(g.sees_into("/team-a/x"));
        assert!(!g.sees_into("/team-b"));
    }

    #[test]
    fn grants_come_from_the_tokens_policies_only() {
        let p = |name: &str, prefix: &str| Policy {
            name: name.into(),
            description: String::new(),
            rules: vec![Rule {
                resource: Kind::Apps,
                prefix: prefix.into(),
                access: Access::Write,
            }],
        };
        let t = Token {
            accessor: "a".into(),
            secret_hash: "h".into(),
            description: String::new(),
            policies: vec!["a".into(), "missing".into()],
            management: false,
            principal: None,
            created: 0.0,
            expires: Some(10.0),
        };
        let g = Grants::of(&t, &[p("a", "/a/"), p("b", "/b/")]);
        assert_eq!(g.rules.len(), 1);
        assert!(t.expired(10.0) && !t.expired(9.9));
    }

    #[test]
    fn policies_validate_names_and_app_prefixes() {
        let mut p = Policy {
            name: "team a".into(),
            description: String::new(),
            rules: vec![],
        };
        assert!(matches!(p.validate(), Err(PolicyError::BadName(_))));
        p.name = "team-a".into();
        p.rules.push(Rule {
            resource: Kind::Apps,
            prefix: "team-a".into(),
            access: Access::Read,
        });
        assert!(matches!(
            p.validate(),
            Err(PolicyError::BadAppPrefix { .. })
        ));
        p.rules[0].prefix = "/team-a/".into();
        assert_eq!(p.validate(), Ok(()));
    }
}
