//! Marathon path ids (reference §1.2): `/group/sub/app`.
//!
//! Used by [`crate::validate`] and, later, by the master's `/v2` routes (which strip slashes and
//! resolve ids from URLs). Rules: segments of lowercase letters, digits, `-` and `.`, dot-separated
//! labels that neither start nor end with `-`; `.` and `..` resolve relative to the parent; empty
//! segments are dropped; the root is not an app id; the last segment is not a reserved word.

use thiserror::Error;

/// Why a path id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// A segment broke the character rules.
    #[error("path id segment {segment:?} of {id:?} must match ^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$")]
    InvalidSegment {
        /// The whole id.
        id: String,
        /// The offending segment.
        segment: String,
    },
    /// `..` went above the root.
    #[error("path id {0:?} goes above the root")]
    AboveRoot(String),
    /// The id is the root group.
    #[error("path id {0:?} must not be the root")]
    Root(String),
    /// The last segment is reserved by the REST routes.
    #[error("path id {id:?} must not end with the reserved word {segment:?}")]
    Reserved {
        /// The whole id.
        id: String,
        /// The reserved last segment.
        segment: String,
    },
}

/// Last segments that would collide with `/v2/apps/{id}/…` routes.
pub const RESERVED: [&str; 3] = ["restart", "tasks", "versions"];

/// True when `label` is `[a-z0-9]` or `[a-z0-9][a-z0-9-]*[a-z0-9]`.
fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b {
        [] => false,
        [c] => edge(*c),
        [first, mid @ .., last] => {
            edge(*first) && edge(*last) && mid.iter().all(|&c| edge(c) || c == b'-')
        }
    }
}

/// True when `segment` matches the Marathon segment regex (including `.` and `..`).
pub fn valid_segment(segment: &str) -> bool {
    segment == "." || segment == ".." || segment.split('.').all(valid_label)
}

/// Resolves `id` against the group `base` (absolute, e.g. `/` or `/prod`) and checks it,
/// returning the canonical absolute path of an app (`web` in `/prod` → `/prod/web`).
pub fn canonical_app_id(id: &str, base: &str) -> Result<String, PathError> {
    let full = resolve(id, base)?;
    let last = full.last().map(String::as_str);
    match last {
        None => Err(PathError::Root(id.to_owned())),
        Some(seg) if RESERVED.contains(&seg) => Err(PathError::Reserved {
            id: id.to_owned(),
            segment: seg.to_owned(),
        }),
        Some(_) => Ok(join(&full)),
    }
}

/// Resolves `id` against `base` into segments without the app-specific checks (a group id may be
/// the root).
pub fn resolve(id: &str, base: &str) -> Result<Vec<String>, PathError> {
    let mut out: Vec<String> = Vec::new();
    if !id.starts_with('/') {
        for seg in base.split('/').filter(|s| !s.is_empty()) {
            out.push(seg.to_owned());
        }
    }
    for seg in id.split('/').filter(|s| !s.is_empty()) {
        if !valid_segment(seg) {
            return Err(PathError::InvalidSegment {
                id: id.to_owned(),
                segment: seg.to_owned(),
            });
        }
        match seg {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot(id.to_owned()));
                }
            }
            _ => out.push(seg.to_owned()),
        }
    }
    Ok(out)
}

/// Joins segments into an absolute path (`[]` → `/`).
pub fn join(segments: &[String]) -> String {
    format!("/{}", segments.join("/"))
}

/// The parent group of an absolute id (`/a/b` → `/a`, `/a` → `/`).
pub fn parent(id: &str) -> String {
    let segs: Vec<String> = id
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    join(&segs[..segs.len().saturating_sub(1)])
}

/// Mesos task-safe form: drop the leading `/`, replace `/` with `_` (`/prod/web` → `prod_web`).
pub fn safe_path(id: &str) -> String {
    id.trim_matches('/').replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute() {
        assert_eq!(canonical_app_id("web", "/").as_deref(), Ok("/web"));
        assert_eq!(canonical_app_id("web", "/prod").as_deref(), Ok("/prod/web"));
        assert_eq!(
            canonical_app_id("a///b/", "/x").as_deref(),
            Ok("/x/a/b"),
            "empty segments dropped"
        );
        assert_eq!(canonical_app_id("/a/b", "/x").as_deref(), Ok("/a/b"));
        assert_eq!(canonical_app_id("../c", "/a/b").as_deref(), Ok("/a/c"));
        assert_eq!(canonical_app_id("./c", "/a").as_deref(), Ok("/a/c"));
    }

    #[test]
    fn segment_rules() {
        for ok in ["a", "a1", "a-b", "a.b", "1", "my-app.v2", "..", "."] {
            assert!(valid_segment(ok), "{ok}");
        }
        for bad in ["A", "-a", "a-", "a_b", "a..b", "a.", ".a", "a b", "", "é"] {
            assert!(!valid_segment(bad), "{bad}");
        }
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            canonical_app_id("/Web", "/"),
            Err(PathError::InvalidSegment { .. })
        ));
        assert!(matches!(
            canonical_app_id("/", "/"),
            Err(PathError::Root(_))
        ));
        assert!(matches!(
            canonical_app_id("/a/..", "/"),
            Err(PathError::Root(_))
        ));
        assert!(matches!(
            canonical_app_id("/..", "/"),
            Err(PathError::AboveRoot(_))
        ));
        assert!(matches!(
            canonical_app_id("/a/tasks", "/"),
            Err(PathError::Reserved { .. })
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(safe_path("/prod/web"), "prod_web");
    }
}
