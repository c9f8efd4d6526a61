//! Maintenance and offer timeouts through the real master and agents: a schedule sends inverse
//! offers to a framework with a task on the machine, answers show in the status, `machine/down`
//! kills the task and stops offers from the machine, `machine/up` brings them back; an unused
//! offer is rescinded after `offer_timeout` and accepting it afterwards drops the task.

mod common;

mod ops_common;

use std::time::Duration;

use meseta_api::scheduler::{Accept, CallKind, Decline, Event, Filters, Offer, Roles};
use meseta_master::{FrameworkConnection, MasterConfig};
use ops_common::{framework_in, next_matching, post_json, task, wait_update, OpsCluster};
use serde_json::json;

fn launch(id: &str, res: &str, o: &Offer) -> CallKind {
    CallKind::Accept {
        accept: Accept::launch(o.id.clone(), vec![task(id, res, &o.agent_id)], 0.0),
    }
}

fn decline_all(fw: &FrameworkConnection, offers: &[Offer]) {
    let decline = Decline {
        offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
        filters: Some(Filters {
            refuse_seconds: Some(0.5),
        }),
    };
    let _ = fw.call(CallKind::Decline { decline });
}

/// Collect offers for `window` (all declined).
async fn offers_for(fw: &mut FrameworkConnection, window: Duration) -> Vec<Offer> {
    let mut all = Vec::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, fw.next_event()).await {
        if let Event::Offers { offers } = ev {
            decline_all(fw, &offers.offers);
            all.extend(offers.offers);
        }
    }
    all
}

