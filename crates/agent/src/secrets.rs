//! Delivering a task's secrets: the master's launch message carries their values; the agent
//! puts secret variables into the environment the shim starts the task with (`launch.json`,
//! private to the agent) and writes secret files into the sandbox (mode 0400, owned by the task
//! user, never through a symbolic link or out of the sandbox). Everything else the agent keeps
//! or reports about the task (`task.json`, its state, re-registration) holds only references.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use meseta_api::agent::{SecretTarget, TaskSpec};

/// The secret environment variables of `spec`, with their values.
pub(crate) fn env(spec: &TaskSpec) -> Result<Vec<(String, String)>, String> {
    spec.secrets
        .iter()
        .filter_map(|s| match &s.target {
            SecretTarget::Env(name) => Some(
                s.value
                    .as_ref()
                    .map(|v| (name.clone(), v.0.clone()))
                    .ok_or_else(|| missing(&s.reference)),
            ),
            SecretTarget::File(_) => None,
        })
        .collect()
}

fn missing(reference: &str) -> String {
    format!("the value of secret {reference} was not delivered with the task")
}

/// Writes the secret files of `spec` under `sandbox`, owned by `owner` (the task user when the
/// agent switches users).
pub(crate) fn write_files(
    spec: &TaskSpec,
    sandbox: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    for s in &spec.secrets {
        let SecretTarget::File(rel) = &s.target else {
            continue;
        };
        let value = s.value.as_ref().ok_or_else(|| missing(&s.reference))?;
        write_one(sandbox, rel, value.0.as_bytes(), owner)
            .map_err(|why| format!("secret file {rel:?}: {why}"))?;
    }
    Ok(())
}

fn write_one(
    sandbox: &Path,
    rel: &str,
    data: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let rel = Path::new(rel);
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(p) => Ok(p),
            _ => Err("the path must stay inside the sandbox (relative, no '..')".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let Some((file, dirs)) = parts.split_last() else {
        return Err("the path is empty".to_string());
    };
    let mut at = sandbox.to_path_buf();
    for d in dirs {
        at.push(d);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(_) => {
                std::fs::create_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o750))
                    .map_err(|e| e.to_string())?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    at.push(file);
    // `create_new` never follows a link nor replaces anything already there.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)
        .map_err(|e| format!("{}: {e}", at.display()))?;
    f.write_all(data).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o400))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_api::agent::{SecretUse, SecretValue};

    fn spec_with(secrets: Vec<SecretUse>) -> TaskSpec {
        TaskSpec {
            secrets,
            ..crate::tasks::tests::spec("t1", "cpus:0.1")
        }
    }

    fn file(path: &str, value: Option<&str>) -> SecretUse {
        SecretUse {
            reference: "/a/b".into(),
            target: SecretTarget::File(path.into()),
            value: value.map(|v| SecretValue(v.into())),
        }
    }

    #[test]
    fn files_are_written_private_and_inside() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = spec_with(vec![file("creds/pw", Some("v1")), file("top", Some("v2"))]);
        write_files(&s, dir.path(), None).expect("write");
        let p = dir.path().join("creds/pw");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "v1");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        for bad in ["../x", "/etc/x", "a/../../x"] {
            let s = spec_with(vec![file(bad, Some("v"))]);
            assert!(write_files(&s, dir.path(), None).is_err(), "{bad}");
        }
        let missing = spec_with(vec![file("other", None)]);
        let e = write_files(&missing, dir.path(), None).expect_err("no value");
        assert!(e.contains("not delivered"), "{e}");
    }

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("l")).expect("ln");
        std::os::unix::fs::symlink(outside.path().join("f"), dir.path().join("f")).expect("ln");
        for p in ["l/x", "f"] {
            let s = spec_with(vec![file(p, Some("v"))]);
            assert!(write_files(&s, dir.path(), None).is_err(), "{p}");
        }
        assert!(std::fs::read_dir(outside.path())
            .expect("ls")
            .next()
            .is_none());
    }

    #[test]
    fn env_values() {
        let s = spec_with(vec![SecretUse {
            reference: "/a".into(),
            target: SecretTarget::Env("DB".into()),
            value: Some(SecretValue("pw".into())),
        }]);
        assert_eq!(env(&s).expect("env"), vec![("DB".into(), "pw".into())]);
        let stripped = s.without_secret_values();
        assert!(env(&stripped).is_err());
    }
}
