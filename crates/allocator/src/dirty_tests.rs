//! Tests of the changed-agents set: a changed agent is offered at the next incremental cycle,
//! an unchanged one is not walked again, demand changes walk everything, and the periodic full
//! cycle still shares the cluster by DRF.

use crate::tests::{agent, fw, res};
use crate::*;
use meseta_types::{AgentId, FrameworkId, Resources};
use std::time::Duration;

fn aid(s: &str) -> AgentId {
    AgentId::new(s)
}

fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An allocator with agents `s1..=sn` of one cpu and 1 GiB each.
fn cluster(n: usize) -> Allocator {
    let mut a = Allocator::new(AllocatorConfig::default(), None);
    for i in 1..=n {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:1;mem:1024"), &[])
            .expect("agent");
    }
    a
}

fn agents_of(c: &Cycle) -> Vec<&str> {
    let mut v: Vec<&str> = c.offers.iter().map(|o| o.agent.as_str()).collect();
    v.sort_unstable();
    v
}

fn decline(a: &mut Allocator, c: &Cycle, refuse: Option<Duration>, now: Duration) {
    for o in &c.offers {
        a.recover(&o.agent, &o.framework, &o.role, &o.resources, refuse, now);
    }
}

#[test]
fn changed_agent_is_offered_next_cycle_and_unchanged_ones_are_not_walked() {
    let mut a = cluster(3);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    // A new framework: the first cycle walks everything.
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s1", "s2", "s3"]);
    assert_eq!(a.last_walked(), 3);
    // Nothing changed: nothing is walked.
    let c = a.allocate_changed(secs(0));
    assert!(c.offers.is_empty());
    assert_eq!(a.last_walked(), 0);
    assert!(!a.has_changes());
    // The framework gives s2 back without a filter: only s2 is walked and offered again.
    a.recover(
        &aid("s2"),
        &fid("f"),
        "*",
        &res("cpus:1;mem:1024"),
        None,
        secs(0),
    );
    assert!(a.has_changes());
    let c = a.allocate_changed(secs(1));
    assert_eq!(agents_of(&c), ["s2"]);
    assert_eq!(a.last_walked(), 1);
    // A task's part ends on s3: only s3, with what was freed.
    a.recover(&aid("s3"), &fid("f"), "*", &res("mem:512"), None, secs(1));
    let c = a.allocate_changed(secs(2));
    assert_eq!(agents_of(&c), ["s3"]);
    assert_eq!(c.offers[0].resources, res("mem:512"));
    assert_eq!(a.last_walked(), 1);
}

#[test]
fn declined_agents_come_back_when_their_filter_expires() {
    let mut a = cluster(2);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    let c = a.allocate_changed(secs(0));
    assert_eq!(c.offers.len(), 2);
    decline(&mut a, &c, Some(secs(5)), secs(0));
    // Walked once (released), filtered, then left alone while the filter holds.
    let c = a.allocate_changed(secs(1));
    assert!(c.offers.is_empty());
    assert_eq!(a.last_walked(), 2);
    let c = a.allocate_changed(secs(3));
    assert!(c.offers.is_empty());
    assert_eq!(a.last_walked(), 0);
    // At expiry both are walked again and offered.
    let c = a.allocate_changed(secs(5));
    assert_eq!(agents_of(&c), ["s1", "s2"]);
    assert_eq!(a.last_walked(), 2);
}

#[test]
fn a_declined_agent_goes_to_the_next_framework_at_once() {
    let mut a = cluster(1);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    a.add_framework(fid("g"), fw(&["*"]), &[]).expect("fw");
    let c = a.allocate_changed(secs(0));
    assert_eq!(c.offers.len(), 1);
    let first = c.offers[0].framework.clone();
    decline(&mut a, &c, Some(secs(5)), secs(0));
    let c = a.allocate_changed(secs(0));
    assert_eq!(c.offers.len(), 1);
    assert_ne!(c.offers[0].framework, first);
}

#[test]
fn new_agents_and_reactivated_agents_are_walked() {
    let mut a = cluster(2);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    a.allocate_changed(secs(0));
    a.add_agent(aid("s3"), agent("cpus:2;mem:2048"), &[])
        .expect("agent");
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s3"]);
    assert_eq!(a.last_walked(), 1);
    // Deactivated while freed: not offered; offered once active again.
    a.deactivate_agent(&aid("s1"));
    a.recover(
        &aid("s1"),
        &fid("f"),
        "*",
        &res("cpus:1;mem:1024"),
        None,
        secs(0),
    );
    assert!(a.allocate_changed(secs(0)).offers.is_empty());
    a.activate_agent(&aid("s1"));
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s1"]);
    // Removing an agent keeps the set's indices valid.
    a.recover(
        &aid("s3"),
        &fid("f"),
        "*",
        &res("cpus:2;mem:2048"),
        None,
        secs(0),
    );
    a.remove_agent(&aid("s1"));
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s3"]);
}

