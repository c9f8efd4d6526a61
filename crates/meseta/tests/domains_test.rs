//! Fault domains through the real master and agents: agents registered with `--domain` in two
//! regions under a master of one of them. A framework without REGION_AWARE only gets offers from
//! the master's region, a REGION_AWARE one also from the other; `/master/slaves`, `/master/state`,
//! `GET_AGENTS` and offers carry the Mesos `DomainInfo`.

mod common;

mod ops_common;

use std::net::SocketAddr;
use std::time::Duration;

use meseta_api::domain::Domain;
use meseta_api::scheduler::{Event, FrameworkInfo, Offer};
use meseta_master::{FrameworkConnection, MasterConfig};
use meseta_types::Resources;
use ops_common::{framework_in, next_matching, OpsCluster};
use serde_json::json;

fn domain(region: &str, zone: &str) -> Domain {
    Domain::parse(&format!("region={region},zone={zone}")).expect("domain")
}

/// All offers of the next OFFERS event.
async fn next_offers(fw: &mut FrameworkConnection) -> Vec<Offer> {
    next_matching(fw, "offers", |ev| match ev {
        Event::Offers { offers } if !offers.offers.is_empty() => Some(offers.offers.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frameworks_without_region_awareness_only_get_local_agents() {
    require_root!();
    let cfg = MasterConfig {
        domain: Some(domain("r1", "z1")),
        ..MasterConfig::default()
    };
    let mut c = OpsCluster::start(cfg, 0, "cpus:1;mem:512").await;
    let mut ids = Vec::new();
    for (i, (region, zone)) in [("r1", "z1"), ("r2", "z9")].into_iter().enumerate() {
        let mut a = meseta_agent::AgentConfig::new(
            c.url.clone(),
            c.dir.path().join(format!("agent-{i}")),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        a.resources = Some(Resources::parse("cpus:2;mem:1024").expect("resources"));
        a.hostname = Some(format!("agent-{i}"));
        a.meseta_exe = common::MESETA.into();
        a.domain = Some(domain(region, zone));
        let agent = meseta_agent::Agent::start(a).await.expect("agent");
        let id = agent
            .wait_registered(Duration::from_secs(10))
            .await
            .expect("registered");
        ids.push(id.to_string());
        c.agents.push(agent);
    }
    let (local, remote) = (ids[0].clone(), ids[1].clone());

    // Operator views show each agent's domain, and the master's own.
    let slaves = c.get("/master/slaves").await;
    let by_id = |v: &serde_json::Value, id: &str| {
        v["slaves"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == json!(id)).cloned())
            .unwrap_or_else(|| panic!("agent {id} in {v}"))
    };
    assert_eq!(
        by_id(&slaves, &remote)["domain"],
        json!({"fault_domain": {"region": {"name": "r2"}, "zone": {"name": "z9"}}})
    );
    assert_eq!(
        by_id(&slaves, &local)["domain"]["fault_domain"]["region"]["name"],
        json!("r1")
    );
    let state = c.get("/master/state").await;
    assert_eq!(state["domain"]["fault_domain"]["zone"]["name"], json!("z1"));
    assert_eq!(
        by_id(&state, &remote)["domain"]["fault_domain"]["zone"]["name"],
        json!("z9")
    );
    let (status, agents) =
        ops_common::post_json(&format!("{}/api/v1", c.url), &json!({"type": "GET_AGENTS"})).await;
    assert_eq!(status, 200, "{agents}");
    let remote_info = agents["get_agents"]["agents"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["agent_info"]["id"]["value"] == json!(remote))
                .cloned()
        })
        .unwrap_or_else(|| panic!("remote agent in {agents}"));
    assert_eq!(
        remote_info["agent_info"]["domain"]["fault_domain"]["region"]["name"],
        json!("r2")
    );

    // Both agents are free when it subscribes: a plain framework is offered the local one only.
    let mut plain = c
        .master
        .master
        .subscribe(framework_in("plain", "*"))
        .await
        .expect("plain");
    let offers = next_offers(&mut plain).await;
    assert!(
        offers.iter().all(|o| o.agent_id.as_str() == local),
        "{offers:?}"
    );
    assert_eq!(
        offers[0].domain,
        Some(json!({"fault_domain": {"region": {"name": "r1"}, "zone": {"name": "z1"}}}))
    );

    // A REGION_AWARE framework is offered the remote agent (the local one is held by `plain`).
    let mut info: FrameworkInfo = framework_in("aware", "*");
    info.capabilities =
        serde_json::from_value(json!([{"type": "REGION_AWARE"}])).expect("capabilities");
    let mut aware = c.master.master.subscribe(info).await.expect("aware");
    let offers = next_offers(&mut aware).await;
    assert!(
        offers.iter().all(|o| o.agent_id.as_str() == remote),
        "{offers:?}"
    );
    assert_eq!(
        offers[0]
            .domain
            .as_ref()
            .map(|d| d["fault_domain"]["region"]["name"].clone()),
        Some(json!("r2"))
    );
    c.stop().await;
}
