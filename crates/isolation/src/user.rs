//! User database lookups for running tasks as a given user; used by the shim before it forks
//! (getpwnam/getgrouplist are not async-signal-safe, so nothing here runs in the child).

use std::ffi::CString;

use nix::unistd::{getgrouplist, Gid, User};

use crate::IsolationError;

/// Resolve `name` to `(uid, gid)`.
pub fn lookup(name: &str) -> Result<(u32, u32), IsolationError> {
    let user = User::from_name(name)
        .map_err(|source| IsolationError::UserLookup {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| IsolationError::UnknownUser(name.to_string()))?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

/// Supplementary groups of `name` (including `gid`), as `initgroups` would set them.
pub fn groups(name: &str, gid: u32) -> Result<Vec<u32>, IsolationError> {
    let cname = CString::new(name).map_err(|_| IsolationError::UnknownUser(name.to_string()))?;
    let list =
        getgrouplist(&cname, Gid::from_raw(gid)).map_err(|source| IsolationError::UserLookup {
            name: name.to_string(),
            source,
        })?;
    Ok(list.into_iter().map(|g| g.as_raw()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_zero() {
        assert_eq!(lookup("root").expect("root exists"), (0, 0));
        assert!(groups("root", 0).expect("groups").contains(&0));
    }

    #[test]
    fn unknown_user_is_named() {
        let err = lookup("no-such-user-meseta").expect_err("unknown");
        assert!(err.to_string().contains("no-such-user-meseta"), "{err}");
    }
}
