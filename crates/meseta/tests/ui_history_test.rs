//! The usage history survives a master restart: the in-process cluster samples every second and
//! stores its chunks every two seconds; a restarted master over the same store answers a range
//! query with the samples taken before it started.

use std::time::{Duration, Instant};

use meseta_testkit::{Cluster, ClusterOptions};
use serde_json::Value;

const MESETA: &str = env!("CARGO_BIN_EXE_meseta");

fn points(v: &Value) -> Vec<(i64, f64)> {
    v["data"]["result"][0]["values"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter_map(|p| Some((p[0].as_i64()?, p[1].as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_stored_and_read_back_after_a_master_restart() -> anyhow::Result<()> {
    let opts = ClusterOptions::new(MESETA)
        .agents(2)
        .agent_resources("cpus:3;mem:1024;disk:100")?;
    let mut c = Cluster::start(opts).await?;
    c.wait_agents_active(Duration::from_secs(30)).await?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let start = now() - 60;
    let query = |end: i64| {
        format!("/api/v1/query_range?query=meseta_cpus_total&start={start}&end={end}&step=10")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let pts = points(&c.get_json(&query(now())).await?);
        if pts.iter().any(|(_, v)| *v == 6.0) {
            break pts;
        }
        anyhow::ensure!(Instant::now() < deadline, "no sample of 6 cpus: {pts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Past the 2 s persist period, then a new master over the same store.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted_at = now();
    c.restart_master().await?;
    let after = points(&c.get_json(&query(restarted_at)).await?);
    let first = before.iter().find(|(_, v)| *v == 6.0).expect("found above");
    assert!(
        after.contains(first),
        "{first:?} lost across the restart: {after:?}"
    );
    // Bad queries name what is accepted.
    let bad = c
        .get_json("/api/v1/query_range?query=meseta_cpus_total&step=0")
        .await;
    assert!(bad.is_err(), "step 0 is refused");
    c.stop().await;
    Ok(())
}
