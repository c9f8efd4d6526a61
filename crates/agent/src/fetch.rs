//! The fetcher: before a task starts, bring each of its URIs (Mesos `CommandInfo.URI`) into the
//! sandbox.
//!
//! ```text
//!  http(s)://…  ──GET (redirects, ≤ 1 GiB)──┐
//!  file://… or /abs/path ──copy────────────┤──▶ sandbox/<basename | output_file>
//!  cache: true ──▶ <work_dir>/fetch-cache/<sha256(uri)> (reused next time)
//!                                          │
//!   executable ──▶ chmod 0755              │  extract ──▶ .tar .tar.gz .tgz .tar.bz2 .tbz2
//!                                          └──            .tar.xz .txz .zip (entries must stay
//!                                                         inside) / .gz (gunzipped beside it)
//! ```
//!
//! Called by [`crate::tasks`] in the task's launch tokio task (never on the connection loop); a
//! failure ends the task `TASK_FAILED` (`REASON_CONTAINER_LAUNCH_FAILED`) before any process starts.
//!
//! An agent running as root fetches on a thread that has the task user's credentials
//! ([`meseta_isolation::user::run_as`]): a local file the user cannot read is not fetched, and
//! everything written belongs to the user. Its cache is its own
//! (`fetch-cache/<uid>/`, 0700): a file one user fetched is never served to another. Files are
//! created below the sandbox without following links ([`open_beneath`]), so neither a link from
//! an earlier archive nor a crafted `output_file` redirects a write out of the sandbox.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use meseta_api::agent::FetchUri;
use meseta_isolation::sandbox::open_beneath;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::http_client::{self, Tls};

