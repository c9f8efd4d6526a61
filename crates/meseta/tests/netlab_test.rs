//! The multi-host fault lab (`meseta_testkit::netlab`) on this machine: hosts reach each other over
//! TCP and the faults cut exactly what they say and are undone exactly; a 3-member etcd cluster
//! keeps its majority through a kill -9 and a partition and the cut-off member catches up; nothing
//! is left behind by a dropped lab, a panicking test or a killed test run.
//!
//! Needs root, iproute2, iptables (and `/usr/bin/etcd` for the etcd test): skipped with the
//! reason on a laptop, failed under `CI=true`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use meseta_testkit::netlab::{self, EtcdMembers, Host, Lab};

/// Every `Lab::new` sweeps stale labs; the stale-lab test holds this exclusively while a stale lab
/// exists on purpose, so that its own sweep is the one under test.
static SWEEP: RwLock<()> = RwLock::new(());

fn new_lab() -> Lab {
    let _shared = SWEEP.read().unwrap_or_else(|e| e.into_inner());
    Lab::new().expect("create lab")
}

/// Accept connections forever, greeting each with `hi`.
fn serve(listener: TcpListener) -> SocketAddr {
    let addr = listener.local_addr().expect("listener address");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"hi");
        }
    });
    addr
}

/// Read the greeting over `conn`.
fn greeted(conn: std::io::Result<TcpStream>) -> Result<(), String> {
    let mut conn = conn.map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    (&buf == b"hi").then_some(()).ok_or("wrong greeting".into())
}

/// Whether `from` reaches the greeter at `to` (connect timeout 1 s).
fn reach(from: &Host, to: SocketAddr) -> Result<(), String> {
    greeted(from.connect_tcp(to, Duration::from_secs(1)))
}

/// Whether the test process (through the lab's gateway) reaches the greeter at `to`.
fn reach_from_test(to: SocketAddr) -> Result<(), String> {
    greeted(TcpStream::connect_timeout(&to, Duration::from_secs(1)))
}

