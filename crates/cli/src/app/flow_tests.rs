//! `meseta app` verbs against a scripted `/v2` server ([`super::fake`]): the requests they send,
//! `--wait` until the deployment is gone or the timeout, and Marathon errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::fake::Fake;
use super::progress::EXIT_TIMEOUT;
use super::{run, AppCmd, WaitArgs};

fn wait_for(secs: u64) -> WaitArgs {
    WaitArgs {
        wait: true,
        timeout: Duration::from_secs(secs),
    }
}

fn deployment() -> Value {
    json!({"id":"d1","version":"v2","affectedApps":["/web"],"currentStep":1,"totalSteps":1,
           "currentActions":[{"action":"ScaleApplication","app":"/web"}]})
}

fn ok(v: Value) -> (u16, String) {
    (200, v.to_string())
}

#[tokio::test]
async fn scale_waits_until_the_deployment_is_gone() {
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let fake = Fake::start(Arc::new(move |method: &str, path: &str| {
        match (method, path) {
            ("PUT", "/v2/apps/web?force=false") => ok(json!({"deploymentId":"d1","version":"v2"})),
            ("GET", "/v2/deployments") => {
                if p.fetch_add(1, Ordering::SeqCst) < 2 {
                    ok(json!([deployment()]))
                } else {
                    ok(json!([]))
                }
            }
            ("GET", "/v2/apps/web?embed=app.tasks") => {
                ok(json!({"app":{"id":"/web","instances":3,"version":"v2",
                "tasks":[{"version":"v2","state":"TASK_RUNNING"}]}}))
            }
            _ => (404, json!({"message":"URI not found"}).to_string()),
        }
    }))
    .await;
    let cmd = AppCmd::Scale {
        id: "web".into(),
        instances: 3,
        force: false,
        wait: wait_for(30),
    };
    assert_eq!(run(cmd, &fake.client(), false).await.expect("scale"), 0);
    let puts = fake.matching("PUT /v2/apps/web?force=false");
    assert_eq!(puts.len(), 1);
    assert!(puts[0].ends_with(r#"{"instances":3}"#), "{puts:?}");
    assert_eq!(fake.count("GET /v2/deployments"), 3);
    assert_eq!(fake.count("GET /v2/apps/web?embed=app.tasks"), 2);
}

#[tokio::test]
async fn a_wait_that_times_out_reads_the_queue_and_exits_2() {
    let fake = Fake::start(Arc::new(|method: &str, path: &str| match (method, path) {
        ("POST", "/v2/apps/web/restart?force=true") => {
            ok(json!({"deploymentId":"d1","version":"v2"}))
        }
        ("GET", "/v2/deployments") => ok(json!([deployment()])),
        ("GET", "/v2/apps/web?embed=app.tasks") => {
            ok(json!({"app":{"id":"/web","instances":1,"tasks":[]}}))
        }
        ("GET", "/v2/queue") => ok(json!({"queue":[{"app":{"id":"/web"},"count":1,
            "delay":{"overdue":true},"processedOffersSummary":{"processedOffersCount":0}}]})),
        _ => (404, "{}".to_string()),
    }))
    .await;
    let cmd = AppCmd::Restart {
        id: "/web".into(),
        force: true,
        wait: wait_for(1),
    };
    assert_eq!(
        run(cmd, &fake.client(), true).await.expect("restart"),
        EXIT_TIMEOUT
    );
    assert_eq!(fake.count("GET /v2/queue"), 1);
    assert!(fake.count("GET /v2/deployments") >= 2);
}

#[tokio::test]
async fn removal_progress_counts_tasks_of_the_gone_app() {
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let fake = Fake::start(Arc::new(move |method: &str, path: &str| {
        match (method, path) {
            ("DELETE", "/v2/apps/web?force=false") => {
                ok(json!({"deploymentId":"d1","version":"v2"}))
            }
            ("GET", "/v2/deployments") if p.fetch_add(1, Ordering::SeqCst) == 0 => {
                ok(json!([deployment()]))
            }
            ("GET", "/v2/deployments") => ok(json!([])),
            ("GET", "/v2/tasks") => ok(json!({"tasks":[{"appId":"/web","state":"TASK_RUNNING"}]})),
            _ => (
                404,
                json!({"message":"App '/web' does not exist"}).to_string(),
            ),
        }
    }))
    .await;
    let cmd = AppCmd::Remove {
        id: "web".into(),
        force: false,
        wait: wait_for(30),
    };
    assert_eq!(run(cmd, &fake.client(), false).await.expect("remove"), 0);
    assert_eq!(fake.count("GET /v2/tasks"), 1);
}

#[tokio::test]
async fn rollback_puts_the_previous_version_without_version_fields() {
    let fake = Fake::start(Arc::new(|method: &str, path: &str| match (method, path) {
        ("GET", "/v2/apps/web") => {
            ok(json!({"app":{"id":"/web","version":"2021-01-03T00:00:00.000Z"}}))
        }
        ("GET", "/v2/apps/web/versions") => ok(json!({"versions":[
            "2021-01-01T00:00:00.000Z","2021-01-03T00:00:00.000Z","2021-01-02T00:00:00.000Z"]})),
        ("GET", "/v2/apps/web/versions/2021-01-02T00:00:00.000Z") => ok(json!({"id":"/web",
            "cmd":"old","instances":2,"version":"2021-01-02T00:00:00.000Z",
            "versionInfo":{"lastConfigChangeAt":"2021-01-02T00:00:00.000Z"}})),
        ("PUT", "/v2/apps/web?force=false") => ok(json!({"deploymentId":"d9","version":"v4"})),
        _ => (404, "{}".to_string()),
    }))
    .await;
    let cmd = AppCmd::Rollback {
        id: "web".into(),
        to: None,
        force: false,
        wait: WaitArgs {
            wait: false,
            timeout: Duration::from_secs(1),
        },
    };
    assert_eq!(run(cmd, &fake.client(), false).await.expect("rollback"), 0);
    let puts = fake.matching("PUT /v2/apps/web");
    assert_eq!(puts.len(), 1, "{puts:?}");
    let body: Value = serde_json::from_str(
        puts[0]
            .split_once(' ')
            .and_then(|(_, rest)| rest.split_once(' '))
            .map(|(_, b)| b)
            .unwrap_or_default(),
    )
    .expect("json body");
    assert_eq!(body, json!({"id":"/web","cmd":"old","instances":2}));
}

#[tokio::test]
async fn marathon_errors_are_readable() {
    let fake = Fake::start(Arc::new(|_: &str, _: &str| {
        (
            422,
            json!({"message":"Object is not valid",
                   "details":[{"path":"/instances","errors":["got -1, expected 0 or more"]}]})
            .to_string(),
        )
    }))
    .await;
    let cmd = AppCmd::Scale {
        id: "web".into(),
        instances: 1,
        force: false,
        wait: wait_for(1),
    };
    let err = run(cmd, &fake.client(), false).await.expect_err("422");
    assert_eq!(
        format!("{err:#}"),
        "PUT /v2/apps/web?force=false: Object is not valid (422)\n  \
         /instances: got -1, expected 0 or more"
    );
}

#[tokio::test]
async fn auto_promoted_canary_waits_for_the_promotion_rollout() {
    let polls = Arc::new(AtomicUsize::new(0));
    let deploys = Arc::new(AtomicUsize::new(0));
    let (p, d) = (polls.clone(), deploys.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v2.json");
    std::fs::write(&file, r#"{"cmd":"serve --v2"}"#).expect("write");
    let fake = Fake::start(Arc::new(move |method: &str, path: &str| {
        match (method, path) {
            ("POST", "/v2/apps/web/canary") => {
                (201, json!({"deploymentId":"c1","version":"v2"}).to_string())
            }
            ("GET", "/v2/apps/web/canary") => {
                let state = match p.fetch_add(1, Ordering::SeqCst) {
                    0 => "deploying",
                    1 => "holding",
                    _ => "promoted",
                };
                ok(json!({"appId":"/web","state":state,"instances":1,"running":1,"healthy":1}))
            }
            ("GET", "/v2/apps/web") => ok(json!({"app":{"id":"/web","deployments":[{"id":"d2"}]}})),
            ("GET", "/v2/deployments") if d.fetch_add(1, Ordering::SeqCst) == 0 => {
                ok(json!([{"id":"d2","affectedApps":[]}]))
            }
            ("GET", "/v2/deployments") => ok(json!([])),
            _ => (404, "{}".to_string()),
        }
    }))
    .await;
    let args = super::CanaryArgs {
        action: None,
        id: Some("web".into()),
        file: file.to_str().map(str::to_string),
        instances: Some(1),
        auto_promote_after: Some(30),
        wait: wait_for(30),
        judge: super::judge::JudgeArgs {
            judge: None,
            lb: String::new(),
            judge_window: 30,
            judge_min_requests: 20,
            judge_tolerance: 0.05,
        },
    };
    assert_eq!(
        run(AppCmd::Canary(args), &fake.client(), false)
            .await
            .expect("canary"),
        0
    );
    let posts = fake.matching("POST /v2/apps/web/canary");
    assert!(
        posts[0].ends_with(
            r#"{"app":{"cmd":"serve --v2"},"autoPromoteAfterSeconds":30,"instances":1}"#
        ),
        "{posts:?}"
    );
    assert_eq!(polls.load(Ordering::SeqCst), 3, "polled until promoted");
    assert_eq!(
        deploys.load(Ordering::SeqCst),
        2,
        "then followed d2 to its end"
    );
}
