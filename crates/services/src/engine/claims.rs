//! What an app claims at the edge, and refusing a claim another app holds: service ports
//! (`portDefinitions[i].port` when not 0, or marathon-lb's `HAPROXY_{i}_PORT` label) and
//! virtual hosts (`MESETA_VHOST`, `HAPROXY_{i}_VHOST`). The load balancer routes one port and
//! one host to one app, so a second claim is a 422 at submission naming the holder.

use meseta_api::marathon::App;

use super::{Engine, EngineError};
use crate::validate::{ValidationError, Violation};

/// One claim and where in the app definition it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    /// `service port 10000`, `virtual host www.example.com`.
    what: String,
    /// The path of the violation (`/portDefinitions(0)/port`, `/labels/MESETA_VHOST`).
    path: String,
}

/// Every claim of `app`.
fn claims(app: &App) -> Vec<Claim> {
    let mut out = Vec::new();
    for (i, pd) in app.port_definitions.iter().enumerate() {
        let label = format!("HAPROXY_{i}_PORT");
        match app
            .labels
            .get(&label)
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            Some(p) if p != 0 => out.push(Claim {
                what: format!("service port {p}"),
                path: format!("/labels/{label}"),
            }),
            _ if pd.port != 0 => out.push(Claim {
                what: format!("service port {}", pd.port),
                path: format!("/portDefinitions({i})/port"),
            }),
            _ => {}
        }
    }
    for (key, value) in &app.labels {
        let vhost =
            key == "MESETA_VHOST" || (key.starts_with("HAPROXY_") && key.ends_with("_VHOST"));
        if !vhost {
            continue;
        }
        for host in value.split(',').map(|h| h.trim().to_ascii_lowercase()) {
            if !host.is_empty() {
                out.push(Claim {
                    what: format!("virtual host {host}"),
                    path: format!("/labels/{key}"),
                });
            }
        }
    }
    out
}

impl Engine {
    /// Refuses `app` when one of its service ports or virtual hosts belongs to another app.
    pub(crate) fn check_claims(&self, app: &App) -> Result<(), EngineError> {
        let mine = claims(app);
        if mine.is_empty() {
            return Ok(());
        }
        let mut violations: Vec<Violation> = Vec::new();
        for other in self.apps().filter(|o| o.app.id != app.id) {
            let theirs = claims(&other.app);
            for c in mine
                .iter()
                .filter(|c| theirs.iter().any(|t| t.what == c.what))
            {
                violations.push(Violation {
                    path: c.path.clone(),
                    errors: vec![format!(
                        "{} is already used by app {}",
                        c.what, other.app.id
                    )],
                });
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Invalid(ValidationError { violations }))
        }
    }
}

