//! The bulk-delete guard: a request that would delete a group holding apps, the root group,
//! or more than `limit` apps or jobs, or that is the `limit`-th delete by one token within a
//! minute, goes through only with `?confirm=true` (and, with ACLs on, an admin grant on what
//! it deletes). Refusals say how many would go. Applies with ACLs off too.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

/// The query parameter that confirms a bulk delete.
pub const CONFIRM_PARAM: &str = "confirm";

/// How long deletes by one token count towards its limit, in seconds.
pub const WINDOW_SECS: f64 = 60.0;

/// What a DELETE request deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// A Marathon group (`/` for the root) and everything under it.
    Group(String),
    /// One app or pod.
    App(String),
    /// One job.
    Job(String),
}

/// The deletion `DELETE path` asks for, if it deletes apps, groups or jobs.
pub fn deletion(path: &str) -> Option<Deletion> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["v2", "groups", id @ ..] => Some(Deletion::Group(format!("/{}", id.join("/")))),
        ["v2", "apps" | "pods", id @ ..] if !id.is_empty() && !id.contains(&"tasks") => {
            Some(Deletion::App(format!("/{}", id.join("/"))))
        }
        ["scheduler" | "v1", "job", name] | ["v1", "scheduler", "job", name] => {
            Some(Deletion::Job((*name).to_string()))
        }
        ["v1", "jobs", id] => Some(Deletion::Job((*id).to_string())),
        _ => None,
    }
}

/// Whether the query string confirms (`confirm=true` or `confirm=1`).
pub fn confirmed(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|kv| {
        matches!(kv.split_once('='), Some((k, v)) if k == CONFIRM_PARAM && (v == "true" || v == "1"))
    })
}

/// Apps (and pods) in a Marathon group tree, counted through all its subgroups.
pub fn apps_in_group(group: &Value) -> usize {
    let here: usize = ["apps", "pods"]
        .iter()
        .filter_map(|k| group.get(*k).and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    let below: usize = group
        .get("groups")
        .and_then(Value::as_array)
        .map(|gs| gs.iter().map(apps_in_group).sum())
        .unwrap_or(0);
    here + below
}

/// Why a delete needs confirmation, or `None` when it does not.
pub fn needs_confirmation(
    d: &Deletion,
    would_go: usize,
    recent: usize,
    limit: usize,
) -> Option<String> {
    let what = match d {
        Deletion::Group(_) | Deletion::App(_) => "apps",
        Deletion::Job(_) => "jobs",
    };
    match d {
        Deletion::Group(g) if g == "/" => Some(format!(
            "deleting the root group would delete all {would_go} {what}"
        )),
        Deletion::Group(g) if would_go > 0 => Some(format!(
            "deleting group {g} would delete {would_go} {what}"
        )),
        _ if would_go > limit => Some(format!(
            "this request would delete {would_go} {what}, more than {limit}"
        )),
        _ if limit > 0 && recent + would_go > limit => Some(format!(
            "this would be delete number {} by this token within {WINDOW_SECS} s, more than {limit}",
            recent + would_go
        )),
        _ => None,
    }
}

/// Recent deletes per token (by accessor; `""` for requests without one).
#[derive(Debug, Default)]
pub struct DeleteWindow {
    by_token: HashMap<String, VecDeque<f64>>,
}

impl DeleteWindow {
    /// How many deletes `who` made in the window before `now`.
    pub fn recent(&mut self, who: &str, now: f64) -> usize {
        match self.by_token.get_mut(who) {
            Some(q) => {
                while q.front().is_some_and(|t| now - t >= WINDOW_SECS) {
                    q.pop_front();
                }
                q.len()
            }
            None => 0,
        }
    }

    /// Counts `n` deletes by `who` at `now`.
    pub fn record(&mut self, who: &str, now: f64, n: usize) {
        let q = self.by_token.entry(who.to_string()).or_default();
        q.extend(std::iter::repeat_n(now, n));
        if self.by_token.len() > 10_000 {
            self.by_token
                .retain(|_, q| q.back().is_some_and(|t| now - t < WINDOW_SECS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deletes_are_recognised_by_path() {
        assert_eq!(deletion("/v2/groups"), Some(Deletion::Group("/".into())));
        assert_eq!(
            deletion("/v2/groups/a/b"),
            Some(Deletion::Group("/a/b".into()))
        );
        assert_eq!(
            deletion("/v2/apps/a/web"),
            Some(Deletion::App("/a/web".into()))
        );
        assert_eq!(deletion("/v2/apps/a/web/tasks/t1"), None);
        assert_eq!(
            deletion("/scheduler/job/etl"),
            Some(Deletion::Job("etl".into()))
        );
        assert_eq!(deletion("/v1/jobs/etl"), Some(Deletion::Job("etl".into())));
        assert_eq!(deletion("/scheduler/task/kill/etl"), None);
    }

    #[test]
    fn confirm_must_be_explicit() {
        assert!(confirmed(Some("force=true&confirm=true")));
        assert!(!confirmed(Some("confirm=false")));
        assert!(!confirmed(None));
    }

    #[test]
    fn group_counts_include_subgroups() {
        let g = json!({"apps": [{}, {}], "groups": [{"apps": [{}], "pods": [{}], "groups": []}]});
        assert_eq!(apps_in_group(&g), 4);
    }

    #[test]
    fn groups_root_many_and_fast_deletes_need_confirmation() {
        let root = Deletion::Group("/".into());
        let msg = needs_confirmation(&root, 3, 0, 10).expect("root");
        assert!(msg.contains("all 3 apps"), "{msg}");
        assert!(needs_confirmation(&Deletion::Group("/g".into()), 0, 0, 10).is_none());
        assert!(needs_confirmation(&Deletion::Group("/g".into()), 1, 0, 10).is_some());
        let app = Deletion::App("/a".into());
        assert!(needs_confirmation(&app, 1, 9, 10).is_none());
        let m = needs_confirmation(&app, 1, 10, 10).expect("11th delete");
        assert!(m.contains("number 11"), "{m}");
    }

    #[test]
    fn the_window_forgets_after_a_minute() {
        let mut w = DeleteWindow::default();
        w.record("t", 0.0, 3);
        w.record("t", 30.0, 1);
        assert_eq!(w.recent("t", 59.0), 4);
        assert_eq!(w.recent("t", 61.0), 1);
        assert_eq!(w.recent("other", 61.0), 0);
    }
}