/// Largest download (and largest local file copied).
pub(crate) const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;
/// Largest total size of what one archive extracts to.
const MAX_EXTRACT_BYTES: u64 = 4 << 30;
/// Redirects followed per URI.
const MAX_REDIRECTS: usize = 10;
/// Longest wait for the response headers or for the next chunk of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why one URI could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// Not `http(s)://`, `file://` or an absolute path.
    #[error("unsupported URI (use http://, https://, file:// or an absolute path)")]
    Unsupported,
    /// No file name can be derived from the URI and no `output_file` was given.
    #[error("cannot derive a file name from the URI; set output_file")]
    NoName,
    /// `output_file` is absolute or leaves the sandbox.
    #[error("output_file {0:?} must be a relative path inside the sandbox")]
    BadOutputFile(String),
    /// The request failed.
    #[error(transparent)]
    Http(#[from] http_client::HttpError),
    /// The server answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// No progress for [`IDLE_TIMEOUT`].
    #[error("timed out after {0:?} without data")]
    Timeout(Duration),
    /// Over [`MAX_DOWNLOAD_BYTES`] (or [`MAX_EXTRACT_BYTES`] extracted).
    #[error("larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// A local source that is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// Failing path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A malformed archive.
    #[error("cannot extract {path}: {source}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The blocking worker doing file work panicked or was cancelled.
    #[error("fetch worker failed: {0}")]
    Worker(String),
    /// An archive entry (or link target) that would land outside the sandbox.
    #[error("archive entry {0:?} escapes the sandbox")]
    Escape(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fetches URIs into one sandbox.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    /// `<work_dir>/fetch-cache`.
    pub cache_dir: PathBuf,
    /// Download limit (tests lower it).
    pub max_bytes: u64,
}

impl Fetcher {
    /// A fetcher whose cache is `<work_dir>/fetch-cache`.
    #[cfg(test)]
    pub fn new(work_dir: &Path) -> Fetcher {
        Fetcher {
            cache_dir: work_dir.join("fetch-cache"),
            max_bytes: MAX_DOWNLOAD_BYTES,
        }
    }

    /// The fetcher of tasks running as `uid`, whose cache is `<work_dir>/fetch-cache/<uid>`.
    pub fn for_user(work_dir: &Path, uid: u32) -> Fetcher {
        Fetcher {
            cache_dir: work_dir.join("fetch-cache").join(uid.to_string()),
            max_bytes: MAX_DOWNLOAD_BYTES,
        }
    }

    /// Create the cache dir (0700) owned by `owner` when given; `fetch-cache/` itself is 0711.
    pub fn prepare_cache(&self, owner: Option<(u32, u32)>) -> Result<(), String> {
        let fail = |e: io::Error| format!("cannot create {}: {e}", self.cache_dir.display());
        fs::create_dir_all(&self.cache_dir).map_err(fail)?;
        if let Some(parent) = self.cache_dir.parent() {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o711)).map_err(fail)?;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&self.cache_dir, Some(uid), Some(gid)).map_err(fail)?;
        }
        fs::set_permissions(&self.cache_dir, fs::Permissions::from_mode(0o700)).map_err(fail)
    }

    /// Fetch every URI in order; the message names the first URI that failed and why.
    pub async fn fetch_all(&self, uris: &[FetchUri], sandbox: &Path) -> Result<(), String> {
        if uris.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(sandbox)
            .map_err(|e| format!("cannot create sandbox {}: {e}", sandbox.display()))?;
        for uri in uris {
            let fetched = self
                .fetch_one(uri, sandbox)
                .await
                .map_err(|e| format!("Failed to fetch '{}': {e}", uri.value))?;
            tracing::info!(uri = %uri.value, path = %fetched.display(), "fetched");
        }
        Ok(())
    }

    /// Fetch one URI into `sandbox`; returns where it was saved.
    pub async fn fetch_one(&self, uri: &FetchUri, sandbox: &Path) -> Result<PathBuf, FetchError> {
        let source = Source::parse(&uri.value)?;
        let name = match &uri.output_file {
            Some(f) => {
                safe_relative(Path::new(f)).ok_or_else(|| FetchError::BadOutputFile(f.clone()))?
            }
            None => PathBuf::from(source.basename().ok_or(FetchError::NoName)?),
        };
        let dest = sandbox.join(&name);
        if let Some(parent) = name.parent() {
            mkdirs_beneath(sandbox, parent)?;
        }
        let out = Dest {
            sandbox: sandbox.to_path_buf(),
            name: name.clone(),
        };
        if uri.cache {
            let cached = self.cache_dir.join(cache_key(&uri.value));
            if cached.is_file() {
                tracing::debug!(uri = %uri.value, "fetch cache hit");
                copy_file(cached, out, self.max_bytes).await?;
            } else {
                self.download(&source, &out).await?;
                fs::create_dir_all(&self.cache_dir).map_err(io_err(&self.cache_dir))?;
                let tmp = self
                    .cache_dir
                    .join(format!(".{}.tmp", uuid::Uuid::new_v4()));
                copy_file(dest.clone(), Dest::plain(&tmp), self.max_bytes).await?;
                fs::rename(&tmp, &cached).map_err(io_err(&cached))?;
            }
        } else {
            self.download(&source, &out).await?;
        }
        if uri.executable {
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(io_err(&dest))?;
        } else if uri.extract {
            let archive = dest.clone();
            blocking(move || extract(&archive)).await?;
        }
        Ok(dest)
    }

    async fn download(&self, source: &Source, dest: &Dest) -> Result<(), FetchError> {
        match source {
            Source::Local(path) => copy_file(path.clone(), dest.clone(), self.max_bytes).await,
            Source::Http(uri) => self.download_http(uri, dest).await,
        }
    }

    async fn download_http(&self, uri: &hyper::Uri, out: &Dest) -> Result<(), FetchError> {
        let resp = tokio::time::timeout(
            IDLE_TIMEOUT,
            http_client::get_following(uri, Tls::Verify, MAX_REDIRECTS),
        )
        .await
        .map_err(|_| FetchError::Timeout(IDLE_TIMEOUT))??;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let declared = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_bytes) {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = resp.into_body();
        let dest = out.path();
        let mut file = tokio::fs::File::from_std(out.create()?);
        let mut total: u64 = 0;
        loop {
            let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
                .await
                .map_err(|_| FetchError::Timeout(IDLE_TIMEOUT))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(http_client::HttpError::from)?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > self.max_bytes {
                    drop(file);
                    let _ = fs::remove_file(&dest);
                    return Err(FetchError::TooLarge(self.max_bytes));
                }
                file.write_all(&data).await.map_err(io_err(&dest))?;
            }
        }
        file.flush().await.map_err(io_err(&dest))?;
        Ok(())
    }
}

/// Where a URI's bytes come from.
#[derive(Debug)]
enum Source {
    Local(PathBuf),
    Http(hyper::Uri),
}

