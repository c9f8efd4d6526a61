//! `meseta lb` end to end on the real binary: a master and an agent as processes, apps whose
//! tasks are small Python HTTP servers (real health checks, real rolling restarts), and the
//! balancer following the master's event stream. Load comes from threads in the test itself.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, spawn, wait_for, Cluster, Proc, MESETA};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// A backend: `GET /health` is 200; other paths answer `$CODE` (200 by default) with
/// `$KIND pid` as the body; `GET /pid` names the process.
const BACKEND: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        code = 200 if self.path == "/health" else int(os.environ.get("CODE", "200"))
        body = ("%s %d\n" % (os.environ.get("KIND", "stable"), os.getpid())).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT0"])), H).serve_forever()
"#;

/// A running balancer and the addresses it printed.
struct Balancer {
    proc: Proc,
    http: String,
    admin: String,
}

impl Balancer {
    fn start(c: &Cluster, extra: &[&str]) -> Balancer {
        let log = c.dir.path().join(format!("lb-{}.log", free_port()));
        let url = c.url();
        let mut args = vec![
            "lb",
            "--master",
            &url,
            "--listen-http",
            "127.0.0.1:0",
            "--listen-admin",
            "127.0.0.1:0",
            "--bind-ip",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        let proc = spawn(&args, &log);
        let line = wait_for("the balancer's listening line", WAIT, || {
            let text = proc.log_text();
            let line = text.lines().find(|l| l.starts_with("lb listening "))?;
            Some(line.to_owned())
        });
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .expect("address in the line")
                .to_owned()
        };
        Balancer {
            http: field("http="),
            admin: field("admin="),
            proc,
        }
    }

    fn status(&self) -> Value {
        reqwest::blocking::get(format!("http://{}/status", self.admin))
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    /// The backends of app `id` in the balancer's table.
    fn backends(&self, id: &str) -> Vec<Value> {
        let s = self.status();
        s["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["id"] == id)
            .and_then(|a| a["backends"].as_array().cloned())
            .unwrap_or_default()
    }
}

fn write_backend(c: &Cluster) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.path().join("backend.py");
    std::fs::write(&path, BACKEND).expect("write backend");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path.display().to_string()
}

fn web_app(id: &str, instances: u32, script: &str, service_port: u16, labels: Value) -> Value {
    json!({
        "id": id, "cmd": format!("exec python3 {script}"), "cpus": 0.05, "mem": 64,
        "instances": instances, "portDefinitions": [{"port": service_port, "name": "http"}],
        "labels": labels,
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "gracePeriodSeconds": 20, "intervalSeconds": 1, "timeoutSeconds": 2,
                          "maxConsecutiveFailures": 2, "delaySeconds": 0}],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5}
    })
}

fn create(c: &Cluster, app: &Value) {
    let r = c.call(reqwest::Method::POST, "/v2/apps", Some(app));
    assert_eq!(r.status, 201, "create: {}", r.body);
}