fn hosts(offers: &[Offer]) -> Vec<String> {
    offers.iter().map(|o| o.hostname.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_down_and_up_a_machine() {
    require_root!();
    let c = OpsCluster::start(MasterConfig::default(), 2, "cpus:2;mem:1024").await;
    let mut fw = c
        .master
        .master
        .subscribe(framework_in("maint", "*"))
        .await
        .expect("subscribe");
    // A task on agent-0.
    let batch = next_matching(&mut fw, "an offer on agent-0", |ev| match ev {
        Event::Offers { offers } if offers.offers.iter().any(|o| o.hostname == "agent-0") => {
            Some(offers.offers.clone())
        }
        _ => None,
    })
    .await;
    let (mine, others): (Vec<Offer>, Vec<Offer>) =
        batch.into_iter().partition(|o| o.hostname == "agent-0");
    decline_all(&fw, &others);
    let offer = mine[0].clone();
    let agent0 = offer.agent_id.clone();
    fw.call(launch("m-1", "cpus:1;mem:128", &offer))
        .expect("accept");
    wait_update(&mut fw, "m-1", "TASK_RUNNING").await;

    // Bad schedules and unscheduled machines get 400.
    let url = |p: &str| format!("{}{p}", c.url);
    let (s, _) = post_json(
        &url("/master/maintenance/schedule"),
        &json!({"windows": [
        {"machine_ids": [], "unavailability": {"start": {"nanoseconds": 0}}}]}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_json(
        &url("/master/machine/down"),
        &json!([{"hostname": "agent-0"}]),
    )
    .await;
    assert_eq!(s, 400, "not scheduled: cannot go down");

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let schedule = json!({"windows": [{"machine_ids": [{"hostname": "agent-0"}],
        "unavailability": {"start": {"nanoseconds": start}, "duration": {"nanoseconds": 3_600_000_000_000i64}}}]});
    let (s, v) = post_json(&url("/master/maintenance/schedule"), &schedule).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.get("/master/maintenance/schedule").await, schedule);

    // The framework with a task there is asked to give it back; offers there carry the window.
    let mut seen: Vec<Offer> = Vec::new();
    let inverse = next_matching(&mut fw, "an inverse offer", |ev| match ev {
        Event::InverseOffers { inverse_offers } => inverse_offers.inverse_offers.first().cloned(),
        Event::Offers { offers } => {
            seen.extend(offers.offers.iter().cloned());
            None
        }
        _ => None,
    })
    .await;
    decline_all(&fw, &seen);
    assert_eq!(inverse.agent_id.as_ref(), Some(&agent0));
    assert_eq!(inverse.unavailability["start"]["nanoseconds"], json!(start));
    let answer = json!({"inverse_offer_ids": [{"value": inverse.id.as_str()}]});
    fw.call(CallKind::AcceptInverseOffers {
        accept_inverse_offers: answer,
    })
    .expect("accept inverse");
    let status = c.get("/master/maintenance/status").await;
    assert_eq!(status["draining_machines"][0]["id"]["hostname"], "agent-0");
    assert_eq!(
        status["draining_machines"][0]["statuses"][0]["status"], "ACCEPT",
        "{status}"
    );
    seen.extend(offers_for(&mut fw, Duration::from_secs(2)).await);
    let on0: Vec<&Offer> = seen.iter().filter(|o| o.hostname == "agent-0").collect();
    assert!(
        !on0.is_empty(),
        "agent-0's free cpu is re-offered: {:?}",
        hosts(&seen)
    );
    for o in on0 {
        assert_eq!(
            o.unavailability
                .as_ref()
                .map(|u| u["start"]["nanoseconds"].clone()),
            Some(json!(start)),
            "offers on a scheduled machine carry its unavailability"
        );
    }

    // Down: the task is killed, and the machine makes no more offers.
    let (s, v) = post_json(
        &url("/master/machine/down"),
        &json!([{"hostname": "agent-0"}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let reason = wait_update(&mut fw, "m-1", "TASK_KILLED").await;
    assert_eq!(reason.as_deref(), Some("REASON_AGENT_REMOVED_BY_OPERATOR"));
    let status = c.get("/master/maintenance/status").await;
    assert_eq!(status["down_machines"], json!([{"hostname": "agent-0"}]));
    fw.call(CallKind::Revive {
        revive: None::<Roles>,
    })
    .expect("revive");
    let hosts = hosts(&offers_for(&mut fw, Duration::from_secs(3)).await);
    assert!(hosts.iter().any(|h| h == "agent-1"), "{hosts:?}");
    assert!(!hosts.iter().any(|h| h == "agent-0"), "{hosts:?}");
    let (s, _) = post_json(
        &url("/master/machine/up"),
        &json!([{"hostname": "agent-1"}]),
    )
    .await;
    assert_eq!(s, 400, "agent-1 is not down");

    // Up: offers come back and the machine leaves the schedule.
    let (s, v) = post_json(
        &url("/master/machine/up"),
        &json!([{"hostname": "agent-0"}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    fw.call(CallKind::Revive {
        revive: None::<Roles>,
    })
    .expect("revive");
    let back = next_matching(&mut fw, "an offer on agent-0 again", |ev| match ev {
        Event::Offers { offers } => offers
            .offers
            .iter()
            .find(|o| o.hostname == "agent-0")
            .cloned(),
        _ => None,
    })
    .await;
    assert_eq!(back.unavailability, None, "no longer scheduled");
    let status = c.get("/master/maintenance/status").await;
    assert_eq!(status["down_machines"], json!([]));
    assert_eq!(
        c.get("/master/maintenance/schedule").await,
        json!({"windows": []})
    );
    drop(fw);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_offers_are_rescinded_after_the_offer_timeout() {
    require_root!();
    let cfg = MasterConfig {
        offer_timeout: Some(Duration::from_secs(1)),
        ..MasterConfig::default()
    };
    let c = OpsCluster::start(cfg, 1, "cpus:2;mem:1024").await;
    let mut fw = c
        .master
        .master
        .subscribe(framework_in("slow", "*"))
        .await
        .expect("subscribe");
    let offer = ops_common::next_offer(&mut fw).await;
    let id = offer.id.clone();
    next_matching(&mut fw, "the rescind", |ev| match ev {
        Event::Rescind { rescind } if rescind.offer_id == id => Some(()),
        _ => None,
    })
    .await;
    // Using it now drops the task (TASK_LOST for a framework that is not partition-aware).
    fw.call(launch("late-1", "cpus:1;mem:64", &offer))
        .expect("accept");
    let reason = wait_update(&mut fw, "late-1", "TASK_LOST").await;
    assert_eq!(reason.as_deref(), Some("REASON_INVALID_OFFERS"));
    // Its resources were recovered: they are offered again.
    let again = ops_common::next_offer(&mut fw).await;
    assert_eq!(again.resources.cpus(), 2.0);
    drop(fw);
    c.stop().await;
}
