//! Docker helpers of the end-to-end tests: whether an engine and busybox are here, a test image
//! imported from a busybox rootfs (no image can be pulled), and the cleanup of the containers a
//! test's agents left.

use std::process::Command;
use std::time::Duration;

use super::{wait_for, Cluster};

/// Whether the engine and busybox are here; `false` (skip) prints why, panics under `CI=true`.
pub fn docker_ready() -> bool {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let busybox = busybox_path().is_some();
    if engine && busybox {
        return true;
    }
    let why = if engine {
        "busybox (Debian busybox-static) is not installed"
    } else {
        "no Docker engine answers (docker info)"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("docker tests cannot run: {why}");
    }
    eprintln!("SKIP docker tests: {why}");
    false
}

pub fn busybox_path() -> Option<std::path::PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// A test image and the cleanup of everything a test left in the engine.
pub struct Image {
    pub tag: String,
    pub agents: Vec<String>,
}

impl Image {
    /// `meseta-test/busybox:<name>-<pid>` from a rootfs with busybox and its applets.
    pub fn build(name: &str) -> Image {
        let tag = format!("meseta-test/busybox:{name}-{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(root.join("tmp")).expect("tmp");
        // As in real images: /tmp is everyone's (containers run as the task user).
        std::fs::set_permissions(
            root.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("tmp mode");
        std::fs::copy(busybox_path().expect("busybox"), bin.join("busybox")).expect("copy");
        for applet in [
            "sh", "sleep", "cat", "echo", "httpd", "head", "tr", "dd", "mkdir", "ls", "env",
            "test", "touch", "rm", "true", "false", "wget", "id",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
        }
        let tar = dir.path().join("rootfs.tar");
        run(Command::new("tar").args([
            "-C",
            root.to_str().expect("utf8"),
            "-cf",
            tar.to_str().expect("utf8"),
            ".",
        ]));
        run(Command::new("docker").args(["import", tar.to_str().expect("utf8"), &tag]));
        Image {
            tag,
            agents: Vec::new(),
        }
    }

    /// Remove the containers of the agents of `c` at the end too.
    pub fn track(&mut self, c: &Cluster) {
        for i in 0..c.agent_ports.len() {
            if let Ok(id) = std::fs::read_to_string(c.agent_work_dir(i).join("agent_id")) {
                self.agents.push(id.trim().to_string());
            }
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for a in &self.agents {
            for id in containers_of(a) {
                let _ = Command::new("docker").args(["rm", "-f", &id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ids of the containers labelled with agent `agent_id` (all states).
pub fn containers_of(agent_id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=meseta.agent_id={agent_id}"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines().map(str::to_string).collect()
}

pub fn inspect(id: &str, format: &str) -> String {
    Command::new("docker")
        .args(["inspect", "--format", format, id])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The id of agent `i` of `c` (once it registered).
pub fn agent_id(c: &Cluster, i: usize) -> String {
    wait_for("the agent id", Duration::from_secs(10), || {
        std::fs::read_to_string(c.agent_work_dir(i).join("agent_id"))
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// A unix socket relaying to the host's engine (`/var/run/docker.sock`): an agent given it as
/// `--docker-socket` loses its engine when the relay stops, and finds it again when it starts.
pub struct EngineRelay {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineRelay {
    pub fn start(path: &std::path::Path) -> EngineRelay {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the relay socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, cs) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = down.set_nonblocking(false);
                let Ok(up) = UnixStream::connect("/var/run/docker.sock") else {
                    continue;
                };
                let pipe = |mut from: UnixStream, mut to: UnixStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let mut list = cs.lock().expect("lock");
                for s in [&down, &up] {
                    if let Ok(c) = s.try_clone() {
                        list.push(c);
                    }
                }
                drop(list);
                if let (Ok(d2), Ok(u2)) = (down.try_clone(), up.try_clone()) {
                    pipe(down, u2);
                    pipe(up, d2);
                }
            }
        });
        EngineRelay {
            path: path.to_path_buf(),
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// The engine "goes away": no new connection, every open one cut.
    pub fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        for c in self.conns.lock().expect("lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for EngineRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