fn deployed(c: &Cluster, id: &str) -> bool {
    c.get(&format!("/v2/apps/{id}")).is_some_and(|a| {
        a["app"]["deployments"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
}

/// Waits until the balancer routes to `n` backends of `id`; returns their task ids.
fn wait_backends(c: &Cluster, lb: &Balancer, id: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let b = lb.backends(id);
        if b.len() == n {
            return b
                .iter()
                .filter_map(|x| x["task"].as_str().map(str::to_owned))
                .collect();
        }
        if start.elapsed() > WAIT {
            let app = c.get(&format!("/v2/apps{id}?embed=app.tasks"));
            panic!(
                "timed out waiting for {n} backends of {id}; app: {app:?}\nbalancer: {}\nlog: {}",
                lb.status(),
                lb.proc.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Threads sending GETs through the balancer until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, host: &str, header: Option<(&str, &str)>, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures, bodies) =
                    (stop.clone(), ok.clone(), failures.clone(), bodies.clone());
                let (url, host) = (url.to_owned(), host.to_owned());
                let header = header.map(|(k, v)| (k.to_owned(), v.to_owned()));
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = client.get(&url).header("Host", &host);
                        if let Some((k, v)) = &header {
                            req = req.header(k.as_str(), v.as_str());
                        }
                        match req.send() {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let text = r.text().unwrap_or_default();
                                let mut b = bodies.lock().expect("lock");
                                if b.len() < 100_000 {
                                    b.push(text);
                                }
                            }
                            Ok(r) => {
                                let s = r.status();
                                let text = r.text().unwrap_or_default();
                                failures.lock().expect("lock").push(format!("{s}: {text}"));
                            }
                            Err(e) => failures.lock().expect("lock").push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            bodies,
            threads,
        }
    }

    /// Stops the threads; returns (successes, failures, bodies).
    fn finish(self) -> (u64, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = self.failures.lock().expect("lock").clone();
        let bodies = self.bodies.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failures, bodies)
    }
}

fn get_text(url: &str, host: &str, header: Option<(&str, &str)>) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = client.get(url).header("Host", host);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let r = req.send().expect("request through the balancer");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

#[test]
fn rolling_restart_under_load_loses_no_request_and_keeps_the_listeners() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[33000-33199]");
    let script = write_backend(&c);
    let port = free_port();
    create(
        &c,
        &web_app(
            "/web",
            3,
            &script,
            port,
            json!({"MESETA_VHOST": "web.test"}),
        ),
    );
    // A second app on the same service port or virtual host is refused, naming the holder.
    for (id, port, host) in [("/web2", port, "other.test"), ("/web3", 0, "WEB.test")] {
        let other = web_app(id, 1, &script, port, json!({"MESETA_VHOST": host}));
        let r = c.call(reqwest::Method::POST, "/v2/apps", Some(&other));
        assert_eq!(r.status, 422, "{id}: {}", r.body);
        assert!(
            r.body.to_string().contains("already used by app /web"),
            "{}",
            r.body
        );
    }
    let lb = Balancer::start(&c, &[]);
    let before = wait_backends(&c, &lb, "/web", 3);
    let tcp_url = format!("http://127.0.0.1:{port}/");
    let (s, body) = get_text(&tcp_url, "x", None);
    assert_eq!(s, 200, "L4 service port: {body}");
    let load = Load::start(&format!("http://{}/", lb.http), "web.test", None, 4);
    std::thread::sleep(Duration::from_secs(1));
    let r = c.call(reqwest::Method::POST, "/v2/apps/web/restart", None);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("the rolling restart to finish", WAIT, || {
        let b = lb.backends("/web");
        let fresh = b.len() == 3
            && b.iter()
                .all(|x| !before.iter().any(|t| x["task"].as_str() == Some(t)));
        (fresh && deployed(&c, "web")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failures, _) = load.finish();
    assert!(ok > 100, "only {ok} requests went through");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rolling restart: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
    // The same listeners serve on: the service port was never rebound.
    let (s, body) = get_text(&tcp_url, "x", None);
    assert_eq!(s, 200, "L4 after the restart: {body}");
    let status = lb.status();
    assert_eq!(status["ports"][0]["port"], port, "{status}");
    assert!(lb.proc.log_text().matches("service port listening").count() == 1);
}

#[test]
fn kill_9_of_a_backend_costs_at_most_the_requests_in_flight_on_it() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[33200-33399]");
    let script = write_backend(&c);
    create(
        &c,
        &web_app("/k", 3, &script, 0, json!({"HAPROXY_0_VHOST": "k.test"})),
    );
    let lb = Balancer::start(&c, &[]);
    wait_backends(&c, &lb, "/k", 3);
    let threads = 4;
    let load = Load::start(&format!("http://{}/", lb.http), "k.test", None, threads);
    std::thread::sleep(Duration::from_secs(1));
    let backends = lb.backends("/k");
    let victim = backends[0]["address"]
        .as_str()
        .expect("an address")
        .to_owned();
    let victim_task = backends[0]["task"].as_str().expect("a task").to_owned();
    let (_, body) = get_text(&format!("http://{victim}/pid"), "x", None);
    let pid: i32 = body
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("the backend's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (ok, failures, _) = load.finish();
    assert!(
        failures.len() <= threads,
        "{} failures after killing one backend (at most the {threads} in flight): {:?}",
        failures.len(),
        failures
    );
    assert!(ok > 50, "only {ok} requests went through");
    // The balancer keeps serving from the others and drops the dead one when the master
    // learns of it.
    for _ in 0..20 {
        let (s, body) = get_text(&format!("http://{}/", lb.http), "k.test", None);
        assert_eq!(s, 200, "{body}");
    }
    // (Its replacement may well get the same host port: tasks are told apart by id.)
    wait_for("the dead task gone from the table", WAIT, || {
        let b = lb.backends("/k");
        (!b.iter().any(|x| x["task"] == victim_task.as_str())).then_some(())
    });
    assert!(killed_at.elapsed() < WAIT);
}

#[test]
fn a_header_canary_gets_only_the_traffic_with_the_header() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[33400-33599]");
    let script = write_backend(&c);
    let labels = json!({"MESETA_VHOST": "c.test", "MESETA_CANARY_WEIGHT": "0"});
    create(&c, &web_app("/c", 2, &script, 0, labels));
    let lb = Balancer::start(&c, &[]);
    wait_backends(&c, &lb, "/c", 2);
    wait_for("deployed", WAIT, || deployed(&c, "c").then_some(()));
    let body = json!({"app": {"env": {"KIND": "canary"}}, "instances": 1});
    let r = c.call(reqwest::Method::POST, "/v2/apps/c/canary", Some(&body));
    assert!(r.status < 300, "start canary: {}", r.body);
    wait_for("a canary backend in the balancer", WAIT, || {
        lb.backends("/c")
            .iter()
            .any(|b| b["canary"] == true)
            .then_some(())
    });
    let url = format!("http://{}/", lb.http);
    for _ in 0..40 {
        let (s, body) = get_text(&url, "c.test", None);
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("stable"), "plain traffic reached {body}");
    }
    for _ in 0..20 {
        let (s, body) = get_text(&url, "c.test", Some(("X-Meseta-Canary", "1")));
        assert_eq!(s, 200, "{body}");
        assert!(body.starts_with("canary"), "header traffic reached {body}");
    }
}