impl Engine {
    /// Refuses a group change (the apps under the group become `target`) when one of the
    /// target's service ports or virtual hosts belongs to another app: one of the target, or
    /// one that stays outside the change (`changed`: the ids the change sets or removes).
    pub(crate) fn check_group_claims(
        &self,
        target: &[App],
        changed: &dyn Fn(&str) -> bool,
    ) -> Result<(), ValidationError> {
        let staying: Vec<&App> = self
            .apps()
            .map(|o| &o.app)
            .filter(|a| !changed(&a.id))
            .collect();
        let mut violations: Vec<Violation> = Vec::new();
        for (i, app) in target.iter().enumerate() {
            let mine = claims(app);
            if mine.is_empty() {
                continue;
            }
            // Each pair of target apps once (the earlier one keeps the claim).
            let others = staying.iter().copied().chain(target[..i].iter());
            for other in others.filter(|o| o.id != app.id) {
                let theirs = claims(other);
                for c in mine
                    .iter()
                    .filter(|c| theirs.iter().any(|t| t.what == c.what))
                {
                    violations.push(Violation {
                        path: c.path.clone(),
                        errors: vec![format!(
                            "{} of app {} is already used by app {}",
                            c.what, app.id, other.id
                        )],
                    });
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { violations })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(port: u32, labels: serde_json::Value) -> App {
        crate::test_support::app(json!({"id": "/a", "cmd": "sleep 9", "labels": labels,
                                        "portDefinitions": [{"port": port}]}))
    }

    #[test]
    fn ports_and_hosts_are_claimed_from_definitions_and_labels() {
        let whats = |a: &App| claims(a).into_iter().map(|c| c.what).collect::<Vec<_>>();
        assert!(whats(&app(0, json!({}))).is_empty());
        assert_eq!(whats(&app(10001, json!({}))), ["service port 10001"]);
        assert_eq!(
            whats(&app(
                10001,
                json!({"HAPROXY_0_PORT": "8080", "HAPROXY_0_VHOST": "A.com, b.com"})
            )),
            [
                "service port 8080",
                "virtual host a.com",
                "virtual host b.com"
            ]
        );
        assert_eq!(
            whats(&app(0, json!({"MESETA_VHOST": "x.io"}))),
            ["virtual host x.io"]
        );
    }

    #[test]
    fn a_second_app_on_a_taken_port_or_host_is_refused_naming_the_holder() {
        let mut e = Engine::new(1);
        let first = crate::test_support::app(json!({"id": "/web", "cmd": "sleep 9",
            "portDefinitions": [{"port": 10500}], "labels": {"MESETA_VHOST": "web.example.com"}}));
        e.put_app(first.clone(), 1.0, false, true)
            .expect("first app");
        // The app itself may keep its claims on update.
        e.put_app(first, 2.0, true, false).expect("same app again");
        let port = crate::test_support::app(json!({"id": "/api", "cmd": "sleep 9",
            "portDefinitions": [{"port": 10500}]}));
        let Err(EngineError::Invalid(v)) = e.put_app(port, 3.0, false, true) else {
            panic!("a taken port must be refused");
        };
        assert_eq!(v.violations[0].path, "/portDefinitions(0)/port");
        assert_eq!(
            v.violations[0].errors,
            ["service port 10500 is already used by app /web"]
        );
        let host = crate::test_support::app(json!({"id": "/api", "cmd": "sleep 9",
            "labels": {"HAPROXY_0_VHOST": "WEB.example.com"}}));
        let Err(EngineError::Invalid(v)) = e.put_app(host, 4.0, false, true) else {
            panic!("a taken host must be refused");
        };
        assert!(
            v.to_string().contains("virtual host web.example.com"),
            "{v}"
        );
        let free = crate::test_support::app(json!({"id": "/api", "cmd": "sleep 9",
            "portDefinitions": [{"port": 0}], "labels": {"MESETA_VHOST": "api.example.com"}}));
        e.put_app(free, 5.0, false, true).expect("no conflict");
    }
}

#[cfg(test)]
mod group_tests {
    use super::super::GroupError;
    use super::*;
    use crate::group::resolve_update;
    use serde_json::json;

    fn node(v: serde_json::Value, id: &str) -> crate::group::GroupNode {
        let update = serde_json::from_value(v).expect("group update");
        resolve_update(&update, id).expect("valid group")
    }

    #[test]
    fn a_group_claiming_a_taken_port_or_host_is_refused_and_its_own_apps_may_swap_them() {
        let mut e = Engine::new(1);
        let web = crate::test_support::app(json!({"id": "/web", "cmd": "sleep 9",
            "portDefinitions": [{"port": 10600}]}));
        e.put_app(web, 1.0, false, true).expect("web");
        // A group app on /web's port: refused, nothing created.
        let taken = node(
            json!({"id": "/g", "apps": [{"id": "a", "cmd": "sleep 9",
                   "portDefinitions": [{"port": 10600}]}]}),
            "/g",
        );
        let Err(GroupError::Invalid(v)) = e.update_group(&taken, 2.0, false, false) else {
            panic!("a taken port must be refused");
        };
        assert!(v.to_string().contains("already used by app /web"), "{v}");
        assert!(e.app("/g/a").is_none());
        // Two apps of one group on one host: refused.
        let twice = node(
            json!({"id": "/h", "apps": [
                {"id": "a", "cmd": "sleep 9", "labels": {"MESETA_VHOST": "h.example.com"}},
                {"id": "b", "cmd": "sleep 9", "labels": {"MESETA_VHOST": "h.example.com"}}]}),
            "/h",
        );
        assert!(matches!(
            e.update_group(&twice, 3.0, false, false),
            Err(GroupError::Invalid(_))
        ));
        // A group whose app gives up the host while another of its apps takes it: accepted.
        let one = node(
            json!({"id": "/k", "apps": [
                {"id": "a", "cmd": "sleep 9", "labels": {"MESETA_VHOST": "k.example.com"}}]}),
            "/k",
        );
        e.update_group(&one, 4.0, false, false).expect("first");
        let moved = node(
            json!({"id": "/k", "apps": [
                {"id": "b", "cmd": "sleep 9", "labels": {"MESETA_VHOST": "k.example.com"}}]}),
            "/k",
        );
        e.update_group(&moved, 5.0, true, false)
            .expect("moved within the group");
    }
}
