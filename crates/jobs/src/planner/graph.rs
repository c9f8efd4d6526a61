//! The dependency graph of the planner: cycle search and the Chronos CSV / Graphviz DOT exports.
//!
//! Used by [`crate::planner::Planner::add`] (cycle check) and the `/scheduler/graph/*` endpoints.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::Planner;

/// A path `start … target` walking from one of `starts` up through parents to `target`.
pub(super) fn find_path_to(
    planner: &Planner,
    starts: &[String],
    target: &str,
) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    for start in starts {
        let mut path = Vec::new();
        if walk(planner, start, target, &mut seen, &mut path) {
            return Some(path);
        }
    }
    None
}

fn walk(
    planner: &Planner,
    at: &str,
    target: &str,
    seen: &mut BTreeSet<String>,
    path: &mut Vec<String>,
) -> bool {
    path.push(at.to_string());
    if at == target {
        return true;
    }
    if seen.insert(at.to_string()) {
        if let Some(entry) = planner.jobs.get(at) {
            for p in &entry.spec.parents {
                if walk(planner, p, target, seen, path) {
                    return true;
                }
            }
        }
    }
    path.pop();
    false
}

/// `node,<name>,<lastState>,<state>` lines, then `link,<parent>,<child>` lines.
pub(super) fn csv(planner: &Planner) -> String {
    let mut out = String::new();
    for e in planner.jobs.values() {
        let _ = writeln!(
            out,
            "node,{},{},{}",
            e.spec.name,
            e.state.last_status(),
            e.state.run_state()
        );
    }
    for e in planner.jobs.values() {
        for p in &e.spec.parents {
            let _ = writeln!(out, "link,{p},{}", e.spec.name);
        }
    }
    out
}

/// A Graphviz digraph, nodes coloured by last status.
pub(super) fn dot(planner: &Planner) -> String {
    let mut out = String::from("digraph G {\n  node [style=filled];\n");
    for e in planner.jobs.values() {
        let colour = match e.state.last_status() {
            "success" => "green",
            "failure" => "red",
            _ => "white",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [fillcolor={colour}, tooltip=\"{}\"];",
            e.spec.name,
            e.state.run_state()
        );
    }
    for e in planner.jobs.values() {
        for p in &e.spec.parents {
            let _ = writeln!(out, "  \"{p}\" -> \"{}\";", e.spec.name);
        }
    }
    out.push_str("}\n");
    out
}