#[test]
fn the_lb_judge_rolls_back_a_canary_that_answers_500s() {
    require_root!();
    let c = Cluster::with_resources(1, 10.0, "cpus:4;mem:4096;disk:2048;ports:[33600-33799]");
    let script = write_backend(&c);
    let labels = json!({"MESETA_VHOST": "j.test", "MESETA_CANARY_WEIGHT": "50"});
    create(&c, &web_app("/j", 2, &script, 0, labels));
    let lb = Balancer::start(&c, &[]);
    wait_backends(&c, &lb, "/j", 2);
    wait_for("deployed", WAIT, || deployed(&c, "j").then_some(()));
    let canary = c.dir.path().join("canary.json");
    std::fs::write(
        &canary,
        json!({"env": {"KIND": "canary", "CODE": "500"}}).to_string(),
    )
    .expect("write canary");
    let load = Load::start(&format!("http://{}/", lb.http), "j.test", None, 2);
    let admin = format!("http://{}", lb.admin);
    let out = std::process::Command::new(MESETA)
        .args(["--master", &c.url(), "app", "canary", "/j"])
        .arg(&canary)
        .args(["--instances", "1", "--judge", "lb", "--lb", &admin])
        .args(["--judge-min-requests", "10", "--judge-window", "120"])
        .args(["--timeout", "120s"])
        .output()
        .expect("meseta app canary");
    let (ok, failures, _) = load.finish();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "the judge's verdict: {text}");
    assert!(text.contains("rolling back"), "{text}");
    let state = wait_for("the canary rolled back", WAIT, || {
        let c = c.get("/v2/apps/j/canary")?;
        let s = c["state"].as_str()?.to_owned();
        (s == "rolledBack").then_some(s)
    });
    assert_eq!(state, "rolledBack");
    assert!(ok > 0, "no request went through");
    assert!(
        failures.iter().all(|f| f.starts_with("500")),
        "only the canary's own 500s may fail: {failures:?}"
    );
    wait_for("the stable backends alone again", WAIT, || {
        let b = lb.backends("/j");
        (b.len() == 2 && b.iter().all(|x| x["canary"] == false)).then_some(())
    });
}
