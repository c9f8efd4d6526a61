//! Which permission each request needs: every API family of the master mapped to an
//! [`Access`] on a [`Kind`] of resource, and the filtering of listings and events to what a
//! token may read.
//!
//! | family | resource |
//! |---|---|
//! | `/v2/apps`, `/v2/groups`, `/v2/pods`, `/v2/tasks`, `/v2/deployments`, `/v2/queue`, `/v2/events` | apps (by id path) |
//! | `/scheduler/*`, `/v1/scheduler/*`, `/v1/jobs` | jobs (by name) |
//! | `/api/v1/scheduler` | the framework's principal, roles and task users ([`Need::Framework`]) |
//! | `/ui/services*`, `/ui/jobs*` and their forms | any token (their reads are the viewer's) |
//! | `/api/v1`, `/master/*`, metrics, other `/ui` pages, other `/v2/*` | operator |
//! | `/master/machine/*`, `/master/maintenance/*` | nodes |
//! | `/api/meseta/v1/acl/*`, `/api/meseta/v1/audit` | acl |
//! | `/api/meseta/v1/secrets/*` | secrets (by path) |
//!
//! GET and HEAD read; other methods write. Listings need read on some part of their kind and
//! are then filtered item by item ([`filter_listing`]).

use serde_json::Value;

use crate::policy::{Access, Grants, Kind, Resource};

/// What a request needs before it may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health, ping, the bootstrap call, the agents' own protocol.
    Public,
    /// Any valid token.
    Authenticated,
    /// `access` on the resource of `kind` named by the string.
    One(Access, Kind, String),
    /// Read on some part of `kind`; the answer is filtered per item.
    Listing(Kind),
    /// `access` on every id the JSON body names (`id`, or an array of apps; `name` of jobs).
    BodyIds(Access, Kind),
    /// A Mesos scheduler call: the framework's principal, roles and task users decide.
    Framework,
    /// A v1 operator call: read for `GET_*`, write for others (the body's `type`).
    OperatorCall,
}

/// The suffixes after an app id in `/v2/apps/{id}/...` paths.
const APP_SUFFIXES: [&str; 4] = ["restart", "tasks", "versions", "config"];

/// The need of `method path`.
pub fn classify(method: &str, path: &str) -> Need {
    let read = matches!(method, "GET" | "HEAD");
    let access = if read { Access::Read } else { Access::Write };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [] | ["health"] | ["master", "health"] | ["version"] | ["ping"] | ["v2", "ping"] => {
            Need::Public
        }
        ["api", "meseta", "v1", "acl", "bootstrap"] => Need::Public,
        ["api", "meseta", "v1", "agent"] => Need::Public,
        // The web UI's sign-in form and its assets.
        ["ui", "login" | "logout"] | ["ui", "static", ..] => Need::Public,
        // UI pages and forms that read and act through the public API with the viewer's own
        // credential: the API's own checks decide what they show and do.
        ["ui", "services" | "jobs", ..]
        | ["ui", "actions", "scale" | "restart" | "rollback", ..] => Need::Authenticated,
        ["api", "meseta", "v1", "acl", ..] | ["api", "meseta", "v1", "audit"] => {
            Need::One(Access::Admin, Kind::Acl, String::new())
        }
        ["api", "meseta", "v1", "secrets"] if read => Need::Listing(Kind::Secrets),
        ["api", "meseta", "v1", "secrets", rest @ ..] if !rest.is_empty() => {
            Need::One(access, Kind::Secrets, format!("/{}", rest.join("/")))
        }
        ["api", "v1", "scheduler"] | ["master", "api", "v1", "scheduler"] => Need::Framework,
        ["api", "v1"] | ["api", "v1", "operator"] => Need::OperatorCall,
        ["v2", rest @ ..] => classify_v2(method == "DELETE", read, access, rest),
        ["scheduler", rest @ ..] | ["v1", "scheduler", rest @ ..] => {
            classify_chronos(read, access, rest)
        }
        ["v1", "jobs"] if read => Need::Listing(Kind::Jobs),
        ["v1", "jobs"] => Need::BodyIds(access, Kind::Jobs),
        ["v1", "jobs", id, ..] => Need::One(access, Kind::Jobs, (*id).to_string()),
        ["master", "machine", ..]
        | ["machine", ..]
        | ["master", "maintenance", ..]
        | ["maintenance", ..] => Need::One(access, Kind::Nodes, String::new()),
        _ => Need::One(access, Kind::Operator, String::new()),
    }
}

