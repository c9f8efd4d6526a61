//! Unit tests of the fetcher: local and HTTP sources, cache, archives and path traversal.

use super::*;
use std::io::Write;

fn uri(value: &str) -> FetchUri {
    FetchUri {
        value: value.to_string(),
        extract: true,
        executable: false,
        cache: false,
        output_file: None,
    }
}

/// A tar holding `data/x.txt` = `hello` and, with `link`, the symlink `data/link -> x.txt`.
fn tar_bytes(link: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "data/x.txt", &b"hello"[..])
        .expect("append");
    if link {
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        l.set_cksum();
        b.append_link(&mut l, "data/link", "x.txt").expect("link");
    }
    b.into_inner().expect("tar")
}

/// A tar.gz holding `data/x.txt` = `hello` and the symlink `data/link -> x.txt`.
fn good_tgz(path: &Path) {
    let file = fs::File::create(path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(&tar_bytes(true)).expect("gz");
    gz.finish().expect("gz").flush().expect("flush");
}

/// A plain tar with one entry whose raw name is `name` (bypassing the builder's own checks).
fn raw_tar(path: &Path, name: &str, kind: tar::EntryType, link: Option<&str>) {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let body: &[u8] = if link.is_some() { b"" } else { b"evil" };
    h.set_size(body.len() as u64);
    h.set_cksum();
    let mut out = Vec::new();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out.resize(512 + 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    fs::write(path, out).expect("write tar");
}

fn fetcher(dir: &Path) -> Fetcher {
    Fetcher::new(dir)
}

#[tokio::test]
async fn local_tgz_is_copied_and_extracted() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("bundle.tar.gz");
    good_tgz(&src);
    let sandbox = dir.path().join("sb");
    let f = fetcher(dir.path());
    let u = uri(&format!("file://{}", src.display()));
    f.fetch_all(&[u], &sandbox).await.expect("fetch");
    assert!(sandbox.join("bundle.tar.gz").is_file(), "archive kept");
    assert_eq!(
        fs::read_to_string(sandbox.join("data/x.txt")).expect("x"),
        "hello"
    );
    assert_eq!(
        fs::read_to_string(sandbox.join("data/link")).expect("link"),
        "hello"
    );
}

#[tokio::test]
async fn no_extract_executable_and_output_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("bundle.tgz");
    good_tgz(&src);
    let sandbox = dir.path().join("sb");
    let f = fetcher(dir.path());
    let mut keep = uri(src.to_str().expect("utf8"));
    keep.extract = false;
    keep.output_file = Some("sub/a.tgz".into());
    let mut exe = uri(src.to_str().expect("utf8"));
    exe.executable = true;
    exe.output_file = Some("run.sh".into());
    f.fetch_all(&[keep, exe], &sandbox).await.expect("fetch");
    assert!(sandbox.join("sub/a.tgz").is_file());
    assert!(!sandbox.join("data").exists(), "nothing extracted");
    let mode = fs::metadata(sandbox.join("run.sh"))
        .expect("run.sh")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[tokio::test]
async fn gz_file_is_gunzipped_beside_itself() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("conf.json.gz");
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(&src).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(b"{\"a\":1}").expect("write");
    gz.finish().expect("finish");
    let sandbox = dir.path().join("sb");
    fetcher(dir.path())
        .fetch_all(&[uri(src.to_str().expect("utf8"))], &sandbox)
        .await
        .expect("fetch");
    assert_eq!(
        fs::read_to_string(sandbox.join("conf.json")).expect("json"),
        "{\"a\":1}"
    );
}

#[test]
fn archive_entries_escaping_the_sandbox_are_rejected() {
    let cases = [
        ("../evil", tar::EntryType::Regular, None),
        ("a/../../evil", tar::EntryType::Regular, None),
        ("/etc/evil", tar::EntryType::Regular, None),
        ("lnk", tar::EntryType::Symlink, Some("/etc")),
        ("a/lnk", tar::EntryType::Symlink, Some("../../etc")),
        ("hard", tar::EntryType::Link, Some("../x")),
    ];
    for (name, kind, link) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let sb = dir.path().join("sb");
        fs::create_dir_all(&sb).expect("sb");
        let archive = sb.join("bad.tar");
        raw_tar(&archive, name, kind, link);
        let err = extract(&archive).expect_err(name);
        assert!(matches!(err, FetchError::Escape(_)), "{name}: {err}");
        assert!(!dir.path().join("evil").exists());
        assert!(!sb.join("lnk").exists() && !sb.join("a/lnk").exists());
    }
    // A relative link that stays inside is fine.
    let dir = tempfile::tempdir().expect("tmp");
    let archive = dir.path().join("ok.tar");
    raw_tar(&archive, "a/lnk", tar::EntryType::Symlink, Some("../b"));
    extract(&archive).expect("inside link");
}

