//! Unit tests of the health checker: the state machine and each kind of check.

use super::*;
use meseta_api::agent::TcpCheck;
use std::path::PathBuf;

#[test]
fn tracker_reports_transitions_only_and_kills_after_n_failures() {
    let mut t = Tracker::new(None, 3);
    let step = |report, kill| Step { report, kill };
    assert_eq!(t.observe(false, true), step(None, false), "grace: ignored");
    assert_eq!(t.observe(true, true), step(Some(true), false));
    assert_eq!(t.observe(true, false), step(None, false));
    // After a success the grace period no longer hides failures.
    assert_eq!(t.observe(false, true), step(Some(false), false));
    assert_eq!(t.observe(false, false), step(None, false));
    assert_eq!(
        t.observe(true, false),
        step(Some(true), false),
        "counter reset"
    );
    assert_eq!(t.observe(false, false), step(Some(false), false));
    assert_eq!(t.observe(false, false), step(None, false));
    assert_eq!(t.observe(false, false), step(None, true));
}

#[test]
fn tracker_without_kill_and_after_grace() {
    let mut t = Tracker::new(None, 0);
    assert_eq!(
        t.observe(false, false),
        Step {
            report: Some(false),
            kill: false
        },
        "unknown -> unhealthy once the grace period is over"
    );
    for _ in 0..10 {
        assert!(!t.observe(false, false).kill, "0 never kills");
    }
    // A reattached task that was healthy is past its grace period.
    let mut t = Tracker::new(Some(true), 1);
    assert_eq!(
        t.observe(false, true),
        Step {
            report: Some(false),
            kill: true
        }
    );
}

fn check(kind: HealthCheckKind) -> HealthCheck {
    HealthCheck {
        kind,
        http: None,
        tcp: None,
        command: None,
        delay_seconds: 0.0,
        interval_seconds: 1.0,
        timeout_seconds: 5.0,
        consecutive_failures: 3,
        grace_period_seconds: 0.0,
    }
}

fn free_port() -> u32 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    u32::from(l.local_addr().expect("addr").port())
}

#[tokio::test]
async fn tcp_check_connects_to_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = u32::from(listener.local_addr().expect("addr").port());
    let mut c = check(HealthCheckKind::Tcp);
    c.tcp = Some(TcpCheck { port });
    let ok = check_once(&c, None).await;
    assert!(ok.ok, "{ok:?}");
    drop(listener);
    c.tcp = Some(TcpCheck { port: free_port() });
    let bad = check_once(&c, None).await;
    assert!(!bad.ok);
    assert!(
        bad.message.starts_with("TCP connect to 127.0.0.1:"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn http_check_statuses() {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "t") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = u32::from(listener.local_addr().expect("addr").port());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut c = check(HealthCheckKind::Http);
    let http = |path: &str, statuses: Vec<u32>| {
        Some(HttpCheck {
            scheme: "http".into(),
            port,
            path: path.into(),
            statuses,
        })
    };
    c.http = http("/health", vec![]);
    let o = check_once(&c, None).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        o.message,
        format!("HTTP GET http://127.0.0.1:{port}/health returned 200")
    );
    c.http = http("/broken", vec![]);
    let o = check_once(&c, None).await;
    assert!(!o.ok);
    assert!(o.message.ends_with("/broken returned 500"), "{o:?}");
    c.http = http("/teapot", vec![418]);
    assert!(check_once(&c, None).await.ok, "listed status is healthy");
    c.http = http("/health", vec![204]);
    assert!(!check_once(&c, None).await.ok, "200 not listed");
    c.http = Some(HttpCheck {
        scheme: "http".into(),
        port: free_port(),
        path: "/".into(),
        statuses: vec![],
    });
    let o = check_once(&c, None).await;
    assert!(!o.ok && o.message.contains("failed"), "{o:?}");
}

fn launch_spec(sandbox: PathBuf) -> LaunchSpec {
    let spec = crate::tasks::tests::spec("hc", "cpus:1;mem:32;ports:[31001-31001]");
    crate::tasks::launch_spec(
        &spec,
        sandbox.parent().expect("parent"),
        &meseta_types::AgentId::new("ag"),
        "h",
        String::new(),
    )
}

#[tokio::test]
async fn command_check_runs_in_the_sandbox_with_the_task_env() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).expect("sandbox");
    let launch = launch_spec(sandbox.clone());
    let mut c = check(HealthCheckKind::Command);
    c.command = Some(HealthCommand {
        value: "test \"$PWD\" = \"$MESOS_SANDBOX\" && test \"$PORT0\" = 31001 && test ! -f fail"
            .into(),
        shell: true,
        arguments: vec![],
    });
    let o = check_once(&c, Some(&launch)).await;
    assert!(o.ok, "{o:?}");
    std::fs::write(sandbox.join("fail"), b"").expect("fail marker");
    let o = check_once(&c, Some(&launch)).await;
    assert!(!o.ok);
    assert!(o.message.ends_with("exited with status 1"), "{o:?}");
}

#[tokio::test]
async fn command_check_is_killed_on_timeout() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).expect("sandbox");
    let launch = launch_spec(sandbox.clone());
    let mut c = check(HealthCheckKind::Command);
    // The background child writes its pid, then both sleep far longer than the timeout.
    c.command = Some(HealthCommand {
        value: "sleep 300 & echo $! > child.pid; wait".into(),
        shell: true,
        arguments: vec![],
    });
    let r = tokio::time::timeout(Duration::from_secs(2), check_once(&c, Some(&launch))).await;
    assert!(r.is_err(), "the check must still be running");
    let pid: i32 = std::fs::read_to_string(sandbox.join("child.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "check process group not killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