fn app_id(segs: &[&str]) -> String {
    let end = segs
        .iter()
        .position(|s| APP_SUFFIXES.contains(s) || s.starts_with("::"))
        .unwrap_or(segs.len());
    let id = format!("/{}", segs[..end].join("/"));
    match id.split_once("::") {
        Some((pod, _)) => pod.to_string(),
        None => id,
    }
}

fn classify_v2(delete: bool, read: bool, access: Access, rest: &[&str]) -> Need {
    let apps = |id: String| Need::One(access, Kind::Apps, id);
    match rest {
        ["apps"] | ["pods"] | ["groups"] if !read && !delete => Need::BodyIds(access, Kind::Apps),
        ["apps"]
        | ["groups"]
        | ["pods"]
        | ["pods", "::status"]
        | ["tasks"]
        | ["deployments"]
        | ["queue"]
        | ["events"]
            if read =>
        {
            Need::Listing(Kind::Apps)
        }
        ["groups"] => apps("/".to_string()),
        ["apps", id @ ..] | ["pods", id @ ..] => apps(app_id(id)),
        ["groups", id @ ..] => {
            let end = id.iter().position(|s| *s == "versions").unwrap_or(id.len());
            let group = format!("/{}", id[..end].join("/"));
            if read && group == "/" {
                Need::Listing(Kind::Apps)
            } else {
                apps(group)
            }
        }
        ["queue", id @ .., "delay"] => apps(format!("/{}", id.join("/"))),
        // Which apps a task kill or a deployment cancel touches is not in the request:
        // they need the grant on all apps.
        ["tasks", ..] | ["deployments", ..] => apps("/".to_string()),
        ["info"] | ["leader"] if read => Need::Authenticated,
        _ => Need::One(access, Kind::Operator, String::new()),
    }
}

fn classify_chronos(read: bool, access: Access, rest: &[&str]) -> Need {
    let job = |n: &str| Need::One(access, Kind::Jobs, n.to_string());
    match rest {
        ["jobs"] | ["jobs", "search"] | ["jobs", "summary"] if read => Need::Listing(Kind::Jobs),
        ["iso8601"] | ["dependency"] => Need::BodyIds(access, Kind::Jobs),
        ["job", "success" | "enable" | "disable" | "stat", name] => job(name),
        ["job", name] | ["task", "kill", name] => job(name),
        ["leader"] => Need::Authenticated,
        _ => job(""),
    }
}

/// The ids a create or update body names: `id` of an app, group, pod or Metronome job,
/// `name` of a Chronos job, or those of each item of an array. `None` when the body names
/// none (then the request needs the grant on the whole kind).
pub fn body_ids(kind: Kind, body: &Value) -> Option<Vec<String>> {
    let one = |v: &Value| -> Option<String> {
        let key = if kind == Kind::Jobs && v.get("name").is_some() {
            "name"
        } else {
            "id"
        };
        let s = v.get(key)?.as_str()?;
        Some(if kind == Kind::Apps && !s.starts_with('/') {
            format!("/{s}")
        } else {
            s.to_string()
        })
    };
    match body {
        Value::Array(items) => items.iter().map(one).collect(),
        v => one(v).map(|id| vec![id]),
    }
}

/// Keeps, in a listing of `kind`, only what `g` may read. Understands every listing shape the
/// master answers: arrays of items, objects holding `apps`, `tasks`, `queue`, `jobs` or
/// `pods` arrays, and Marathon's group tree.
pub fn filter_listing(kind: Kind, g: &Grants, v: &mut Value) {
    if g.management {
        return;
    }
    match v {
        Value::Array(items) => items.retain(|i| visible(kind, g, i)),
        Value::Object(map) => {
            if kind == Kind::Apps && map.contains_key("groups") {
                filter_group(g, v);
                return;
            }
            for key in ["apps", "tasks", "queue", "jobs", "pods", "secrets"] {
                if let Some(Value::Array(items)) = map.get_mut(key) {
                    items.retain(|i| visible(kind, g, i));
                }
            }
        }
        _ => {}
    }
}