#[test]
fn bzip2_and_xz_tarballs_are_extracted() {
    let tar = tar_bytes(false);
    let bz2 = || {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        enc.write_all(&tar).expect("bz2");
        enc.finish().expect("bz2")
    };
    let xz = || {
        let mut enc = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1))
            .expect("xz");
        enc.write_all(&tar).expect("xz");
        enc.finish().expect("xz")
    };
    for (name, bytes) in [
        ("a.tar.bz2", bz2()),
        ("b.tbz2", bz2()),
        ("c.tar.xz", xz()),
        ("d.txz", xz()),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let archive = dir.path().join(name);
        fs::write(&archive, bytes).expect("write");
        extract(&archive).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = fs::read_to_string(dir.path().join("data/x.txt")).expect(name);
        assert_eq!(got, "hello", "{name}");
    }
    // Not what its name says: an error naming the archive, nothing extracted.
    let dir = tempfile::tempdir().expect("tmp");
    let archive = dir.path().join("broken.tar.xz");
    fs::write(&archive, b"not xz at all").expect("write");
    let err = extract(&archive).expect_err("broken");
    assert!(matches!(err, FetchError::Archive { .. }), "{err}");
    assert!(!dir.path().join("data").exists());
}

/// A zip with `bin/run.sh` (mode 0755), `etc/` and `etc/conf.txt`.
fn good_zip(path: &Path) {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(fs::File::create(path).expect("create"));
    let opts = SimpleFileOptions::default();
    w.start_file("bin/run.sh", opts.unix_permissions(0o755))
        .expect("file");
    w.write_all(b"#!/bin/sh\necho hi\n").expect("write");
    w.add_directory("etc/", opts).expect("dir");
    w.start_file("etc/conf.txt", opts.unix_permissions(0o600))
        .expect("file");
    w.write_all(b"k=v").expect("write");
    w.finish().expect("zip");
}

#[test]
fn zip_archives_are_extracted_with_their_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let archive = dir.path().join("app.zip");
    good_zip(&archive);
    extract(&archive).expect("zip");
    let run = dir.path().join("bin/run.sh");
    assert_eq!(
        fs::read_to_string(&run).expect("run"),
        "#!/bin/sh\necho hi\n"
    );
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&run), 0o755);
    assert_eq!(mode(&dir.path().join("etc/conf.txt")), 0o600);
    assert!(dir.path().join("etc").is_dir());
}

#[test]
fn zip_entries_escaping_the_sandbox_or_links_are_rejected() {
    use zip::write::SimpleFileOptions;
    for (name, link) in [("../evil", false), ("/tmp/evil", false), ("lnk", true)] {
        let dir = tempfile::tempdir().expect("tmp");
        let sb = dir.path().join("sb");
        fs::create_dir_all(&sb).expect("sb");
        let archive = sb.join("bad.zip");
        let mut w = zip::ZipWriter::new(fs::File::create(&archive).expect("create"));
        if link {
            w.add_symlink(name, "/etc", SimpleFileOptions::default())
                .expect("link");
        } else {
            w.start_file(name, SimpleFileOptions::default())
                .expect("file");
            w.write_all(b"evil").expect("write");
        }
        w.finish().expect("zip");
        let err = extract(&archive).expect_err(name);
        assert!(matches!(err, FetchError::Escape(_)), "{name}: {err}");
        assert!(!dir.path().join("evil").exists() && !sb.join("lnk").exists());
    }
    // A link another archive left in the sandbox is not written through.
    let dir = tempfile::tempdir().expect("tmp");
    let (sb, outside) = (dir.path().join("sb"), dir.path().join("outside"));
    fs::create_dir_all(&sb).expect("sb");
    fs::create_dir_all(&outside).expect("outside");
    std::os::unix::fs::symlink(&outside, sb.join("etc")).expect("link");
    good_zip(&sb.join("app.zip"));
    let err = extract(&sb.join("app.zip")).expect_err("through a link");
    assert!(matches!(err, FetchError::Escape(_)), "{err}");
    assert!(!outside.join("conf.txt").exists());
}

