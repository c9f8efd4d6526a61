//! User database lookups for running tasks as a given user; used by the shim before it forks
//! (getpwnam/getgrouplist are not async-signal-safe, so nothing here runs in the child), and by
//! the agent, which does work on a task's behalf (fetching its URIs) with the task user's
//! permissions through [`run_as`].

use std::ffi::CString;
use std::io;

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

/// A resolved user: who a task runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (including `gid`).
    pub groups: Vec<u32>,
}

impl Identity {
    /// Look `name` up in the user database, with its groups.
    pub fn resolve(name: &str) -> Result<Identity, IsolationError> {
        let (uid, gid) = lookup(name)?;
        Ok(Identity {
            name: name.to_string(),
            uid,
            gid,
            groups: groups(name, gid)?,
        })
    }

    /// The user of this process (by effective uid), `uid <n>` when it has no name.
    pub fn current() -> Identity {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name);
        Identity {
            name,
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            groups: vec![gid.as_raw()],
        }
    }
}

/// Run `f` on a thread of its own whose credentials are `who`'s (supplementary groups, gid and
/// uid, real and effective): every file it opens or creates is checked and owned as that user.
/// The rest of the process keeps its credentials; the thread ends with `f`.
///
/// Needs `CAP_SETUID`/`CAP_SETGID` unless `who` is the current user.
pub fn run_as<T, F>(who: &Identity, f: F) -> Result<T, IsolationError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let who = who.clone();
    let name = who.name.clone();
    let failed = |source: io::Error| IsolationError::SwitchUser {
        name: name.clone(),
        source,
    };
    let worker = std::thread::Builder::new()
        .name("meseta-as-user".into())
        .spawn(move || {
            switch_thread(&who)?;
            Ok(f())
        })
        .map_err(failed)?;
    match worker.join() {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(failed(io::Error::other("the worker thread panicked"))),
    }
}

/// Change the calling thread's credentials only: raw syscalls, because the C library's
/// `setuid` family changes every thread of the process.
fn switch_thread(who: &Identity) -> io::Result<()> {
    let check = |r: libc::c_long| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: `groups` is a live Vec; the pointer and length describe exactly its elements,
    // which the kernel only reads.
    check(unsafe { libc::syscall(libc::SYS_setgroups, who.groups.len(), who.groups.as_ptr()) })?;
    // SAFETY: plain syscalls on integer arguments that affect only the calling thread; gid
    // before uid, while the thread may still change it.
    check(unsafe { libc::syscall(libc::SYS_setresgid, who.gid, who.gid, who.gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_setresuid, who.uid, who.uid, who.uid) })
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
    fn run_as_changes_only_the_worker_thread() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: switching users needs root");
            return;
        }
        let nobody = Identity::resolve("nobody").expect("user nobody");
        let dir = tempfile::tempdir().expect("tmp");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (uid, read) = run_as(&nobody, move || {
            (
                nix::unistd::geteuid().as_raw(),
                std::fs::read(&secret).is_ok(),
            )
        })
        .expect("run as nobody");
        assert_eq!(uid, nobody.uid);
        assert!(!read, "nobody must not read a root-only file");
        assert!(
            nix::unistd::geteuid().is_root(),
            "the caller keeps its user"
        );
        assert!(std::fs::read(dir.path().join("secret")).is_ok());
    }

    #[test]
    fn unknown_user_is_named() {
        let err = lookup("no-such-user-meseta").expect_err("unknown");
        assert!(err.to_string().contains("no-such-user-meseta"), "{err}");
    }
}