fn filter_group(g: &Grants, group: &mut Value) {
    let Value::Object(map) = group else { return };
    for key in ["apps", "pods"] {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            items.retain(|i| visible(Kind::Apps, g, i));
        }
    }
    if let Some(Value::Array(groups)) = map.get_mut("groups") {
        groups.retain(|sub| {
            sub.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| g.sees_into(id))
        });
        for sub in groups.iter_mut() {
            filter_group(g, sub);
        }
    }
}

/// Whether one listed item (or event) is readable: its app id (`id`, `appId`, `app.id`,
/// `pod.id`, any of `affectedApps`) or job name (`name`, `id`). An item naming none is
/// visible only with read on the whole kind.
pub fn visible(kind: Kind, g: &Grants, item: &Value) -> bool {
    let can = |name: &str| g.allows(Access::Read, Resource::new(kind, name)).is_ok();
    let str_at = |ptr: &str| item.pointer(ptr).and_then(Value::as_str);
    let named = match kind {
        Kind::Apps => str_at("/appId")
            .or_else(|| str_at("/id"))
            .or_else(|| str_at("/app/id"))
            .or_else(|| str_at("/pod/id")),
        _ => str_at("/name").or_else(|| str_at("/id")),
    };
    if let Some(Value::Array(affected)) = item.get("affectedApps") {
        return !affected.is_empty() && affected.iter().all(|a| a.as_str().is_some_and(&can));
    }
    if let Some(n) = named {
        return can(n);
    }
    can("")
}

/// Whether an event of the `/v2/events` stream is for a token with grants `g`, and if so the
/// event with what it may not see removed: an event names its app by `appId`,
/// `appDefinition.id`, or (deployments) the `app` of each plan step's actions, all of which
/// must be readable; the plan's `original` and `target` group trees are filtered.
pub fn redact_event(g: &Grants, ev: &mut Value) -> bool {
    if g.management {
        return true;
    }
    let can = |name: &str| {
        g.allows(Access::Read, Resource::new(Kind::Apps, name))
            .is_ok()
    };
    let str_at = |ptr: &str| ev.pointer(ptr).and_then(Value::as_str);
    if let Some(id) = str_at("/appId").or_else(|| str_at("/appDefinition/id")) {
        return can(id);
    }
    let Some(plan) = ev.get("plan") else {
        return visible(Kind::Apps, g, ev);
    };
    let apps: Vec<&str> = plan
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("actions").and_then(Value::as_array))
        .flatten()
        .filter_map(|a| {
            a.get("app")
                .or_else(|| a.get("pod"))
                .and_then(Value::as_str)
        })
        .collect();
    if apps.is_empty() || !apps.iter().all(|a| can(a)) {
        return false;
    }
    for tree in ["original", "target"] {
        if let Some(t) = ev.get_mut("plan").and_then(|p| p.get_mut(tree)) {
            filter_group(g, t);
        }
    }
    true
}