/// Retry `check` for up to 5 s (a link just brought up re-resolves its neighbours).
fn soon(what: &str, check: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn chain(host: &Host) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", host.netns(), "iptables", "-w", "-S"])
        .output()
        .expect("run iptables");
    assert!(out.status.success(), "iptables -S in {}", host.netns());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn partition_cuts_two_hosts_both_ways_and_heal_restores_them() {
    if !netlab::available_or_skip() {
        return;
    }
    let lab = new_lab();
    let a = lab.add_host("a").expect("host a");
    let b = lab.add_host("b").expect("host b");
    let c = lab.add_host("c").expect("host c");
    assert_ne!(a.ip(), b.ip());
    let on_a = serve(a.bind_tcp(0).expect("listen on a"));
    let on_b = serve(b.bind_tcp(0).expect("listen on b"));
    assert_eq!(on_a.ip(), a.ip());
    let rules_before = (chain(&a), chain(&b));

    reach(&b, on_a).expect("b reaches a");
    reach(&a, on_b).expect("a reaches b");
    reach_from_test(on_a).expect("the test process reaches a");

    lab.partition(&a, &b).expect("partition");
    lab.partition(&b, &a).expect("partition again is a no-op");
    assert!(reach(&b, on_a).is_err(), "b reached a across the partition");
    assert!(reach(&a, on_b).is_err(), "a reached b across the partition");
    reach(&c, on_a).expect("c is not partitioned from a");
    reach(&c, on_b).expect("c is not partitioned from b");
    reach_from_test(on_a).expect("the test process still reaches a");

    lab.heal(&a, &b).expect("heal");
    lab.heal(&a, &b).expect("heal again is a no-op");
    assert_eq!((chain(&a), chain(&b)), rules_before, "heal left rules");
    reach(&b, on_a).expect("b reaches a after heal");
    reach(&a, on_b).expect("a reaches b after heal");
}

#[test]
fn isolate_cuts_a_host_from_the_others_and_link_down_from_everything() {
    if !netlab::available_or_skip() {
        return;
    }
    let lab = new_lab();
    let a = lab.add_host("a").expect("host a");
    let b = lab.add_host("b").expect("host b");
    let on_a = serve(a.bind_tcp(0).expect("listen on a"));
    let on_b = serve(b.bind_tcp(0).expect("listen on b"));
    let rules_before = chain(&a);

    a.isolate().expect("isolate");
    assert!(reach(&b, on_a).is_err(), "b reached the isolated a");
    assert!(reach(&a, on_b).is_err(), "the isolated a reached b");
    reach_from_test(on_a).expect("the test process still reaches the isolated a");
    a.rejoin().expect("rejoin");
    assert_eq!(chain(&a), rules_before, "rejoin left rules");
    reach(&b, on_a).expect("b reaches a after rejoin");

    a.link_down().expect("link down");
    assert!(reach(&b, on_a).is_err(), "b reached a with its link down");
    assert!(
        reach_from_test(on_a).is_err(),
        "the test process reached a with its link down"
    );
    a.link_up().expect("link up");
    soon("b reaches a after link up", || reach(&b, on_a));
    soon("the test process reaches a after link up", || {
        reach_from_test(on_a)
    });
}

/// Retry a put through member `i` until it succeeds (an election may be under way).
async fn put_soon(etcd: &EtcdMembers, i: usize, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match etcd.put(i, key, value).await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("put {key} via member {i}: {e:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Wait until member `i`'s own copy of `key` is `want`.
async fn local_soon(etcd: &EtcdMembers, i: usize, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = etcd.get_local(i, key).await;
        if matches!(&got, Ok(Some(v)) if v == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} has {key} = {got:?}, want {want:?}; log:\n{}",
            etcd.log_tail(i, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_majority_survives_a_kill_and_a_partition_and_the_cut_member_catches_up() {
    if !netlab::available_or_skip() {
        return;
    }
    if let Err(why) = EtcdMembers::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why} and CI=true"
        );
        eprintln!("skipping: {why}");
        return;
    }
    let lab = new_lab();
    let hosts: Vec<Host> = ["e0", "e1", "e2"]
        .iter()
        .map(|n| lab.add_host(n).expect("add host"))
        .collect();
    let mut etcd = lab
        .etcd_cluster(&hosts.iter().collect::<Vec<_>>())
        .await
        .expect("etcd cluster");
    assert_eq!(
        etcd.client_urls(),
        hosts
            .iter()
            .map(|h| format!("http://{}:2379", h.ip()))
            .collect::<Vec<_>>()
    );

    // Written through one member, readable from every member.
    etcd.put(0, "k", "v1").await.expect("put v1");
    for i in 0..3 {
        local_soon(&etcd, i, "k", "v1").await;
    }
    assert_eq!(etcd.get(2, "k").await.expect("get"), Some("v1".into()));
    assert_eq!(etcd.get(1, "absent").await.expect("get"), None);

    // kill -9 one member: the other two still take writes.
    etcd.kill9(2).expect("kill member 2");
    assert!(!etcd.is_running(2));
    put_soon(&etcd, 0, "k", "v2").await;
    assert_eq!(etcd.get(1, "k").await.expect("get"), Some("v2".into()));
    etcd.restart(2).await.expect("restart member 2");
    local_soon(&etcd, 2, "k", "v2").await;

    // Partition member 2 from the other two: the majority takes writes, member 2 does not.
    lab.partition(&hosts[2], &hosts[0]).expect("partition");
    lab.partition(&hosts[2], &hosts[1]).expect("partition");
    put_soon(&etcd, 0, "k", "v3").await;
    assert!(
        etcd.put(2, "minority", "x").await.is_err(),
        "a write through the cut-off member succeeded"
    );
    assert_eq!(
        etcd.get_local(2, "k").await.expect("local read"),
        Some("v2".into()),
        "the cut-off member got the majority's write"
    );

    // Heal: it catches up.
    lab.heal(&hosts[2], &hosts[0]).expect("heal");
    lab.heal(&hosts[2], &hosts[1]).expect("heal");
    local_soon(&etcd, 2, "k", "v3").await;
    put_soon(&etcd, 2, "k", "v4").await;
    local_soon(&etcd, 0, "k", "v4").await;
}

/// What of lab `id` exists: namespaces, interfaces, host FORWARD rules, the record.
fn leftovers(id: &str) -> Vec<String> {
    let text = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .output()
            .expect("run a listing");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut found: Vec<String> = text("ip", &["netns", "list"])
        .lines()
        .chain(text("ip", &["-o", "link", "show"]).lines())
        .chain(text("iptables", &["-w", "-S", "FORWARD"]).lines())
        .filter(|l| l.contains(&format!("netlab-{id}-")) || l.contains(&format!("nl{id}")))
        .map(str::to_owned)
        .collect();
    let records = std::fs::read_dir("/run/netlab").into_iter().flatten();
    for entry in records.flatten() {
        let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if body.lines().any(|l| l == format!("id={id}")) {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A lab with two hosts and a process in `a` that escaped the group of the `Proc` that started it.
fn busy_lab(log: &std::path::Path) -> (Lab, netlab::Proc, u32) {
    let lab = new_lab();
    let a = lab.add_host("a").expect("host a");
    lab.add_host("b").expect("host b");
    let proc = a
        .spawn("sh", ["-c", "setsid sleep 600 & exec sleep 600"], &[], log)
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(5);
    let escaped = loop {
        let pids = Command::new("ip")
            .args(["netns", "pids", a.netns()])
            .output()
            .expect("ip netns pids");
        let pids: Vec<u32> = String::from_utf8_lossy(&pids.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| *p != proc.pid())
            .collect();
        if let Some(p) = pids.first() {
            break *p;
        }
        assert!(Instant::now() < deadline, "the setsid sleep did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    (lab, proc, escaped)
}

#[test]
fn dropping_a_lab_leaves_nothing_behind_even_when_the_test_panics() {
    if !netlab::available_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("sleep.log");
    let (lab, mut proc, escaped) = busy_lab(&log);
    let id = lab.id().to_owned();
    assert!(proc.is_running());
    // 2 namespaces, the bridge, 2 veths, the FORWARD rule, the record.
    assert_eq!(leftovers(&id).len(), 7, "{:?}", leftovers(&id));
    drop(lab);
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(
        proc.wait_exit(Duration::from_secs(5)).is_some(),
        "process survived the lab"
    );
    assert!(dead(escaped), "the escaped process survived the lab");

    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    let panicked = std::thread::spawn(move || {
        let (lab, _proc, escaped) = busy_lab(&log2);
        tx.send((lab.id().to_owned(), escaped)).expect("send id");
        panic!("a failing test (on purpose)");
    })
    .join();
    assert!(panicked.is_err());
    let (id, escaped) = rx.recv().expect("lab id");
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(dead(escaped), "the escaped process survived the panic");
}

/// Run by `cleanup_stale_removes_the_lab_of_a_killed_test_run` in a child process: makes a lab,
/// says its id, and waits to be killed.
#[test]
#[ignore = "a child process of cleanup_stale_removes_the_lab_of_a_killed_test_run"]
fn stale_lab_maker() {
    if std::env::var("NETLAB_STALE_MAKER").is_err() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (lab, _proc, escaped) = busy_lab(&dir.path().join("sleep.log"));
    println!("LAB {} {escaped}", lab.id());
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn cleanup_stale_removes_the_lab_of_a_killed_test_run() {
    if !netlab::available_or_skip() {
        return;
    }
    let _exclusive = SWEEP.write().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "stale_lab_maker", "--ignored", "--nocapture"])
        .env("NETLAB_STALE_MAKER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the lab maker");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("LAB "));
    child.kill().expect("kill -9 the lab maker");
    child.wait().expect("reap the lab maker");
    let line = line.expect("the lab maker printed its lab");
    let mut words = line.split_whitespace().skip(1);
    let id = words.next().expect("lab id").to_owned();
    let escaped: u32 = words.next().and_then(|p| p.parse().ok()).expect("pid");
    assert_eq!(leftovers(&id).len(), 7, "{:?}", leftovers(&id));

    let removed = netlab::cleanup_stale();
    assert!(removed.contains(&id), "{removed:?} lacks {id}");
    assert_eq!(leftovers(&id), Vec::<String>::new());
    assert!(dead(escaped), "the stale lab's process survived");
}