#[tokio::test]
async fn cache_hit_survives_the_source_going_away() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("tool.bin");
    fs::write(&src, b"v1").expect("src");
    let f = fetcher(dir.path());
    let mut u = uri(&format!("file://{}", src.display()));
    u.cache = true;
    f.fetch_all(std::slice::from_ref(&u), &dir.path().join("sb1"))
        .await
        .expect("first");
    let cached = dir.path().join("fetch-cache").join(cache_key(&u.value));
    assert_eq!(fs::read(&cached).expect("cached"), b"v1");
    fs::remove_file(&src).expect("rm");
    let sb2 = dir.path().join("sb2");
    f.fetch_all(std::slice::from_ref(&u), &sb2)
        .await
        .expect("from cache");
    assert_eq!(fs::read(sb2.join("tool.bin")).expect("copy"), b"v1");
    // Without cache the missing source fails, naming the URI.
    u.cache = false;
    let err = f
        .fetch_all(&[u.clone()], &dir.path().join("sb3"))
        .await
        .expect_err("gone");
    assert!(err.contains(&u.value), "{err}");
}

#[tokio::test]
async fn bad_uris_fail_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = fetcher(dir.path());
    let sb = dir.path().join("sb");
    for (value, out, why) in [
        ("ftp://h/x.tgz", None, "unsupported"),
        ("relative/x", None, "unsupported"),
        ("/nonexistent/x", None, "No such file"),
        ("/tmp", None, "not a regular file"),
        ("http://127.0.0.1:1/", None, "file name"),
        ("/etc/hostname", Some("../x"), "output_file"),
    ] {
        let mut u = uri(value);
        u.output_file = out.map(str::to_string);
        let err = f.fetch_all(&[u], &sb).await.expect_err(value);
        assert!(err.contains(why) && err.contains(value), "{value}: {err}");
    }
}

#[tokio::test]
async fn http_download_limit_and_status() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/files/app.tgz", get(|| async { b"0123456789".to_vec() }))
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::temporary("/files/app.tgz") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tmp");
    let sb = dir.path().join("sb");
    let mut f = fetcher(dir.path());
    let mut u = uri(&format!("http://{addr}/moved"));
    u.extract = false;
    u.output_file = Some("app.bin".into());
    f.fetch_all(std::slice::from_ref(&u), &sb)
        .await
        .expect("redirected download");
    assert_eq!(fs::read(sb.join("app.bin")).expect("file"), b"0123456789");

    let err = f
        .fetch_all(&[uri(&format!("http://{addr}/missing.tgz"))], &sb)
        .await
        .expect_err("404");
    assert!(err.contains("HTTP status 404"), "{err}");

    f.max_bytes = 5;
    let err = f.fetch_all(&[u], &sb).await.expect_err("too large");
    assert!(err.contains("larger than the limit"), "{err}");
}

#[test]
fn link_targets_are_checked_lexically() {
    assert!(link_stays_inside(Path::new("a/b/l"), Path::new("../c")));
    assert!(link_stays_inside(Path::new("a/l"), Path::new("./x/../y")));
    assert!(!link_stays_inside(Path::new("l"), Path::new("../x")));
    assert!(!link_stays_inside(Path::new("a/l"), Path::new("/x")));
    assert_eq!(
        safe_relative(Path::new("./a/b")),
        Some(PathBuf::from("a/b"))
    );
    assert_eq!(safe_relative(Path::new("a/../b")), None);
    assert_eq!(cache_key("x").len(), 64);
}

#[tokio::test]
async fn links_already_in_the_sandbox_do_not_redirect_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("conf.json"), "keep").expect("write");
    let sandbox = dir.path().join("sb");
    fs::create_dir(&sandbox).expect("mkdir");
    // Links an earlier archive (or a chain of in-sandbox links) could have left there.
    std::os::unix::fs::symlink(&outside, sandbox.join("x")).expect("ln");
    std::os::unix::fs::symlink(outside.join("conf.json"), sandbox.join("conf.json")).expect("ln");
    std::os::unix::fs::symlink(outside.join("plain"), sandbox.join("plain")).expect("ln");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("plain"), "payload").expect("write");
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(src.join("conf.json.gz")).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(b"payload").expect("write");
    gz.finish().expect("finish");
    let f = fetcher(dir.path());
    let plain = src.join("plain").display().to_string();
    let mut nested = uri(&plain);
    nested.output_file = Some("x/evil".into());
    let gz = uri(&src.join("conf.json.gz").display().to_string());
    for u in [nested, uri(&plain), gz] {
        let err = f.fetch_all(std::slice::from_ref(&u), &sandbox).await;
        assert!(err.is_err(), "{u:?} was written through a link");
    }
    assert!(!outside.join("evil").exists());
    assert!(!outside.join("plain").exists());
    assert_eq!(
        fs::read_to_string(outside.join("conf.json")).expect("read"),
        "keep"
    );
}
