//! Small file helpers shared by the spec, pid and exit-record writers of this crate.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// ext2/3/4's "top of directory hierarchies" inode flag (`chattr +T`; not in `libc`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Mark `dir` as the top of independent directory trees (`chattr +T`): ext4 then places each
/// new subdirectory in a block group of its own choosing (Orlov) instead of next to `dir`, and
/// the files inside follow their subdirectory. For a dir of per-task dirs this spreads one
/// launch's inode allocations away from the inodes of tasks deleted just before: on ext4
/// without a journal each allocation walks past every inode of its group deleted in the last
/// minute. Errors (a filesystem without inode flags) are returned for the caller to ignore: the
/// flag is only a placement hint.
pub fn spread_subdirectories(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write `data` to `path` atomically: `<path>.tmp` (mode 0600: task files are the agent's, not
/// the task user's), fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_tmp(path, data, true)
}

/// Replace `path` with `data` atomically against a crash of this process (`<path>.tmp`,
/// rename), without forcing it to disk: for files that describe live processes (pid files, the
/// launch spec), which mean nothing after the machine itself went down. Saves the two fsyncs per file that
/// otherwise sit on a task's launch path.
pub(crate) fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_tmp(path, data, false)
}

fn write_via_tmp(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(tmp, path)?;
    if !durable {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        // Best effort: make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").expect("write one");
        write_atomic(&p, b"two").expect("write two");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
        write_replace(&p, b"three").expect("write three");
        assert_eq!(fs::read(&p).expect("read"), b"three");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