impl Source {
    fn parse(value: &str) -> Result<Source, FetchError> {
        let value = value.trim();
        if value.starts_with("http://") || value.starts_with("https://") {
            return value
                .parse()
                .map(Source::Http)
                .map_err(|_| FetchError::Unsupported);
        }
        let path = match value.strip_prefix("file://") {
            Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
            None => value,
        };
        if path.starts_with('/') {
            Ok(Source::Local(PathBuf::from(path)))
        } else {
            Err(FetchError::Unsupported)
        }
    }

    /// The last path segment (without query or fragment).
    fn basename(&self) -> Option<String> {
        let name = match self {
            Source::Local(p) => p.file_name()?.to_str()?.to_string(),
            Source::Http(u) => u.path().rsplit('/').next()?.to_string(),
        };
        (!name.is_empty() && name != "." && name != "..").then_some(name)
    }
}

/// The cache file name of a URI: hex SHA-256 of its text.
pub(crate) fn cache_key(uri: &str) -> String {
    Sha256::digest(uri.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(FetchError::Worker(e.to_string())))
}

/// Where a fetched file is written: `name` below `sandbox`, created without following links.
#[derive(Clone, Debug)]
struct Dest {
    sandbox: PathBuf,
    name: PathBuf,
}

impl Dest {
    /// A file outside any sandbox (the agent's own cache).
    fn plain(path: &Path) -> Dest {
        Dest {
            sandbox: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            name: PathBuf::from(path.file_name().unwrap_or_default()),
        }
    }

    fn path(&self) -> PathBuf {
        self.sandbox.join(&self.name)
    }

    /// Create (or truncate) the file, refusing links on the way.
    fn create(&self) -> Result<fs::File, FetchError> {
        create_beneath(&self.sandbox, &self.name)
    }
}

/// Create or truncate `rel` below `dir` (0644) without following links.
fn create_beneath(dir: &Path, rel: &Path) -> Result<fs::File, FetchError> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
    open_beneath(dir, rel, flags, Mode::from_bits_truncate(0o644)).map_err(|source| {
        if matches!(source.raw_os_error(), Some(libc::ELOOP | libc::EXDEV)) {
            FetchError::Escape(rel.display().to_string())
        } else {
            FetchError::Io {
                path: dir.join(rel),
                source,
            }
        }
    })
}

/// Create the directories `rel` (relative, no `..`) below `dir`, refusing any symbolic link.
fn mkdirs_beneath(dir: &Path, rel: &Path) -> Result<(), FetchError> {
    let mut walked = dir.to_path_buf();
    for c in rel.components() {
        walked.push(c);
        match fs::symlink_metadata(&walked) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(FetchError::Escape(format!(
                    "{} (through a symbolic link)",
                    rel.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&walked).map_err(io_err(&walked))?
            }
            Err(e) => return Err(io_err(&walked)(e)),
        }
    }
    Ok(())
}

/// Copy a regular file of at most `limit` bytes (opened with this thread's credentials).
async fn copy_file(from: PathBuf, to: Dest, limit: u64) -> Result<(), FetchError> {
    blocking(move || {
        let mut src = fs::File::open(&from).map_err(io_err(&from))?;
        let meta = src.metadata().map_err(io_err(&from))?;
        if !meta.is_file() {
            return Err(FetchError::NotAFile(from));
        }
        if meta.len() > limit {
            return Err(FetchError::TooLarge(limit));
        }
        let mut out = to.create()?;
        io::copy(&mut (&mut src).take(limit), &mut out).map_err(io_err(&to.path()))?;
        Ok(())
    })
    .await
}

