//! Persistent volumes on the agent: directories under
//! `<work dir>/volumes/roles/<role>/<persistence id>` that outlive the tasks using them.
//!
//! Before a task starts, [`attach`] creates each of its volumes if missing (owned by the task's
//! user when it has one) and symlinks `<sandbox>/<container path>` to it; the directory stays when
//! the task ends. The master's `DestroyVolume` message (a DESTROY operation) calls [`destroy`].

use std::path::{Component, Path, PathBuf};

use meseta_api::agent::VolumeMount;

/// Why a volume could not be attached or destroyed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    /// A role, persistence id or container path that cannot be used as a path.
    #[error("invalid volume {what} {value:?}: {reason}")]
    Invalid {
        /// `role`, `persistence id` or `container path`.
        what: &'static str,
        /// The refused value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// File-system failure.
    #[error("volume io error on {path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `value` is one plain path component.
fn component(what: &'static str, value: &str) -> Result<(), VolumeError> {
    let bad = |reason| VolumeError::Invalid {
        what,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value == "." || value == ".." || value.contains('/') || value.contains('\0') {
        return Err(bad("must be a single path component"));
    }
    Ok(())
}

/// Checks that `path` is relative and stays inside the sandbox.
fn container_path(path: &str) -> Result<&Path, VolumeError> {
    let bad = |reason| VolumeError::Invalid {
        what: "container path",
        value: path.to_string(),
        reason,
    };
    let p = Path::new(path);
    if path.is_empty() || path.contains('\0') {
        return Err(bad("must not be empty"));
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("must be relative to the sandbox, without '..'"));
    }
    Ok(p)
}

/// `<work dir>/volumes/roles/<role>/<persistence id>`.
pub(crate) fn volume_dir(work_dir: &Path, role: &str, id: &str) -> Result<PathBuf, VolumeError> {
    component("role", role)?;
    component("persistence id", id)?;
    Ok(work_dir.join("volumes").join("roles").join(role).join(id))
}

/// Create the volume if missing and link it into `sandbox`; returns the volume directory.
pub(crate) fn attach(
    work_dir: &Path,
    sandbox: &Path,
    role: &str,
    v: &VolumeMount,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, VolumeError> {
    let rel = container_path(&v.container_path)?;
    let link = sandbox.join(rel);
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let dir = volume_dir(work_dir, role, &v.persistence_id)?;
    match std::fs::read_link(&link) {
        Ok(target) if target == dir && dir.is_dir() => return Ok(dir),
        Ok(_) => std::fs::remove_file(&link).map_err(io(&link))?,
        Err(_) if link.exists() => {
            return Err(VolumeError::Invalid {
                what: "container path",
                value: v.container_path.clone(),
                reason: "already exists in the sandbox",
            })
        }
        Err(_) => {}
    }
    let dir = ensure(work_dir, role, v, owner)?;
    std::os::unix::fs::symlink(&dir, &link).map_err(io(&link))?;
    Ok(dir)
}

/// Create the volume if missing (mode 0750, owned by `owner`) for a container, which gets it
/// bind-mounted rather than linked: `(volume directory, path relative to the sandbox)`.
pub(crate) fn for_container(
    work_dir: &Path,
    role: &str,
    v: &VolumeMount,
    owner: Option<(u32, u32)>,
) -> Result<(PathBuf, PathBuf), VolumeError> {
    let rel = container_path(&v.container_path)?.to_path_buf();
    Ok((ensure(work_dir, role, v, owner)?, rel))
}

/// The volume's directory, created if missing.
fn ensure(
    work_dir: &Path,
    role: &str,
    v: &VolumeMount,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, VolumeError> {
    let dir = volume_dir(work_dir, role, &v.persistence_id)?;
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // The volume's data is its user's alone (like a sandbox).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).map_err(io(&dir))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(
                &dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| VolumeError::Io {
                path: dir.clone(),
                source: e.into(),
            })?;
        }
    }
    Ok(dir)
}

/// Delete the volume's directory and everything in it; `false` if there was none.
pub(crate) fn destroy(work_dir: &Path, role: &str, id: &str) -> Result<bool, VolumeError> {
    let dir = volume_dir(work_dir, role, id)?;
    if !dir.exists() {
        return Ok(false);
    }
    std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(id: &str, path: &str) -> VolumeMount {
        VolumeMount {
            persistence_id: id.into(),
            container_path: path.into(),
            read_only: false,
        }
    }

    #[test]
    fn volumes_survive_sandboxes_until_destroyed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tmp.path();
        let sb1 = work.join("t1/sandbox");
        std::fs::create_dir_all(&sb1).expect("sandbox");
        let dir = attach(work, &sb1, "db", &mount("v1", "data/db"), None).expect("attach");
        assert_eq!(dir, work.join("volumes/roles/db/v1"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o750, "other users cannot read the volume");
        std::fs::write(sb1.join("data/db/x"), "hello").expect("write through link");
        std::fs::remove_dir_all(&sb1).expect("task gone");
        assert!(dir.join("x").exists(), "the volume outlives the sandbox");

        let sb2 = work.join("t2/sandbox");
        std::fs::create_dir_all(&sb2).expect("sandbox");
        attach(work, &sb2, "db", &mount("v1", "data/db"), None).expect("attach again");
        // Attaching twice to the same sandbox is harmless.
        attach(work, &sb2, "db", &mount("v1", "data/db"), None).expect("idempotent");
        let read = std::fs::read_to_string(sb2.join("data/db/x")).expect("read");
        assert_eq!(read, "hello");

        assert!(destroy(work, "db", "v1").expect("destroy"));
        assert!(!dir.exists());
        assert!(!destroy(work, "db", "v1").expect("destroy again"));
    }

    #[test]
    fn refuses_paths_that_escape() {
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tmp.path();
        let sb = work.join("sb");
        std::fs::create_dir_all(sb.join("taken")).expect("sandbox");
        for (role, m) in [
            ("db", mount("..", "d")),
            ("db", mount("a/b", "d")),
            ("", mount("v", "d")),
            ("..", mount("v", "d")),
            ("db", mount("v", "/abs")),
            ("db", mount("v", "../out")),
            ("db", mount("v", "")),
            ("db", mount("v", "taken")),
        ] {
            let err = attach(work, &sb, role, &m, None).expect_err("refused");
            assert!(
                matches!(err, VolumeError::Invalid { .. }),
                "{role} {m:?}: {err}"
            );
        }
        assert!(
            !work.join("volumes").exists(),
            "no volume made for refused attaches"
        );
        assert!(sb.join("taken").is_dir());
    }
}
