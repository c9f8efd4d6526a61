//! App definition validation and normalization (reference §1.1–§1.5).
//!
//! Used by the master's `POST/PUT/PATCH /v2/apps` handlers (a failure answers 422 with
//! [`ValidationError::marathon_body`]) and by the CLI before sending. [`validate_app`] collects
//! **every** violation, each with a Marathon path (`/cpus`, `/constraints(0)`, `/` for
//! object-level rules), and on success returns the canonical [`App`] with defaults filled in.

mod checks;
mod normalize;

use meseta_api::marathon::{App, AppDefinition};
use serde::Serialize;
use thiserror::Error;

/// One entry of Marathon's `details`: a path and its error texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON-pointer-like path (`/healthChecks(0)`), `/` for object-level rules.
    pub path: String,
    /// Error texts for that path.
    pub errors: Vec<String>,
}

/// Every violation found in one app definition.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("app definition is not valid: {}", summary(.violations))]
pub struct ValidationError {
    /// Violations in the order found, one entry per path.
    pub violations: Vec<Violation>,
}

fn summary(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.path, v.errors.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationError {
    /// The 422 body: `{"message":"Object is not valid","details":[{"path":…,"errors":[…]}]}`.
    pub fn marathon_body(&self) -> serde_json::Value {
        serde_json::json!({
            "message": "Object is not valid",
            "details": self.violations,
        })
    }

    /// True when some violation is at `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.violations.iter().any(|v| v.path == path)
    }
}

/// Collects violations, merging texts for the same path.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<Violation>);

impl Errors {
    /// Records `msg` at `path`.
    pub(crate) fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        let path = path.into();
        let msg = msg.into();
        match self.0.iter_mut().find(|v| v.path == path) {
            Some(v) => {
                if !v.errors.contains(&msg) {
                    v.errors.push(msg);
                }
            }
            None => self.0.push(Violation {
                path,
                errors: vec![msg],
            }),
        }
    }

    pub(crate) fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { violations: self.0 })
        }
    }
}

/// True when the app asks to run its tasks as the superuser (`root`, or uid `0`).
pub fn runs_as_root(app: &App) -> bool {
    matches!(app.user.as_deref().map(str::trim), Some("root" | "0"))
}

/// The refusal of apps asking for root (at `{at}/user` for each `at` given) where the cluster
/// does not allow root tasks.
pub fn root_refused(at: &[String]) -> Result<(), ValidationError> {
    let mut errs = Errors::default();
    for a in at {
        errs.add(
            format!("{a}/user"),
            "running tasks as root is not allowed on this cluster (the master was not started \
             with --allow-root)",
        );
    }
    errs.finish()
}

/// True when the app asks for a privileged Docker container (`container.docker.privileged`).
pub fn runs_privileged(app: &App) -> bool {
    app.container
        .as_ref()
        .and_then(|c| c.pointer("/docker/privileged"))
        .and_then(serde_json::Value::as_bool)
        == Some(true)
}

/// The refusal of apps asking for a privileged container (at `{at}/container/docker/privileged`
/// for each `at` given) where the cluster does not allow them.
pub fn privileged_refused(at: &[String]) -> Result<(), ValidationError> {
    let mut errs = Errors::default();
    for a in at {
        errs.add(
            format!("{a}/container/docker/privileged"),
            "privileged containers are not allowed on this cluster (the master was not started \
             with --docker-allow-privileged)",
        );
    }
    errs.finish()
}

/// The non-zero host ports an app's container maps (`container.portMappings[i].hostPort`),
/// with their index.
pub fn mapped_host_ports(app: &App) -> Vec<(usize, u64)> {
    let Some(mappings) = app
        .container
        .as_ref()
        .and_then(|c| c.get("portMappings"))
        .and_then(serde_json::Value::as_array)
    else {
        return Vec::new();
    };
    mappings
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let port = m.get("hostPort")?.as_u64()?;
            (port != 0).then_some((i, port))
        })
        .collect()
}