/// The resources a v1 operator call of `call_type` needs.
pub fn operator_call(call_type: &str) -> (Access, Kind) {
    if call_type.starts_with("GET_") || call_type == "SUBSCRIBE" {
        return (Access::Read, Kind::Operator);
    }
    match call_type {
        "START_MAINTENANCE"
        | "STOP_MAINTENANCE"
        | "UPDATE_MAINTENANCE_SCHEDULE"
        | "DRAIN_AGENT"
        | "DEACTIVATE_AGENT"
        | "REACTIVATE_AGENT"
        | "MARK_AGENT_GONE" => (Access::Write, Kind::Nodes),
        _ => (Access::Write, Kind::Operator),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_by_path() {
        use crate::policy::{Access, Kind};
        assert_eq!(
            classify("GET", "/api/meseta/v1/secrets"),
            Need::Listing(Kind::Secrets)
        );
        assert_eq!(
            classify("PUT", "/api/meseta/v1/secrets/team-a/db/pw"),
            Need::One(Access::Write, Kind::Secrets, "/team-a/db/pw".into())
        );
        assert_eq!(
            classify("GET", "/api/meseta/v1/secrets/team-a/db"),
            Need::One(Access::Read, Kind::Secrets, "/team-a/db".into())
        );
        let rule = crate::policy::Rule {
            resource: Kind::Secrets,
            prefix: "/team-a/".into(),
            access: Access::Write,
        };
        assert!(rule.covers(Kind::Secrets, "/team-a/db"));
        assert!(!rule.covers(Kind::Secrets, "/team-ab/db"));
        assert!(!rule.covers(Kind::Apps, "/team-a/db"));
    }

    use super::*;
    use crate::policy::Rule;
    use serde_json::json;

    fn team_a() -> Grants {
        Grants {
            management: false,
            rules: vec![Rule {
                resource: Kind::Apps,
                prefix: "/team-a/".into(),
                access: Access::Write,
            }],
        }
    }

    #[test]
    fn ui_pages_are_the_viewers_reads_or_the_operators() {
        use Need::*;
        assert_eq!(classify("GET", "/ui/login"), Public);
        assert_eq!(classify("POST", "/ui/login"), Public);
        assert_eq!(classify("GET", "/ui/static/ui.js"), Public);
        assert_eq!(classify("GET", "/ui/services"), Authenticated);
        assert_eq!(classify("GET", "/ui/services/team-a/web"), Authenticated);
        assert_eq!(classify("GET", "/ui/jobs/nightly"), Authenticated);
        assert_eq!(
            classify("POST", "/ui/actions/scale/team-a/web"),
            Authenticated
        );
        let operator = |a| One(a, Kind::Operator, String::new());
        assert_eq!(classify("GET", "/ui"), operator(Access::Read));
        assert_eq!(classify("GET", "/ui/nodes"), operator(Access::Read));
        assert_eq!(classify("GET", "/ui/tasks/t1"), operator(Access::Read));
        assert_eq!(
            classify("POST", "/ui/actions/drain/h1"),
            operator(Access::Write)
        );
    }

    #[test]
    fn api_families_map_to_resources() {
        use Need::*;
        let app = |a, id: &str| One(a, Kind::Apps, id.to_string());
        assert_eq!(classify("GET", "/v2/apps"), Listing(Kind::Apps));
        assert_eq!(
            classify("POST", "/v2/apps"),
            BodyIds(Access::Write, Kind::Apps)
        );
        assert_eq!(
            classify("GET", "/v2/apps/team-a/web"),
            app(Access::Read, "/team-a/web")
        );
        assert_eq!(
            classify("POST", "/v2/apps/team-a/web/restart"),
            app(Access::Write, "/team-a/web")
        );
        assert_eq!(
            classify("DELETE", "/v2/groups/team-b"),
            app(Access::Write, "/team-b")
        );
        assert_eq!(classify("DELETE", "/v2/groups"), app(Access::Write, "/"));
        assert_eq!(classify("GET", "/v2/groups/"), Listing(Kind::Apps));
        assert_eq!(
            classify("GET", "/v2/pods/p1::status"),
            app(Access::Read, "/p1")
        );
        assert_eq!(classify("GET", "/v2/events"), Listing(Kind::Apps));
        assert_eq!(
            classify("DELETE", "/v2/queue/a/b/delay"),
            app(Access::Write, "/a/b")
        );
        assert_eq!(classify("GET", "/scheduler/jobs"), Listing(Kind::Jobs));
        assert_eq!(
            classify("DELETE", "/v1/scheduler/job/etl"),
            One(Access::Write, Kind::Jobs, "etl".into())
        );
        assert_eq!(
            classify("POST", "/scheduler/iso8601"),
            BodyIds(Access::Write, Kind::Jobs)
        );
        assert_eq!(classify("POST", "/api/v1/scheduler"), Framework);
        assert_eq!(classify("POST", "/api/v1"), OperatorCall);
        assert_eq!(classify("GET", "/health"), Public);
        assert_eq!(classify("POST", "/api/meseta/v1/acl/bootstrap"), Public);
        assert_eq!(
            classify("GET", "/api/meseta/v1/audit"),
            One(Access::Admin, Kind::Acl, String::new())
        );
        assert_eq!(
            classify("POST", "/master/machine/down"),
            One(Access::Write, Kind::Nodes, String::new())
        );
        assert_eq!(
            classify("GET", "/master/state"),
            One(Access::Read, Kind::Operator, String::new())
        );
    }

    #[test]
    fn body_ids_are_normalised_app_paths_or_job_names() {
        assert_eq!(
            body_ids(Kind::Apps, &json!({"id": "team-a/x"})),
            Some(vec!["/team-a/x".into()])
        );
        assert_eq!(
            body_ids(Kind::Apps, &json!([{"id": "/a"}, {"id": "/b"}])),
            Some(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(body_ids(Kind::Apps, &json!([{"id": "/a"}, {}])), None);
        assert_eq!(
            body_ids(Kind::Jobs, &json!({"name": "etl"})),
            Some(vec!["etl".into()])
        );
    }

    #[test]
    fn listings_and_trees_keep_only_readable_items() {
        let g = team_a();
        let mut apps = json!({"apps": [{"id": "/team-a/web"}, {"id": "/team-b/web"}]});
        filter_listing(Kind::Apps, &g, &mut apps);
        assert_eq!(apps, json!({"apps": [{"id": "/team-a/web"}]}));
        let mut tasks = json!({"tasks": [{"appId": "/team-b/x"}, {"appId": "/team-a/x"}]});
        filter_listing(Kind::Apps, &g, &mut tasks);
        assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(1));
        let mut tree = json!({"id": "/", "apps": [{"id": "/top"}], "groups": [
            {"id": "/team-a", "apps": [{"id": "/team-a/web"}], "groups": []},
            {"id": "/team-b", "apps": [{"id": "/team-b/web"}], "groups": []}]});
        filter_listing(Kind::Apps, &g, &mut tree);
        assert_eq!(tree["apps"], json!([]));
        assert_eq!(tree["groups"].as_array().map(Vec::len), Some(1));
        let mut deps = json!([{"id": "d1", "affectedApps": ["/team-b/x"]},
                              {"id": "d2", "affectedApps": ["/team-a/x"]}]);
        filter_listing(Kind::Apps, &g, &mut deps);
        assert_eq!(deps.as_array().map(Vec::len), Some(1));
        let mut queue = json!({"queue": [{"app": {"id": "/team-b/q"}}]});
        filter_listing(Kind::Apps, &g, &mut queue);
        assert_eq!(queue, json!({"queue": []}));
    }

    #[test]
    fn events_without_an_app_need_read_on_all_apps() {
        let g = team_a();
        assert!(visible(
            Kind::Apps,
            &g,
            &json!({"eventType": "status_update_event", "appId": "/team-a/w"})
        ));
        assert!(!visible(
            Kind::Apps,
            &g,
            &json!({"eventType": "status_update_event", "appId": "/team-b/w"})
        ));
        assert!(!visible(
            Kind::Apps,
            &g,
            &json!({"eventType": "deployment_info"})
        ));
    }

    #[test]
    fn deployment_events_need_every_app_and_lose_other_teams_trees() {
        let g = team_a();
        let mut ev = json!({"eventType": "deployment_info", "id": "d1", "plan": {
            "steps": [{"actions": [{"action": "StartApplication", "app": "/team-a/w"}]}],
            "target": {"id": "/", "apps": [], "groups": [
                {"id": "/team-a", "apps": [{"id": "/team-a/w"}]},
                {"id": "/team-b", "apps": [{"id": "/team-b/w"}]}]}}});
        assert!(redact_event(&g, &mut ev));
        assert!(!ev.to_string().contains("team-b"), "{ev}");
        let mut other = json!({"plan": {"steps": [{"actions": [{"app": "/team-b/w"}]}]}});
        assert!(!redact_event(&g, &mut other));
        let mut post = json!({"eventType": "api_post_event", "appDefinition": {"id": "/team-b/w"}});
        assert!(!redact_event(&g, &mut post));
        let mut group = json!({"eventType": "group_change_success", "groupId": "/"});
        assert!(!redact_event(&g, &mut group));
    }

    #[test]
    fn operator_calls_read_or_write() {
        assert_eq!(operator_call("GET_STATE"), (Access::Read, Kind::Operator));
        assert_eq!(operator_call("DRAIN_AGENT"), (Access::Write, Kind::Nodes));
        assert_eq!(operator_call("TEARDOWN"), (Access::Write, Kind::Operator));
    }
}
