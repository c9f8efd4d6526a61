//! The Docker side of `meseta bench launch --docker-image`: the task's container, a busybox image
//! imported from the host's static busybox when none is given (no image can be pulled here), the
//! `docker run -d` baseline and the removal of everything the run left in the engine.

use anyhow::{bail, Context};
use meseta_api::container::{ContainerInfo, ContainerType, DockerInfo, DockerNetwork};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Label put on the baseline's containers (removed at the end).
const BASELINE_LABEL: &str = "meseta.bench=baseline";

/// The image the run uses; `built` when the benchmark imported it (removed at the end).
pub(crate) struct Image {
    pub tag: String,
    built: bool,
}

impl Image {
    /// `given`, or (empty) a busybox image imported from the host's static busybox.
    pub(crate) fn prepare(given: &str) -> anyhow::Result<Image> {
        if !given.is_empty() {
            return Ok(Image {
                tag: given.to_string(),
                built: false,
            });
        }
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context(
                "no --docker-image given and no busybox to build one (apt install busybox-static)",
            )?;
        let tag = format!("meseta-bench/busybox:{}", std::process::id());
        let dir = tempfile::tempdir().context("tempdir")?;
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::copy(busybox, root.join("bin/busybox")).context("copy busybox")?;
        for applet in ["sh", "sleep", "true"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        let tar = dir.path().join("rootfs.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."))?;
        run(Command::new("docker").arg("import").arg(&tar).arg(&tag))?;
        Ok(Image { tag, built: true })
    }

    /// Remove the image if the benchmark built it.
    pub(crate) fn remove(&self) {
        if self.built {
            let _ = Command::new("docker")
                .args(["rmi", "-f", &self.tag])
                .output();
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The container of a benchmark task: `image`, host networking.
pub(crate) fn container(image: &str) -> ContainerInfo {
    ContainerInfo {
        kind: ContainerType::Docker,
        docker: Some(DockerInfo {
            image: image.to_string(),
            network: Some(DockerNetwork::Host),
            ..DockerInfo::default()
        }),
        ..ContainerInfo::default()
    }
}

/// `docker run -d IMAGE /bin/sh -c command` with the cgroup limits the agent gives a task of
/// `cpus` and `mem_mib` (CPU shares, CFS quota, memory without swap: a small quota throttles the
/// container's own start, so the baseline carries it too), `n` times one after another (each
/// returns once the container started); returns each run's latency. The containers are removed
/// afterwards.
pub(crate) fn bare_runs(
    image: &str,
    command: &str,
    n: usize,
    cpus: f64,
    mem_mib: f64,
) -> anyhow::Result<Vec<Duration>> {
    let shares = ((cpus * 1024.0) as i64).max(2).to_string();
    let quota = ((cpus * 100_000.0) as i64).max(1_000).to_string();
    let mem = format!("{}m", mem_mib.ceil() as u64);
    let mut latencies = Vec::with_capacity(n);
    let mut result = Ok(());
    for _ in 0..n {
        let t0 = Instant::now();
        let out = Command::new("docker")
            .args(["run", "-d", "--network", "host", "--label", BASELINE_LABEL])
            .args([
                "--cpu-shares",
                &shares,
                "--cpu-period",
                "100000",
                "--cpu-quota",
                &quota,
            ])
            .args(["--memory", &mem, "--memory-swap", &mem])
            .args([image, "/bin/sh", "-c", command])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => latencies.push(t0.elapsed()),
            Ok(o) => {
                result = Err(anyhow::anyhow!(
                    "docker run failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                break;
            }
            Err(e) => {
                result = Err(e).context("cannot run docker");
                break;
            }
        }
    }
    remove_labelled(BASELINE_LABEL);
    result.map(|()| latencies)
}

/// Remove every container carrying `label` (`key=value`).
pub(crate) fn remove_labelled(label: &str) {
    let ids = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdout(Stdio::null())
            .output();
    }
}