/// The refusal of host ports no agent of the cluster offers: `(at, index, port)` for
/// `{at}/container/portMappings({index})/hostPort`.
pub fn host_ports_refused(bad: &[(String, usize, u64)]) -> Result<(), ValidationError> {
    let mut errs = Errors::default();
    for (at, i, port) in bad {
        errs.add(
            format!("{at}/container/portMappings({i})/hostPort"),
            format!(
                "host port {port} is outside the port ranges of every agent of the cluster \
                 (use hostPort 0 for any free port)"
            ),
        );
    }
    errs.finish()
}

/// Validates `def` as an app at the root group and returns its canonical form.
pub fn validate_app(def: &AppDefinition) -> Result<App, ValidationError> {
    validate_app_in(def, "/")
}

/// Validates `def` as an app of group `base` (relative ids resolve against it) and returns its
/// canonical form, or every violation found.
pub fn validate_app_in(def: &AppDefinition, base: &str) -> Result<App, ValidationError> {
    let mut errs = Errors::default();
    let id = checks::id(def, base, &mut errs);
    checks::command(def, &mut errs);
    checks::resources(def, &mut errs);
    checks::strategies(def, &mut errs);
    checks::constraints(def, &mut errs);
    checks::env(def, &mut errs);
    checks::secrets(def, &mut errs);
    checks::container(def, &mut errs);
    let ports = checks::ports(def, &mut errs);
    checks::health_checks(def, &ports, &mut errs);
    checks::readiness_checks(def, &ports, &mut errs);
    checks::fetch(def, &mut errs);
    let deps = checks::dependencies(def, id.as_deref().unwrap_or("/"), &mut errs);
    errs.finish()?;
    Ok(normalize::app(
        def,
        id.expect("id is Some when there are no violations"),
        ports,
        deps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::marathon::{ConstraintOperator, UnreachableStrategy, UpgradeStrategy};
    use serde_json::json;

    fn def(v: serde_json::Value) -> AppDefinition {
        serde_json::from_value(v).expect("definition parses")
    }

    fn err(v: serde_json::Value) -> ValidationError {
        validate_app(&def(v)).expect_err("must be invalid")
    }

    #[test]
    fn minimal_app_gets_defaults() {
        let app = validate_app(&def(json!({"id": "web", "cmd": "sleep 100"}))).expect("valid");
        assert_eq!(app.id, "/web");
        assert_eq!(app.cpus, 1.0);
        assert_eq!(app.mem, 128.0);
        assert_eq!(app.instances, 1);
        assert_eq!(app.role, "*");
        assert_eq!(app.upgrade_strategy, UpgradeStrategy::default());
        assert_eq!(app.unreachable_strategy, UnreachableStrategy::default());
        assert_eq!(app.networks.len(), 1);
        assert_eq!(app.port_definitions.len(), 1);
        assert_eq!(app.port_definitions[0].name.as_deref(), Some("default"));
        let out = serde_json::to_value(&app).expect("serializes");
        for k in out.as_object().expect("object").keys() {
            assert!(App::MARATHON_PYTHON_KEYS.contains(&k.as_str()), "{k}");
        }
    }

    #[test]
    fn mapped_host_ports_are_the_non_zero_ones_legacy_place_included() {
        let app = validate_app(&def(json!({
            "id": "web", "cmd": "sleep 100",
            "container": {"type": "DOCKER", "docker": {"image": "busybox",
                "portMappings": [{"containerPort": 80, "hostPort": 0},
                                 {"containerPort": 81, "hostPort": 31005}]}},
            "networks": [{"mode": "container/bridge"}]
        })))
        .expect("valid");
        assert_eq!(mapped_host_ports(&app), vec![(1, 31005)]);
        let e = host_ports_refused(&[(String::new(), 1, 31005)]).expect_err("refused");
        let body = e.marathon_body().to_string();
        assert!(
            body.contains("/container/portMappings(1)/hostPort"),
            "{body}"
        );
        assert!(body.contains("31005"), "{body}");
        assert!(host_ports_refused(&[]).is_ok());
    }

    #[test]
    fn all_errors_reported_at_once() {
        let e = err(json!({
            "id": "Bad_Id", "cmd": "x", "cpus": 0, "mem": -1, "disk": -2, "instances": -1,
            "constraints": [["hostname", "NEAR"]],
            "upgradeStrategy": {"minimumHealthCapacity": 1.5}
        }));
        for p in [
            "/id",
            "/cmd",
            "/cpus",
            "/mem",
            "/disk",
            "/instances",
            "/constraints(0)",
            "/upgradeStrategy/minimumHealthCapacity",
        ] {
            assert!(e.has_path(p), "missing {p} in {e}");
        }
        let body = e.marathon_body();
        assert_eq!(body["message"], "Object is not valid");
        assert!(body["details"][0]["errors"][0].is_string());
    }

    #[test]
    fn cmd_args_container_rules() {
        assert!(err(json!({"id": "a"})).has_path("/"));
        assert!(err(json!({"id": "a", "cmd": "ls -l", "args": ["ls"]})).has_path("/"));
        let c = json!({"type": "DOCKER", "docker": {"image": "busybox"}});
        validate_app(&def(json!({"id": "a", "container": c}))).expect("container alone ok");
        assert!(
            err(json!({"id": "a", "cmd": "ls -l", "args": ["x"], "container": c})).has_path("/")
        );
        validate_app(&def(json!({"id": "a", "args": ["sleep", "1"]}))).expect("args ok");
        assert!(
            err(json!({"id": "a", "container": {"type": "DOCKER", "docker": {}}}))
                .has_path("/container/docker/image")
        );
        assert!(
            err(json!({"id": "a", "cmd": "ls -l", "container": {"type": "RKT"}}))
                .has_path("/container/type")
        );
    }

    #[test]
    fn constraint_rules() {
        let cases = [
            (
                json!(["hostname", "UNIQUE", "x"]),
                "UNIQUE does not accept a value",
            ),
            (
                json!(["rack", "MAX_PER"]),
                "MAX_PER requires an integer value",
            ),
            (
                json!(["rack", "MAX_PER", "two"]),
                "MAX_PER requires an integer value",
            ),
            (
                json!(["rack", "GROUP_BY", "x"]),
                "GROUP BY must define an integer value",
            ),
            (json!(["rack", "LIKE"]), "LIKE and UNLIKE require"),
            (
                json!(["rack", "LIKE", "("]),
                "is not a valid regular expression",
            ),
            (json!(["rack", "IS", "a b"]), "IS only supports"),
            (
                json!(["rack"]),
                "Each constraint must have either 2 or 3 fields",
            ),
        ];
        for (c, text) in cases {
            let e = err(json!({"id": "a", "cmd": "ls -l", "constraints": [c]}));
            let v = &e.violations[0];
            assert_eq!(v.path, "/constraints(0)");
            assert!(v.errors[0].contains(text), "{c}: {:?}", v.errors);
        }
        let app = validate_app(&def(json!({"id": "a", "cmd": "ls -l",
            "constraints": [["hostname", "unique"], ["rack", "GROUP_BY", "3"], ["rack", "LIKE", "r[12]"]]})))
        .expect("valid");
        assert_eq!(app.constraints[0].operator, ConstraintOperator::Unique);
    }

    #[test]
    fn health_check_port_index() {
        let e = err(json!({"id": "a", "cmd": "ls -l",
            "healthChecks": [{"protocol": "HTTP", "portIndex": 1}]}));
        assert!(e.violations[0].errors[0].contains("Health check port indices"));
        assert_eq!(e.violations[0].path, "/healthChecks(0)");
        let app = validate_app(&def(json!({"id": "a", "cmd": "ls -l",
            "portDefinitions": [{"port": 0}, {"port": 0}],
            "healthChecks": [{"protocol": "TCP", "portIndex": 1}, {"protocol": "HTTP"},
                             {"protocol": "COMMAND", "command": {"value": "true"}}]})))
        .expect("valid");
        assert_eq!(app.health_checks[1].port_index, Some(0), "auto-filled");
        assert_eq!(app.health_checks[2].port_index, None);
        assert!(err(json!({"id": "a", "cmd": "ls -l", "portDefinitions": [],
            "healthChecks": [{"protocol": "HTTP"}]}))
        .has_path("/healthChecks(0)"));
        assert!(err(json!({"id": "a", "cmd": "ls -l",
            "healthChecks": [{"protocol": "COMMAND"}]}))
        .has_path("/healthChecks(0)/command"));
    }

    #[test]
    fn deprecated_ports_and_uris() {
        let app = validate_app(&def(json!({"id": "a", "cmd": "ls -l", "ports": [0, 8080],
            "uris": ["http://x/a.tgz", "http://x/b.bin"]})))
        .expect("valid");
        assert_eq!(app.port_definitions.len(), 2);
        assert_eq!(app.port_definitions[1].port, 8080);
        assert!(app.fetch[0].extract);
        assert!(!app.fetch[1].extract);
        assert!(err(json!({"id": "a", "cmd": "ls -l", "ports": [1],
            "portDefinitions": [{"port": 2}]}))
        .has_path("/"));
        assert!(err(json!({"id": "a", "cmd": "ls -l", "uris": ["x"],
            "fetch": [{"uri": "y"}]}))
        .has_path("/uris"));
    }

    #[test]
    fn port_definition_rules() {
        let e = err(json!({"id": "a", "cmd": "ls -l", "portDefinitions": [
            {"port": 80, "name": "x"}, {"port": 80, "name": "x", "protocol": "sctp"}]}));
        assert!(e.has_path("/portDefinitions"));
        assert!(e.has_path("/portDefinitions(1)/protocol"));
    }

    #[test]
    fn non_host_networking_drops_port_definitions() {
        let app = validate_app(&def(json!({"id": "a",
            "container": {"type": "DOCKER", "docker": {"image": "x"}},
            "networks": [{"mode": "container/bridge"}], "requirePorts": true})))
        .expect("valid");
        assert!(app.port_definitions.is_empty());
        assert!(!app.require_ports);
        assert!(
            err(json!({"id": "a", "cmd": "ls -l", "networks": [{"mode": "container"}]}))
                .has_path("/networks(0)/name")
        );
    }

    #[test]
    fn strategy_and_backoff_rules() {
        let e = err(json!({"id": "a", "cmd": "ls -l", "backoffFactor": 0.5,
            "backoffSeconds": -1, "killSelection": "RANDOM",
            "unreachableStrategy": {"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5},
            "upgradeStrategy": {"maximumOverCapacity": -0.1}}));
        for p in [
            "/backoffFactor",
            "/backoffSeconds",
            "/killSelection",
            "/unreachableStrategy",
            "/upgradeStrategy/maximumOverCapacity",
        ] {
            assert!(e.has_path(p), "missing {p} in {e}");
        }
        let e = err(json!({"id": "a", "cmd": "ls -l", "instances": 2,
            "labels": {"MARATHON_SINGLE_INSTANCE_APP": "true"}}));
        assert!(e.has_path("/instances"));
    }

    #[test]
    fn env_secrets_and_dependencies() {
        let e = err(json!({"id": "a", "cmd": "ls -l",
            "env": {"A": {"secret": "nope"}, "B": 3}}));
        assert!(e.has_path("/env(A)"));
        assert!(e.has_path("/env(B)"));
        let app = validate_app_in(
            &def(json!({"id": "a", "cmd": "ls -l", "dependencies": ["db", "/x/y"]})),
            "/prod",
        )
        .expect("valid");
        assert_eq!(app.id, "/prod/a");
        assert_eq!(
            app.dependencies,
            vec!["/prod/db".to_owned(), "/x/y".to_owned()]
        );
    }

    #[test]
    fn resident_defaults() {
        let app = validate_app(&def(json!({"id": "a", "cmd": "ls -l", "container": {
            "type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW",
            "persistent": {"size": 10}}]}})))
        .expect("valid");
        assert_eq!(app.upgrade_strategy, UpgradeStrategy::RESIDENT);
        assert_eq!(app.unreachable_strategy, UnreachableStrategy::Disabled);
    }
}
