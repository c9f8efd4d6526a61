//! High availability in one process: masters on one shared store elect one leader, followers
//! redirect clients to it (requests through a follower work), and when the leader steps down
//! another takes over with every app still there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meseta_master::ha::{start_ha, HaHandle, HaOptions};
use meseta_master::{Cancel, Master, MasterConfig};
use meseta_store::mem::MemStore;
use meseta_store::Store;

fn schedulers(m: &Master, c: &Cancel) -> axum::Router {
    meseta_chronos::start(m, c).merge(meseta_marathon::start(m, c))
}

async fn master(store: Arc<dyn Store>) -> HaHandle {
    let cfg = MasterConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        hostname: "127.0.0.1".into(),
        ..MasterConfig::default()
    };
    let ha = HaOptions {
        lease_ttl: Duration::from_secs(1),
        advertise_url: None,
    };
    start_ha(cfg, ha, store, schedulers).await.expect("start")
}

/// Index of the one leading master, once there is exactly one.
async fn leader_of(masters: &[&HaHandle]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leading: Vec<usize> = (0..masters.len())
            .filter(|&i| masters[i].leader().is_some())
            .collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(leading.len() <= 1, "two masters lead at once");
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_followers_redirect_and_a_successor_keeps_every_app() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let a = master(store.clone()).await;
    let b = master(store.clone()).await;
    let li = leader_of(&[&a, &b]).await;
    let (leader, follower) = if li == 0 { (a, b) } else { (b, a) };

    // The follower redirects to the same path on the leader and says where it is.
    let raw = no_redirects();
    let r = raw
        .get(format!("http://{}/v2/apps?embed=apps.tasks", follower.addr))
        .send()
        .await
        .expect("follower answers");
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().expect("ascii"),
        format!("{}/v2/apps?embed=apps.tasks", leader.url)
    );
    let r = raw
        .get(format!("http://{}/master/redirect", follower.addr))
        .send()
        .await
        .expect("redirect");
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().expect("ascii"),
        format!("//127.0.0.1:{}", leader.addr.port())
    );
    for path in ["/v2/leader", "/scheduler/leader", "/v1/scheduler/leader"] {
        let v: serde_json::Value = raw
            .get(format!("http://{}{path}", follower.addr))
            .send()
            .await
            .expect("leader")
            .json()
            .await
            .expect("json");
        assert_eq!(
            v["leader"],
            format!("127.0.0.1:{}", leader.addr.port()),
            "{path}"
        );
    }

    // A client that follows redirects (as marathon-python does) writes through the follower.
    let client = reqwest::Client::new();
    let app = serde_json::json!({"id": "/ha/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0});
    let r = client
        .post(format!("http://{}/v2/apps", follower.addr))
        .json(&app)
        .send()
        .await
        .expect("post via follower");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    // The leader steps down; the follower takes over with the app.
    let started = Instant::now();
    leader.shutdown().await.expect("leader stops");
    let mut follower = follower;
    tokio::time::timeout(Duration::from_secs(10), follower.wait_leading())
        .await
        .expect("successor elected")
        .expect("still running");
    let took = started.elapsed();
    let apps: serde_json::Value = client
        .get(format!("http://{}/v2/apps", follower.addr))
        .send()
        .await
        .expect("apps")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = apps["apps"]
        .as_array()
        .expect("apps array")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["/ha/web"], "took over after {took:?}");
    follower.shutdown().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_steps_down_and_follows() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let a = master(store.clone()).await;
    let mut a = a;
    a.wait_leading().await.expect("a leads");
    // The leadership key vanishes behind the leader's back (its lease expired in the store,
    // say, while it was paused): it must notice and follow, and another master may lead.
    store
        .delete(meseta_store::election::LEADER_KEY)
        .await
        .expect("delete");
    let b = master(store.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.leader().is_some() || b.leader().is_none() {
        assert!(
            Instant::now() < deadline,
            "a must step down and b lead (a leads: {}, b leads: {})",
            a.leader().is_some(),
            b.leader().is_some()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a now redirects to b.
    let r = no_redirects()
        .get(format!("http://{}/v2/apps", a.addr))
        .send()
        .await
        .expect("a answers");
    assert_eq!(r.status(), 307);
    assert!(r.headers()["location"]
        .to_str()
        .expect("ascii")
        .starts_with(&b.url));
    a.shutdown().await.expect("stop a");
    b.shutdown().await.expect("stop b");
}
