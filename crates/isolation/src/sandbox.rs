//! Opening files inside a task's sandbox without ever leaving it.
//!
//! A task owns its sandbox and may put symbolic links there (to `/etc/shadow`, to another task's
//! files). Whatever the agent reads or writes in a sandbox on the task's behalf — the logs
//! endpoint, fetched files — goes through [`open_beneath`]: the path is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` below the sandbox directory and the final
//! component is never a symbolic link (`O_NOFOLLOW`). On kernels without `openat2` (before 5.6) it
//! walks the path one component at a time with `O_NOFOLLOW`, which refuses every symbolic link.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Open `rel` below the directory `root`; `flags` are the usual open flags (`O_NOFOLLOW` and
/// `O_CLOEXEC` are always added), `mode` applies when `O_CREAT` creates the file.
///
/// Fails with `InvalidInput` when `rel` is absolute or has a `..` component, and with the
/// kernel's error (`ELOOP`, `EXDEV`) when resolving it would follow a link out of `root`, or
/// when its final component is a symbolic link.
pub fn open_beneath(root: &Path, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<File> {
    let parts = components(rel)?;
    let dir = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&dir, rel, how) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ENOSYS) => walk(dir, &parts, flags, mode).map(File::from),
        Err(e) => Err(e.into()),
    }
}

/// The `Normal` components of `rel` (`.` dropped); an error for anything that could climb out.
fn components(rel: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a path inside the sandbox", rel.display()),
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty path inside the sandbox",
        ));
    }
    Ok(parts)
}

/// The fallback: one `openat(O_NOFOLLOW)` per component.
fn walk(
    mut dir: OwnedFd,
    parts: &[&std::ffi::OsStr],
    flags: OFlag,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let Some((last, parents)) = parts.split_last() else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    for p in parents {
        dir = openat(
            &dir,
            *p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(openat(&dir, *last, flags | OFlag::O_NOFOLLOW, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(f: io::Result<File>) -> io::Result<String> {
        let mut s = String::new();
        f?.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn links_out_of_the_sandbox_are_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sb = tmp.path().join("sandbox");
        std::fs::create_dir_all(sb.join("sub")).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), "secret").expect("secret");
        std::fs::write(sb.join("sub/log"), "mine").expect("log");
        std::os::unix::fs::symlink(tmp.path().join("secret"), sb.join("stdout")).expect("ln");
        std::os::unix::fs::symlink("../secret", sb.join("rel")).expect("ln");
        std::os::unix::fs::symlink("..", sb.join("up")).expect("ln");
        let ro = |rel: &str| open_beneath(&sb, Path::new(rel), OFlag::O_RDONLY, Mode::empty());
        assert_eq!(read(ro("sub/log")).expect("inside"), "mine");
        for rel in ["stdout", "rel", "up/secret", "../secret", "/etc/passwd", ""] {
            assert!(read(ro(rel)).is_err(), "{rel} must not be readable");
        }
        // Both resolutions agree on the same refusals.
        let dir = || open(&sb, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("dir");
        for rel in ["stdout", "rel", "up/secret"] {
            let parts = components(Path::new(rel)).expect("parts");
            assert!(
                walk(dir(), &parts, OFlag::O_RDONLY, Mode::empty()).is_err(),
                "{rel}"
            );
        }
        let parts = components(Path::new("sub/log")).expect("parts");
        assert!(walk(dir(), &parts, OFlag::O_RDONLY, Mode::empty()).is_ok());
    }

    #[test]
    fn creating_through_a_link_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sb = tmp.path().join("sandbox");
        std::fs::create_dir_all(&sb).expect("mkdir");
        std::os::unix::fs::symlink(tmp.path(), sb.join("out")).expect("ln");
        let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
        let mode = Mode::from_bits_truncate(0o644);
        assert!(open_beneath(&sb, Path::new("out/x"), create, mode).is_err());
        assert!(!tmp.path().join("x").exists());
        open_beneath(&sb, Path::new("new"), create, mode).expect("plain create");
        assert!(sb.join("new").is_file());
    }
}