#[test]
fn demand_changes_walk_every_agent() {
    let mut a = cluster(3);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    a.suppress(&fid("f"), None);
    // Suppressed: the agents are walked once and then left alone.
    assert!(a.allocate_changed(secs(0)).offers.is_empty());
    assert_eq!(a.last_walked(), 3);
    assert!(a.allocate_changed(secs(0)).offers.is_empty());
    assert_eq!(a.last_walked(), 0);
    // Reviving wants offers again: every agent is walked.
    a.revive(&fid("f"), None);
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s1", "s2", "s3"]);
    assert_eq!(a.last_walked(), 3);
    // A revive of an unsuppressed framework walks only the agents whose filters it lifted.
    a.recover(
        &aid("s1"),
        &fid("f"),
        "*",
        &res("cpus:1;mem:1024"),
        Some(secs(60)),
        secs(0),
    );
    assert!(a.allocate_changed(secs(0)).offers.is_empty());
    a.revive(&fid("f"), None);
    let c = a.allocate_changed(secs(0));
    assert_eq!(agents_of(&c), ["s1"]);
    assert_eq!(a.last_walked(), 1);
    // A new framework walks everything.
    a.recover(
        &aid("s2"),
        &fid("f"),
        "*",
        &res("cpus:1;mem:1024"),
        Some(secs(60)),
        secs(0),
    );
    a.allocate_changed(secs(0));
    a.add_framework(fid("g"), fw(&["*"]), &[]).expect("fw");
    let c = a.allocate_changed(secs(0));
    assert_eq!(a.last_walked(), 3);
    assert_eq!(agents_of(&c), ["s2"]);
    assert_eq!(c.offers[0].framework, fid("g"));
    // So does a weight change.
    a.set_weight("*", 2.0).expect("weight");
    a.allocate_changed(secs(0));
    assert_eq!(a.last_walked(), 3);
}

#[test]
fn the_periodic_full_cycle_shares_by_drf() {
    let mut a = cluster(4);
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    a.add_framework(fid("g"), fw(&["*"]), &[]).expect("fw");
    // Both decline everything for a long time (each agent goes to the other framework after
    // the first refusal): then nothing changes and nothing is walked.
    let c = a.allocate_changed(secs(0));
    assert_eq!(c.offers.len(), 4);
    decline(&mut a, &c, Some(secs(60)), secs(0));
    let c = a.allocate_changed(secs(0));
    assert_eq!(c.offers.len(), 4);
    decline(&mut a, &c, Some(secs(60)), secs(0));
    assert!(a.allocate_changed(secs(1)).offers.is_empty());
    assert!(a.allocate_changed(secs(2)).offers.is_empty());
    assert_eq!(a.last_walked(), 0);
    // The full cycle walks every agent and splits them evenly once the filters are gone.
    let c = a.allocate(secs(61), None);
    assert_eq!(a.last_walked(), 4);
    let count = |f: &str| {
        c.offers
            .iter()
            .filter(|o| o.framework.as_str() == f)
            .count()
    };
    assert_eq!((count("f"), count("g")), (2, 2));
    // It consumed the pending expiries: the next incremental cycle has nothing to do.
    assert!(a.allocate_changed(secs(62)).offers.is_empty());
    assert_eq!(a.last_walked(), 0);
    // DRF across incremental cycles too: g's tasks end, g (now the lowest share) gets them back
    // before f, which still holds its two agents.
    let g_held: Vec<Allocation> = c
        .offers
        .iter()
        .filter(|o| o.framework.as_str() == "g")
        .cloned()
        .collect();
    let f_one = c
        .offers
        .iter()
        .find(|o| o.framework.as_str() == "f")
        .cloned()
        .expect("f holds an agent");
    for o in g_held.iter().chain(std::iter::once(&f_one)) {
        a.recover(
            &o.agent,
            &o.framework,
            &o.role,
            &o.resources,
            None,
            secs(62),
        );
    }
    let c = a.allocate_changed(secs(62));
    assert_eq!(a.last_walked(), 3);
    let count = |f: &str| {
        c.offers
            .iter()
            .filter(|o| o.framework.as_str() == f)
            .count()
    };
    // f holds one agent, g none: g gets two, f one, ending at two each.
    assert_eq!((count("f"), count("g")), (1, 2));
    let total: Resources = a.total();
    assert_eq!(
        a.allocated_on(&aid("s1")).plus(&a.available_on(&aid("s1"))),
        res("cpus:1;mem:1024")
    );
    assert_eq!(total, res("cpus:4;mem:4096"));
}