/// `p` as a relative path with no `..`, root or prefix (`.` components dropped); `None` otherwise.
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether the symlink `target` of the entry at `entry` (both archive-relative) stays inside.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = entry.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Extract `archive` beside itself when its name says it is one; other files are left alone.
pub(crate) fn extract(archive: &Path) -> Result<(), FetchError> {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some(dir) = archive.parent() else {
        return Ok(());
    };
    let open = || fs::File::open(archive).map_err(io_err(archive));
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        unpack_tar(flate2::read::GzDecoder::new(open()?), archive, dir)
    } else if name.ends_with(".tar.bz2") || name.ends_with(".tbz2") {
        unpack_tar(bzip2::read::MultiBzDecoder::new(open()?), archive, dir)
    } else if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        unpack_tar(lzma_rust2::XzReader::new(open()?, true), archive, dir)
    } else if name.ends_with(".zip") {
        unpack_zip(open()?, archive, dir)
    } else if name.ends_with(".tar") {
        unpack_tar(open()?, archive, dir)
    } else if let Some(stem) = name.strip_suffix(".gz").filter(|s| !s.is_empty()) {
        let out = dir.join(stem);
        let mut file = create_beneath(dir, Path::new(stem))?;
        let mut gz = flate2::read::GzDecoder::new(open()?).take(MAX_EXTRACT_BYTES + 1);
        let n = io::copy(&mut gz, &mut file).map_err(|source| FetchError::Archive {
            path: archive.to_path_buf(),
            source,
        })?;
        if n > MAX_EXTRACT_BYTES {
            drop(file);
            let _ = fs::remove_file(&out);
            return Err(FetchError::TooLarge(MAX_EXTRACT_BYTES));
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// Unpack a tar stream into `dir`, refusing entries (and link targets) that leave it.
fn unpack_tar<R: Read>(reader: R, archive: &Path, dir: &Path) -> Result<(), FetchError> {
    let bad = |source: io::Error| FetchError::Archive {
        path: archive.to_path_buf(),
        source,
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut total: u64 = 0;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = safe_relative(&raw) else {
            if raw.components().all(|c| matches!(c, Component::CurDir)) {
                continue; // the "./" entry of `tar -C dir .`
            }
            return Err(FetchError::Escape(shown));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| FetchError::Escape(shown.clone()))?;
            let inside = if kind.is_symlink() {
                link_stays_inside(&rel, &target)
            } else {
                safe_relative(&target).is_some()
            };
            if !inside {
                return Err(FetchError::Escape(format!(
                    "{shown} -> {}",
                    target.display()
                )));
            }
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > MAX_EXTRACT_BYTES {
            return Err(FetchError::TooLarge(MAX_EXTRACT_BYTES));
        }
        // `unpack_in` also refuses to write through symlinks that resolve outside `dir`.
        if !entry.unpack_in(dir).map_err(bad)? {
            return Err(FetchError::Escape(shown));
        }
    }
    Ok(())
}

/// Unpack a zip archive into `dir`, refusing entries that leave it. Symbolic links are refused
/// (zip has no portable link entries; archives that need links are tarballs); unix permission
/// bits (rwx, not set-id or sticky) are kept.
fn unpack_zip(file: fs::File, archive: &Path, dir: &Path) -> Result<(), FetchError> {
    let bad = |source: io::Error| FetchError::Archive {
        path: archive.to_path_buf(),
        source,
    };
    let zip_err = |e: zip::result::ZipError| bad(io::Error::other(e));
    let mut ar = zip::ZipArchive::new(io::BufReader::new(file)).map_err(zip_err)?;
    let mut total: u64 = 0;
    for i in 0..ar.len() {
        let mut entry = ar.by_index(i).map_err(zip_err)?;
        let shown = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        // `enclosed_name` makes absolute names relative; like tar entries, they are refused.
        let absolute = Path::new(&shown).is_absolute();
        let rel = entry.enclosed_name().as_deref().and_then(safe_relative);
        let Some(rel) = rel.filter(|_| !absolute) else {
            if shown.trim_start_matches("./").is_empty() {
                continue;
            }
            return Err(FetchError::Escape(shown));
        };
        if entry.is_symlink() {
            return Err(FetchError::Escape(format!("{shown} (a symbolic link)")));
        }
        // A symlink already in the sandbox (from another archive) must not redirect the write.
        let mut walked = dir.to_path_buf();
        for c in rel.components() {
            walked.push(c);
            if fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(FetchError::Escape(format!(
                    "{shown} (through a symbolic link)"
                )));
            }
        }
        let out = dir.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(io_err(&out))?;
            continue;
        }
        if let Some(parent) = rel.parent() {
            mkdirs_beneath(dir, parent)?;
        }
        let mut f = create_beneath(dir, &rel)?;
        let left = MAX_EXTRACT_BYTES.saturating_sub(total);
        let n = io::copy(&mut (&mut entry).take(left + 1), &mut f).map_err(bad)?;
        total = total.saturating_add(n);
        if total > MAX_EXTRACT_BYTES {
            drop(f);
            let _ = fs::remove_file(&out);
            return Err(FetchError::TooLarge(MAX_EXTRACT_BYTES));
        }
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            // Permission bits only: no set-user-id, set-group-id or sticky file from a download
            // (the zip reader clears them already; this does not depend on it).
            fs::set_permissions(&out, fs::Permissions::from_mode(mode & 0o777))
                .map_err(io_err(&out))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
