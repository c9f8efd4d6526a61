//! `meseta backup` and `meseta restore`: the store's durable contents to and from a file in the
//! format of [`meseta_store::backup`].
//!
//! A running cluster is backed up through its master (`GET /master/backup`); a stopped master's
//! embedded store can be read directly (`--data-dir`). A restore writes into a stopped master's
//! store (`--data-dir`) or a store named by URL (`--store`), which must be empty unless
//! `--force`. A store URL is opened as `meseta master --store` opens it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use meseta_store::backup::{BackupError, Snapshot};
use meseta_store::Store;

use crate::cluster;

/// Flags of `meseta backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The backup file to write (replaced atomically).
    pub file: PathBuf,
    /// Read the store of a stopped master from its data dir instead of asking a running
    /// master (`--master`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Flags of `meseta restore`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["data_dir", "store"])))]
pub struct RestoreArgs {
    /// The backup file to read.
    pub file: PathBuf,
    /// The data dir of a stopped master to restore into.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The store to restore into, by URL (`etcd://host:2379,...`).
    #[arg(long)]
    pub store: Option<String>,
    /// Delete what the target store holds before restoring (it must be empty otherwise).
    #[arg(long)]
    pub force: bool,
}

/// `meseta backup`: from the leading master of `master` (a comma-separated list), or from a
/// stopped master's data dir.
pub async fn backup(a: BackupArgs, master: &str, json: bool) -> anyhow::Result<i32> {
    let (snapshot, source) = match &a.data_dir {
        Some(dir) => {
            let path = cluster::store_path(dir);
            anyhow::ensure!(path.exists(), "no store at {}", path.display());
            let store = cluster::open_store(dir).map_err(|e| {
                anyhow::anyhow!(
                    "{e:#} (is a master running on it? Back it up through the master with \
                     --master URL)"
                )
            })?;
            let snap = meseta_store::backup::backup(store.as_ref()).await?;
            (snap, path.display().to_string())
        }
        None => {
            // Given a list of masters, the client finds the leading one.
            let client = meseta_api::client::MasterClient::new(master)?;
            let value = client
                .get_path("/master/backup")
                .await
                .with_context(|| format!("asking {master} for a backup"))?;
            let url = client.base_url();
            let snap: Snapshot = serde_json::from_value(value)
                .with_context(|| format!("{url} answered something that is not a backup"))?;
            (snap, url)
        }
    };
    let bytes = snapshot.to_json()?;
    write_atomically(&a.file, &bytes)
        .with_context(|| format!("writing the backup to {}", a.file.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": a.file, "source": source, "keys": snapshot.keys.len(),
                "revision": snapshot.revision, "schema_version": snapshot.schema_version,
                "created": snapshot.created, "bytes": bytes.len(),
            })
        );
    } else {
        println!(
            "backed up {} keys at revision {} of {source} to {}",
            snapshot.keys.len(),
            snapshot.revision,
            a.file.display()
        );
    }
    Ok(0)
}

/// `meseta restore`.
pub async fn restore(a: RestoreArgs, json: bool) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let snapshot = Snapshot::from_json(&bytes).with_context(|| a.file.display().to_string())?;
    let (store, target) = open_target(&a).await?;
    let done = match meseta_store::backup::restore(store.as_ref(), &snapshot, a.force).await {
        Ok(done) => done,
        Err(BackupError::NotEmpty { keys }) => anyhow::bail!(
            "{target} is not empty: it holds {keys} keys; pass --force to delete them and \
             restore"
        ),
        Err(e) => return Err(e).with_context(|| format!("restoring into {target}")),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": a.file, "target": target, "keys": done.keys, "deleted": done.deleted,
                "revision": done.revision, "source_revision": snapshot.revision,
            })
        );
    } else {
        println!(
            "restored {} keys (revision {} of the backup) into {target}{}",
            done.keys,
            snapshot.revision,
            if a.force {
                format!(", after deleting {} keys", done.deleted)
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

/// Opens the store a restore writes to, and names it for messages.
async fn open_target(a: &RestoreArgs) -> anyhow::Result<(Arc<dyn Store>, String)> {
    if let Some(dir) = &a.data_dir {
        let store: Arc<dyn Store> = cluster::open_store(dir).map_err(|e| {
            anyhow::anyhow!("{e:#} (is a master running on it? Stop it before restoring)")
        })?;
        return Ok((store, cluster::store_path(dir).display().to_string()));
    }
    let url = a.store.as_deref().unwrap_or_default();
    Ok((cluster::open_shared_store(url).await?, url.to_string()))
}

/// Writes `bytes` to `path` through a temp file in the same dir, synced, then renamed over
/// it: readers see the old file or the whole new one. Owner-only permissions (a backup holds
/// everything the cluster stores).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backup.json");
        std::fs::write(&path, "old").expect("write");
        write_atomically(&path, b"new contents").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new contents");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["backup.json"], "no temp file left");
        let missing = dir.path().join("no-such-dir").join("b.json");
        assert!(write_atomically(&missing, b"x").is_err());
    }
}
