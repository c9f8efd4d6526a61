//! The web UI end to end on the real binary: a master with two agents as processes, apps and
//! jobs through the public APIs, then the pages read over HTTP (escaping, 404s, the no-script
//! forms) and in headless Chromium over the DevTools protocol (every page screenshotted under
//! `target/ui-screenshots/`, scaling from an app's page, the dashboard following a task change
//! without a reload, the usage chart of an app burning one cpu).
//!
//! Needs root (cgroups: usage figures come from them) and Chromium; skipped without them, except
//! under `CI=true`, where a missing one fails.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::browser::{find_chromium, Browser};
use common::{wait_for, Cluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn page(c: &Cluster, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", c.url()))
        .send()
        .expect("GET");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn form(c: &Cluster, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = no_redirects()
        .post(format!("{}{path}", c.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(urlencoded(fields))
        .send()
        .expect("POST");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn urlencoded(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn app(c: &Cluster, id: &str) -> Value {
    c.get(&format!("/v2/apps/{id}")).expect("app")["app"].clone()
}

fn create(c: &Cluster, app: Value) {
    let r = c.call(reqwest::Method::POST, "/v2/apps", Some(&app));
    assert_eq!(r.status, 201, "{}", r.body);
}

fn wait_running(c: &Cluster, id: &str, n: u64) {
    wait_for(&format!("{id}: {n} running"), WAIT, || {
        let a = app(c, id);
        (a["tasksRunning"] == n && a["deployments"].as_array()?.is_empty()).then_some(())
    });
}

fn start_cluster() -> Cluster {
    let c = Cluster::new(2, 10.0);
    create(
        &c,
        json!({"id": "/burn", "cmd": "while :; do :; done", "cpus": 1, "mem": 32, "instances": 1}),
    );
    create(
        &c,
        json!({"id": "/web/sleepy", "cmd": "echo hello from sleepy; sleep 1000", "cpus": 0.1,
               "mem": 16, "instances": 2,
               "labels": {"note": "<script>alert('label')</script>"},
               "env": {"GREETING": "<b>hi</b>"}}),
    );
    for (path, job) in [
        (
            "/scheduler/iso8601",
            json!({"name": "nightly", "command": "echo nightly",
            "schedule": "R/2026-01-01T00:00:00Z/PT1H", "cpus": 0.1, "mem": 16}),
        ),
        (
            "/scheduler/dependency",
            json!({"name": "report", "command": "echo '<i>done</i>'; exit 3",
            "parents": ["nightly"], "cpus": 0.1, "mem": 16}),
        ),
    ] {
        let r = c.call(reqwest::Method::POST, path, Some(&job));
        assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
    }
    wait_running(&c, "burn", 1);
    wait_running(&c, "web/sleepy", 2);
    c
}

#[test]
fn pages_escape_cluster_text_name_unknown_ids_and_forms_show_the_api_message() {
    require_root!();
    let c = start_cluster();
    // Every page reads without JavaScript.
    for path in [
        "/ui",
        "/ui/services",
        "/ui/services/web/sleepy",
        "/ui/jobs",
        "/ui/nodes",
        "/ui/frameworks",
    ] {
        let (status, body) = page(&c, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("<main"), "{path}");
    }
    // Text from the cluster is shown as text.
    let (_, body) = page(&c, "/ui/services/web/sleepy");
    assert!(
        body.contains("&lt;script&gt;alert('label')&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert("), "a label became markup");
    assert!(body.contains("&lt;b&gt;hi&lt;/b&gt;"));
    let (status, job) = page(&c, "/ui/jobs/report");
    assert_eq!(status, 200);
    assert!(job.contains("&lt;i&gt;done&lt;/i&gt;"), "{job}");
    assert!(!job.contains("<i>done</i>"));
    // Unknown ids: a 404 page.
    for path in [
        "/ui/services/nope",
        "/ui/jobs/nope",
        "/ui/nodes/nope",
        "/ui/tasks/nope",
    ] {
        let (status, body) = page(&c, path);
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("does not exist"), "{path}: {body}");
    }
    // An invalid value: the API's message next to the field, nothing changed.
    for bad in ["-3", "many"] {
        let (status, body) = form(&c, "/ui/actions/scale/web/sleepy", &[("instances", bad)]);
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body.contains("id=\"instances-error\""), "{body}");
        let err = body.split("id=\"instances-error\"").nth(1).unwrap_or("");
        let err = err.split("</p>").next().unwrap_or("");
        assert!(!err.contains("hidden"), "the message is shown: {err}");
        if bad == "-3" {
            assert!(
                err.contains("instances"),
                "the API's message names the field: {err}"
            );
        }
        assert!(
            body.contains(&format!("value=\"{bad}\"")),
            "the value typed is kept"
        );
        assert_eq!(app(&c, "web/sleepy")["instances"], 2);
    }
    // A valid one: 303 back to the page, the app scaled through /v2.
    let (status, _) = form(&c, "/ui/actions/scale/web/sleepy", &[("instances", "3")]);
    assert_eq!(status, 303);
    assert_eq!(app(&c, "web/sleepy")["instances"], 3);
    // History is queryable like Prometheus.
    let q = c
        .get("/api/v1/query?query=meseta_cpus_total")
        .expect("query");
    assert_eq!(q["status"], "success", "{q}");
    let r = c.call(reqwest::Method::GET, "/api/v1/query_range?query=up", None);
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("meseta_cpus_used"),
        "{}",
        r.body
    );
}

#[test]
fn chromium_shows_every_page_scales_an_app_and_follows_task_changes_live() {
    require_root!();
    let Some(exe) = find_chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing and CI=true"
        );
        eprintln!("SKIPPED: chromium not found (apt-get install chromium)");
        return;
    };
    let c = start_cluster();
    let shots = screenshots_dir();
    let browser = Browser::start(&exe);
    let mut tab = browser.open(&format!("{}/ui", c.url()));

    // The dashboard follows a task change without a reload.
    tab.eval("window.__noReload = 1");
    let running = |tab: &mut common::browser::Page| {
        tab.eval(
            "(document.querySelector('[data-state=\"TASK_RUNNING\"]') || {}).textContent || '0'",
        )
        .as_str()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
    };
    // burn + 2 sleepy (the jobs' runs have ended by now, or end soon).
    wait_for("3 running tasks on the dashboard", WAIT, || {
        (running(&mut tab) == 3).then_some(())
    });
    let r = c.call(
        reqwest::Method::PUT,
        "/v2/apps/web/sleepy",
        Some(&json!({"instances": 3})),
    );
    assert!(r.status < 300, "{}", r.body);
    let (mut api_at, mut dom_at) = (None, None);
    let start = Instant::now();
    while dom_at.is_none() || api_at.is_none() {
        assert!(
            start.elapsed() < WAIT,
            "the dashboard never showed 4 running tasks"
        );
        if api_at.is_none() && app(&c, "web/sleepy")["tasksRunning"] == 3 {
            api_at = Some(Instant::now());
        }
        if dom_at.is_none() && running(&mut tab) == 4 {
            dom_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let lag = dom_at
        .expect("set")
        .saturating_duration_since(api_at.expect("set"));
    assert!(
        lag <= Duration::from_secs(2),
        "the dashboard lagged {lag:?}"
    );
    assert_eq!(tab.eval("window.__noReload"), 1, "the page was reloaded");

    // Scale from the app's page: the script calls PUT /v2/apps/{id}.
    tab.navigate(&format!("{}/ui/services/web/sleepy", c.url()));
    tab.eval("window.__noReload = 1");
    tab.eval(
        "document.getElementById('instances').value = '1'; \
              document.getElementById('instances').form.requestSubmit(); true",
    );
    wait_for("scaled to 1 from the page", WAIT, || {
        (app(&c, "web/sleepy")["instances"] == 1).then_some(())
    });
    // An invalid value shows the API's message next to the field and changes nothing.
    tab.eval(
        "document.getElementById('instances').value = '-1'; \
              document.getElementById('instances').form.requestSubmit(); true",
    );
    let msg = wait_for("the API's message on the page", WAIT, || {
        let v = tab.eval(
            "(function(){var e=document.getElementById('instances-error');\
                          return e && !e.hidden ? e.textContent : ''})()",
        );
        v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    });
    assert!(msg.contains("instances"), "{msg}");
    assert_eq!(app(&c, "web/sleepy")["instances"], 1);
    assert_eq!(tab.eval("window.__noReload"), 1, "the form navigated");
    tab.screenshot(&shots.join("service-scale-error.png"));

    // The app burning one cpu: the chart shows what its cgroup measures, against one cpu
    // allocated. On an idle machine that is about one cpu; a loaded one gives it less, so the
    // chart is checked against the agent's own /monitor/statistics over the same time.
    let burn_rate = || {
        let sample = || -> Option<(f64, f64)> {
            c.agent_ports.iter().find_map(|port| {
                let v: Value =
                    reqwest::blocking::get(format!("http://127.0.0.1:{port}/monitor/statistics"))
                        .ok()?
                        .json()
                        .ok()?;
                let e = v.as_array()?.iter().find(|e| e["source"] == "burn")?;
                let st = &e["statistics"];
                assert_eq!(st["cpus_limit"], 1.0, "{e}");
                Some((
                    st["timestamp"].as_f64()?,
                    st["cpus_user_time_secs"].as_f64()? + st["cpus_system_time_secs"].as_f64()?,
                ))
            })
        };
        let a = wait_for("burn's statistics", WAIT, sample);
        std::thread::sleep(Duration::from_secs(12));
        let b = wait_for("burn's statistics", WAIT, sample);
        (b.1 - a.1) / (b.0 - a.0).max(1e-3)
    };
    // Two history samples at least (10 s apart) before the chart is read.
    std::thread::sleep(Duration::from_secs(12));
    let measured = burn_rate();
    tab.navigate(&format!("{}/ui/services/burn?range=15m", c.url()));
    let caption = tab.eval("document.querySelector('figure.chart figcaption').textContent");
    let caption = caption.as_str().unwrap_or("").to_string();
    assert!(caption.contains("allocated 1 "), "{caption}");
    let shown: f64 = caption
        .split("used ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("a used figure on the chart");
    eprintln!("burn: chart shows {shown} cpus used of 1 allocated; cgroup measured {measured:.3}");
    assert!(shown <= 1.1, "more than its one cpu: {caption}");
    assert!(
        (shown - measured).abs() < 0.25 + 0.25 * measured,
        "chart {shown} vs measured {measured}"
    );
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::MAX);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if load < cpus - 1.0 {
        assert!(
            shown > 0.8,
            "an idle machine gives burn about one cpu: {caption}"
        );
    }
    tab.screenshot(&shots.join("service-burn.png"));

    // Every page, screenshotted, showing data.
    let node = c.get("/master/slaves").expect("slaves")["slaves"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let task = c.get("/v2/apps/web/sleepy?embed=app.tasks").expect("app")["app"]["tasks"][0]["id"]
        .as_str()
        .expect("a sleepy task")
        .to_string();
    for (name, path, expect) in [
        ("dashboard", "/ui".to_string(), "Tasks by state"),
        ("services", "/ui/services".to_string(), "/web/sleepy"),
        (
            "service",
            "/ui/services/web/sleepy".to_string(),
            "web_sleepy.instance",
        ),
        ("jobs", "/ui/jobs".to_string(), "nightly"),
        ("job", "/ui/jobs/nightly".to_string(), "Run history"),
        ("nodes", "/ui/nodes".to_string(), "agent-"),
        ("node", format!("/ui/nodes/{node}"), "Attributes"),
        ("frameworks", "/ui/frameworks".to_string(), "marathon"),
        ("task", format!("/ui/tasks/{task}"), "hello from sleepy"),
    ] {
        tab.navigate(&format!("{}{path}", c.url()));
        let text = tab.eval("document.body.innerText");
        let text = text.as_str().unwrap_or("");
        assert!(
            text.to_lowercase().contains(&expect.to_lowercase()),
            "{name} lacks {expect:?}: {text}"
        );
        tab.screenshot(&shots.join(format!("{name}.png")));
    }
}
