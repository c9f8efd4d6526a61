//! Application groups (reference §2.1 `/v2/groups`, §4.1): a `GroupUpdate` body resolved into
//! validated apps, dependency layering, and the one deployment plan that takes a set of apps to
//! its target.
//!
//! Used by the master's `POST/PUT/DELETE /v2/groups` handlers and by the engine's group requests
//! (`engine/groups.rs`). Groups are not stored: a group exists while some app id lies under it,
//! and a group's `dependencies` are copied into the `dependencies` of the apps it defines.
//!
//! - [`resolve`]: `GroupUpdate` → [`GroupNode`] tree with canonical ids and validated apps
//!   (every violation collected, with paths such as `/groups(0)/apps(1)/cpus`).
//! - [`layers`]: longest-dependency-path levels and cycle detection.
//! - [`plan`]: the group deployment plan (stop, start, then one step per dependency level).

pub mod layers;
pub mod plan;
pub mod resolve;

pub use layers::{levels, Cycle};
pub use plan::group_plan;
pub use resolve::{resolve_update, GroupNode};

use serde::Deserialize;
use serde_json::Value;

/// The body of `POST/PUT /v2/groups[/{id}]`. Unknown keys (`pods`, `enforceRole`, read-only
/// keys a client re-sends) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupUpdate {
    /// Group id, relative to the enclosing group (or the URL's group at the top).
    #[serde(default)]
    pub id: Option<String>,
    /// App definitions; absent keeps the group's apps (PUT), present replaces them. Kept as
    /// JSON so each app's shape errors are reported at its own path.
    #[serde(default)]
    pub apps: Option<Vec<Value>>,
    /// Sub-groups; absent keeps them (PUT), present replaces them.
    #[serde(default)]
    pub groups: Option<Vec<GroupUpdate>>,
    /// Ids (apps or groups, relative to this group) every app of this group depends on.
    #[serde(default)]
    pub dependencies: Option<Vec<String>>,
    /// PUT only: multiply every app's instances by this factor (rounded up).
    #[serde(default)]
    pub scale_by: Option<f64>,
    /// PUT only: roll the group back to this version.
    #[serde(default)]
    pub version: Option<String>,
}

/// New instance count of an app scaled by `factor`: `ceil(instances × factor)`, as Marathon's
/// group scaling does. `None` for a negative or non-finite factor.
pub fn scaled_instances(instances: u32, factor: f64) -> Option<u32> {
    if !factor.is_finite() || factor < 0.0 {
        return None;
    }
    let n = (f64::from(instances) * factor).ceil();
    Some(if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n as u32
    })
}

/// True when `id` is `group` or lies under it (`/` contains everything).
pub fn is_under(id: &str, group: &str) -> bool {
    group == "/"
        || id == group
        || id
            .strip_prefix(group)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_rounds_up_and_rejects_bad_factors() {
        assert_eq!(scaled_instances(3, 1.5), Some(5));
        assert_eq!(scaled_instances(2, 2.0), Some(4));
        assert_eq!(scaled_instances(1, 0.1), Some(1));
        assert_eq!(scaled_instances(4, 0.0), Some(0));
        assert_eq!(scaled_instances(1, -1.0), None);
        assert_eq!(scaled_instances(1, f64::NAN), None);
    }

    #[test]
    fn under() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/x", "/"));
    }
}
