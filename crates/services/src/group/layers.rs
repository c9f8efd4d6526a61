//! Dependency levels (reference §4.1): an app's level is the length of the longest dependency
//! path starting at it (0 for an app with no dependency). A group deployment runs one step per
//! level, lowest first, so an app starts only after everything it depends on is deployed.
//!
//! A dependency names an app or a group (meaning every app under it); ids that match no app
//! are ignored. Every cycle is refused, an app depending on itself (directly, or through a
//! group it lies in) included, as Marathon's dependency graph does.

use std::collections::BTreeMap;

use crate::validate::{ValidationError, Violation};

/// A dependency cycle, as the app ids along it (the first repeated at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl Cycle {
    /// The 422 it answers: Marathon's `Dependency graph has cyclic dependencies.`, then the
    /// cycle (`cycle: /a -> /b -> /a`).
    pub fn to_validation_error(&self) -> ValidationError {
        ValidationError {
            violations: vec![Violation {
                path: "/".into(),
                errors: vec![CYCLIC.to_owned(), format!("cycle: {}", self.0.join(" -> "))],
            }],
        }
    }
}

/// Marathon's text for a dependency cycle.
pub const CYCLIC: &str = "Dependency graph has cyclic dependencies.";

#[derive(Clone, Copy)]
enum Mark {
    Visiting,
    Done(usize),
}

/// The level of every app of `deps` (app id → its dependencies), or a cycle.
pub fn levels(deps: &BTreeMap<String, Vec<String>>) -> Result<BTreeMap<String, usize>, Cycle> {
    let edges: BTreeMap<&str, Vec<&str>> = deps
        .iter()
        .map(|(id, ds)| {
            let mut to: Vec<&str> = ds
                .iter()
                .flat_map(|d| under(deps, d))
                .map(String::as_str)
                .collect();
            to.sort_unstable();
            to.dedup();
            (id.as_str(), to)
        })
        .collect();
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for id in edges.keys() {
        let mut path = Vec::new();
        visit(id, &edges, &mut marks, &mut path)?;
    }
    Ok(marks
        .into_iter()
        .filter_map(|(id, m)| match m {
            Mark::Done(l) => Some((id.to_owned(), l)),
            Mark::Visiting => None,
        })
        .collect())
}

/// The app ids of `deps` that are `dep` or lie under it (a range of the sorted keys).
fn under<'a>(
    deps: &'a BTreeMap<String, Vec<String>>,
    dep: &'a str,
) -> impl Iterator<Item = &'a String> + 'a {
    deps.range::<str, _>((std::ops::Bound::Included(dep), std::ops::Bound::Unbounded))
        .map(|(k, _)| k)
        .take_while(move |k| k.starts_with(dep))
        .filter(move |k| super::is_under(k, dep))
}

/// Depth-first: the level of `id`. Iterative over an explicit stack, so a long dependency chain
/// cannot overflow the thread's stack.
fn visit<'a>(
    start: &'a str,
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    marks: &mut BTreeMap<&'a str, Mark>,
    path: &mut Vec<&'a str>,
) -> Result<(), Cycle> {
    if marks.contains_key(start) {
        return Ok(());
    }
    // (node, index of the next edge to follow)
    let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
    marks.insert(start, Mark::Visiting);
    path.push(start);
    while let Some((node, next)) = stack.last().copied() {
        let to = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(dep) = to.get(next) {
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match marks.get(dep) {
                Some(Mark::Done(_)) => {}
                Some(Mark::Visiting) => {
                    let from = path.iter().position(|p| p == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push((*dep).to_owned());
                    return Err(Cycle(cycle));
                }
                None => {
                    marks.insert(dep, Mark::Visiting);
                    path.push(dep);
                    stack.push((dep, 0));
                }
            }
            continue;
        }
        let level = to
            .iter()
            .filter_map(|d| match marks.get(d) {
                Some(Mark::Done(l)) => Some(l + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        marks.insert(node, Mark::Done(level));
        path.pop();
        stack.pop();
    }
    Ok(())
}

/// `ids` grouped by level, lowest level first (ids without a level count as level 0).
pub fn layered(ids: &[String], levels: &BTreeMap<String, usize>) -> Vec<Vec<String>> {
    let mut by: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for id in ids {
        by.entry(levels.get(id).copied().unwrap_or(0))
            .or_default()
            .push(id.clone());
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(a, ds)| {
                (
                    (*a).to_owned(),
                    ds.iter().map(|d| (*d).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn levels_are_longest_dependency_paths() {
        // db ← api ← web, and web → db directly too; cache alone; worker depends on group /b.
        let g = graph(&[
            ("/a/db", &[]),
            ("/a/api", &["/a/db"]),
            ("/a/web", &["/a/api", "/a/db", "/missing"]),
            ("/cache", &[]),
            ("/b/x", &["/cache"]),
            ("/worker", &["/b"]),
        ]);
        let l = levels(&g).expect("acyclic");
        assert_eq!(l["/a/db"], 0);
        assert_eq!(l["/a/api"], 1);
        assert_eq!(l["/a/web"], 2);
        assert_eq!(l["/cache"], 0);
        assert_eq!(l["/b/x"], 1);
        assert_eq!(l["/worker"], 2);
        let ids: Vec<String> = ["/a/web", "/a/db", "/cache", "/a/api"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            layered(&ids, &l),
            vec![vec!["/a/db", "/cache"], vec!["/a/api"], vec!["/a/web"]]
        );
    }

    #[test]
    fn a_group_dependency_covers_every_app_under_it() {
        let g = graph(&[("/g/a", &["/h"]), ("/h/b", &[]), ("/h/c", &["/h/b"])]);
        assert_eq!(levels(&g).expect("acyclic")["/g/a"], 2);
        let g = graph(&[("/g/a", &["/g"]), ("/g/b", &["/g"])]);
        assert!(levels(&g).is_err());
    }

    #[test]
    fn depending_on_itself_is_a_cycle() {
        let c = levels(&graph(&[("/a", &["/a"])])).expect_err("self edge");
        assert_eq!(c.0, vec!["/a".to_owned(), "/a".to_owned()]);
        // An app depending on the group it lies in depends on itself.
        let c = levels(&graph(&[("/g/a", &["/g"]), ("/g/b", &[])])).expect_err("own group");
        assert_eq!(c.0, vec!["/g/a".to_owned(), "/g/a".to_owned()]);
        let e = c.to_validation_error();
        assert_eq!(e.violations[0].path, "/");
        assert_eq!(e.violations[0].errors[0], CYCLIC);
    }

    #[test]
    fn cycles_are_found_and_named() {
        let g = graph(&[
            ("/a", &["/b"]),
            ("/b", &["/c"]),
            ("/c", &["/a"]),
            ("/d", &[]),
        ]);
        let c = levels(&g).expect_err("cycle");
        assert_eq!(c.0.first(), c.0.last());
        assert_eq!(c.0.len(), 4, "{c:?}");
        let e = c.to_validation_error();
        assert!(e.violations[0].errors[0].contains("cyclic"), "{e}");
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("/n{i}")).collect();
        let g: BTreeMap<String, Vec<String>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), ids.get(i + 1).cloned().into_iter().collect()))
            .collect();
        assert_eq!(levels(&g).expect("acyclic")["/n0"], 19_999);
    }
}
