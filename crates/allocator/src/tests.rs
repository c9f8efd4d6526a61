//! Behaviour tests of the allocator: DRF, weights, quota, filters, suppress/revive,
//! reservations, capability gates and maintenance.

use crate::*;
use meseta_types::{AgentId, FrameworkId, Resources, Scalar};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) fn res(s: &str) -> Resources {
    Resources::parse(s).expect("valid resources")
}

fn aid(s: &str) -> AgentId {
    AgentId::new(s)
}

fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) fn agent(total: &str) -> AgentInfo {
    AgentInfo {
        hostname: "host".into(),
        total: res(total).into(),
        domain: None,
    }
}

pub(crate) fn fw(roles: &[&str]) -> FrameworkInfo {
    FrameworkInfo {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..FrameworkInfo::default()
    }
}

fn alloc() -> Allocator {
    Allocator::new(AllocatorConfig::default(), None)
}

fn quota(guarantees: &str, limits: &str) -> Quota {
    let map = |s: &str| -> BTreeMap<String, Scalar> {
        res(s)
            .iter()
            .map(|r| (r.name.to_string(), r.scalar_or_zero()))
            .collect()
    };
    Quota {
        guarantees: map(guarantees),
        limits: map(limits),
    }
}

trait ScalarOf {
    fn scalar_or_zero(&self) -> Scalar;
}

impl ScalarOf for meseta_types::Resource {
    fn scalar_or_zero(&self) -> Scalar {
        match &self.value {
            meseta_types::Value::Scalar(s) => *s,
            _ => Scalar::ZERO,
        }
    }
}

/// Declines every grant without a filter.
fn give_back(a: &mut Allocator, c: &Cycle) {
    for o in &c.offers {
        a.recover(&o.agent, &o.framework, &o.role, &o.resources, None, secs(0));
    }
}

#[test]
fn drf_paper_allocation() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:9;mem:18432"), &[])
        .expect("agent");
    a.add_framework(fid("A"), fw(&["*"]), &[]).expect("A");
    a.add_framework(fid("B"), fw(&["*"]), &[]).expect("B");
    let task = |f: &str| {
        res(if f == "A" {
            "cpus:1;mem:4096"
        } else {
            "cpus:3;mem:1024"
        })
    };
    let mut tasks: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..50 {
        let c = a.allocate(secs(0), None);
        let Some(o) = c.offers.first() else { break };
        assert_eq!(c.offers.len(), 1, "one agent, one grant");
        let t = task(o.framework.as_str());
        if !o.resources.contains(&t) {
            // Nothing fits for the lowest-share framework: the simulation is over.
            a.recover(
                &o.agent,
                &o.framework,
                &o.role,
                &o.resources,
                Some(secs(1000)),
                secs(0),
            );
            if a.allocate(secs(0), None)
                .offers
                .iter()
                .all(|o| !o.resources.contains(&task(o.framework.as_str())))
            {
                break;
            }
            continue;
        }
        *tasks.entry(o.framework.to_string()).or_default() += 1;
        let rest = o.resources.checked_sub(&t).expect("task fits");
        a.recover(&o.agent, &o.framework, &o.role, &rest, None, secs(0));
    }
    assert_eq!(tasks.get("A"), Some(&3));
    assert_eq!(tasks.get("B"), Some(&2));
    assert_eq!(a.allocated_on(&aid("s1")).cpus(), 9.0);
}

#[test]
fn whole_agent_goes_to_lowest_share_and_offers_count() {
    let mut a = alloc();
    for i in 0..4 {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:4;mem:4096"), &[])
            .expect("agent");
    }
    a.add_framework(fid("f1"), fw(&["*"]), &[]).expect("fw");
    a.add_framework(fid("f2"), fw(&["*"]), &[]).expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers.len(), 4);
    let per = |f: &str| {
        c.offers
            .iter()
            .filter(|o| o.framework.as_str() == f)
            .count()
    };
    assert_eq!((per("f1"), per("f2")), (2, 2));
    assert!(c
        .offers
        .iter()
        .all(|o| o.resources == res("cpus:4;mem:4096")));
    // Everything is offered: nothing is left for another cycle.
    assert!(a.allocate(secs(0), None).offers.is_empty());
    give_back(&mut a, &c);
    assert_eq!(a.allocate(secs(0), None).offers.len(), 4);
}

#[test]
fn weights_scale_shares() {
    let mut a = alloc();
    for i in 0..8 {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:1;mem:1024"), &[])
            .expect("agent");
    }
    a.add_framework(fid("heavy"), fw(&["gold"]), &[])
        .expect("fw");
    a.add_framework(fid("light"), fw(&["bronze"]), &[])
        .expect("fw");
    a.set_weight("gold", 3.0).expect("weight");
    assert!(matches!(
        a.set_weight("gold", 0.0),
        Err(AllocatorError::InvalidWeight(..))
    ));
    for huge in [1e308, f64::INFINITY, f64::NAN, MAX_WEIGHT * 2.0] {
        assert!(matches!(
            a.set_weight("gold", huge),
            Err(AllocatorError::InvalidWeight(..))
        ));
    }
    assert!(a.set_weight("gold", MAX_WEIGHT).is_ok());
    a.set_weight("gold", 3.0).expect("weight");
    assert!(matches!(
        a.set_weight("bad role", 1.0),
        Err(AllocatorError::InvalidRole(..))
    ));
    let c = a.allocate(secs(0), None);
    let gold = c.offers.iter().filter(|o| o.role == "gold").count();
    assert_eq!((gold, c.offers.len()), (6, 8));
    let info = a.roles();
    let g = info.iter().find(|r| r.name == "gold").expect("gold listed");
    assert_eq!(g.weight, 3.0);
    assert_eq!(g.allocated.get("cpus"), Some(&Scalar::from_milli(6000)));
    assert_eq!(g.frameworks, vec![fid("heavy")]);
}

#[test]
fn quota_guarantee_served_first_on_full_cluster() {
    let mut a = alloc();
    for i in 0..4 {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:4;mem:4096"), &[])
            .expect("agent");
    }
    a.add_framework(fid("greedy"), fw(&["batch"]), &[])
        .expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers.len(), 4, "greedy holds the whole cluster");
    // Two agents' worth comes back (tasks finished); the guaranteed role must get it.
    a.set_quota("prod", quota("cpus:6;mem:6144", "cpus:100"), false)
        .expect("quota");
    a.add_framework(fid("prod-fw"), fw(&["prod"]), &[])
        .expect("fw");
    for o in c.offers.iter().take(2) {
        a.recover(&o.agent, &o.framework, &o.role, &o.resources, None, secs(0));
    }
    let c = a.allocate(secs(0), None);
    let prod: f64 = c
        .offers
        .iter()
        .filter(|o| o.role == "prod")
        .map(|o| o.resources.cpus())
        .sum();
    assert_eq!(prod, 8.0, "{c:?}");
    assert!(c.offers.iter().all(|o| o.role == "prod"));
}

#[test]
fn headroom_is_held_back_for_guarantees() {
    let mut a = alloc();
    for i in 0..4 {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:4;mem:4096"), &[])
            .expect("agent");
    }
    a.set_quota("prod", quota("cpus:8", ""), false)
        .expect("quota");
    a.add_framework(fid("other"), fw(&["batch"]), &[])
        .expect("fw");
    let c = a.allocate(secs(0), None);
    let cpus: f64 = c.offers.iter().map(|o| o.resources.cpus()).sum();
    assert_eq!(cpus, 8.0, "8 cpus stay free for prod's guarantee");
    a.add_framework(fid("prod-fw"), fw(&["prod"]), &[])
        .expect("fw");
    let c = a.allocate(secs(0), None);
    let prod: f64 = c
        .offers
        .iter()
        .filter(|o| o.role == "prod")
        .map(|o| o.resources.cpus())
        .sum();
    assert_eq!(prod, 8.0);
}

#[test]
fn limits_are_never_exceeded() {
    let mut a = alloc();
    for i in 0..5 {
        a.add_agent(aid(&format!("s{i}")), agent("cpus:4;mem:4096"), &[])
            .expect("agent");
    }
    a.set_quota("capped", quota("", "cpus:6"), false)
        .expect("quota");
    a.add_framework(fid("f"), fw(&["capped"]), &[]).expect("fw");
    for round in 0..3 {
        let c = a.allocate(secs(round), None);
        let cpus: f64 = a
            .roles()
            .iter()
            .filter(|r| r.name == "capped")
            .map(|r| r.allocated.get("cpus").map_or(0.0, |s| s.as_f64()))
            .sum();
        assert!(cpus <= 6.0, "round {round}: {cpus}");
        assert!(c.offers.iter().all(|o| o.resources.cpus() <= 6.0));
    }
    let err = a.set_quota("capped", quota("", "cpus:2"), false);
    assert!(
        matches!(err, Err(AllocatorError::LimitBelowConsumption(..))),
        "{err:?}"
    );
    a.set_quota("capped", quota("", "cpus:2"), true)
        .expect("forced");
    assert!(matches!(
        a.set_quota("x", quota("cpus:3", "cpus:2"), false),
        Err(AllocatorError::InvalidQuota(..))
    ));
    assert!(matches!(
        a.set_quota("*", quota("cpus:1", ""), false),
        Err(AllocatorError::InvalidQuota(..))
    ));
}

#[test]
fn filters_block_until_they_expire_or_more_frees_up() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    let c = a.allocate(secs(0), None);
    let o = &c.offers[0];
    a.recover(
        &o.agent,
        &o.framework,
        &o.role,
        &o.resources,
        Some(secs(5)),
        secs(0),
    );
    assert!(a.allocate(secs(1), None).offers.is_empty(), "filtered");
    assert!(
        a.allocate(secs(4), None).offers.is_empty(),
        "still filtered"
    );
    let c = a.allocate(secs(5), None);
    assert_eq!(c.offers.len(), 1, "filter expired");
    // A filter on part of the agent does not block a bigger offer.
    let part = res("cpus:1;mem:1024");
    let o = &c.offers[0];
    let keep = o.resources.checked_sub(&part).expect("fits");
    a.recover(
        &o.agent,
        &o.framework,
        &o.role,
        &part,
        Some(secs(100)),
        secs(5),
    );
    assert!(a.allocate(secs(6), None).offers.is_empty());
    a.recover(&o.agent, &o.framework, &o.role, &keep, None, secs(6));
    assert_eq!(a.allocate(secs(7), None).offers.len(), 1);
}

#[test]
fn suppress_and_revive() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.add_framework(fid("f"), fw(&["a", "b"]), &[]).expect("fw");
    a.suppress(&fid("f"), None);
    assert!(a.allocate(secs(0), None).offers.is_empty());
    a.revive(&fid("f"), Some(&["b".to_string()]));
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers.len(), 1);
    assert_eq!(c.offers[0].role, "b");
    let o = &c.offers[0];
    a.recover(
        &o.agent,
        &o.framework,
        &o.role,
        &o.resources,
        Some(secs(1000)),
        secs(0),
    );
    assert!(
        a.allocate(secs(1), None).offers.is_empty(),
        "filtered in b, suppressed in a"
    );
    a.revive(&fid("f"), None);
    assert_eq!(
        a.allocate(secs(2), None).offers.len(),
        1,
        "revive clears filters"
    );
}

#[test]
fn inactive_agents_and_frameworks_get_nothing() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    a.deactivate_agent(&aid("s1"));
    assert!(a.allocate(secs(0), None).offers.is_empty());
    a.activate_agent(&aid("s1"));
    a.deactivate_framework(&fid("f"));
    assert!(a.allocate(secs(0), None).offers.is_empty());
    a.activate_framework(&fid("f"));
    let c = a.allocate(secs(0), Some(&[aid("s1"), aid("nope")]));
    assert_eq!(c.offers.len(), 1);
    a.remove_framework(&fid("f"));
    assert!(a.allocated_on(&aid("s1")).is_empty());
    a.remove_agent(&aid("s1"));
    assert!(a.total().is_empty());
}

#[test]
fn reservations_only_to_their_role_and_ancestors() {
    let mut a = alloc();
    a.add_agent(
        aid("s1"),
        agent("cpus:2;mem:1024;cpus(web):2;mem(eng):512"),
        &[],
    )
    .expect("agent");
    a.add_framework(fid("other"), fw(&["ads"]), &[])
        .expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers[0].resources, res("cpus:2;mem:1024"));
    a.add_framework(fid("web"), fw(&["web"]), &[]).expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers[0].resources, res("cpus(web):2"), "{c:?}");
    a.add_framework(fid("engweb"), fw(&["eng/web"]), &[])
        .expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(
        c.offers[0].resources,
        res("mem(eng):512"),
        "ancestor reservation"
    );
    let roles = a.roles();
    let eng = roles.iter().find(|r| r.name == "eng").expect("eng");
    assert_eq!(eng.reserved.get("mem"), Some(&Scalar::from_milli(512_000)));
}

#[test]
fn dynamic_reserve_and_unreserve() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.apply(
        &aid("s1"),
        &ResourceOp::Reserve(res("cpus(db):1;mem(db):1024")),
    )
    .expect("reserve free");
    assert_eq!(
        a.agent_total(&aid("s1")),
        Some(&res("cpus:3;mem:3072;cpus(db):1;mem(db):1024"))
    );
    assert!(matches!(
        a.apply(&aid("s1"), &ResourceOp::Reserve(res("cpus:1"))),
        Err(AllocatorError::InvalidReservation(..))
    ));
    assert!(matches!(
        a.apply(&aid("s1"), &ResourceOp::Reserve(res("cpus(db):9"))),
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.add_framework(fid("db"), fw(&["db"]), &[]).expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(
        c.offers[0].resources,
        a.agent_total(&aid("s1")).expect("known").clone()
    );
    // RESERVE inside an ACCEPT: the offered unreserved cpus become reserved, still held.
    a.apply(&aid("s1"), &ResourceOp::Reserve(res("cpus(db):1")))
        .expect("reserve held");
    assert_eq!(
        a.allocated_on(&aid("s1")),
        res("cpus:2;mem:3072;cpus(db):2;mem(db):1024")
    );
    let err = a.apply(&aid("s1"), &ResourceOp::Unreserve(res("cpus(db):2")));
    assert!(
        matches!(err, Err(AllocatorError::ReservationInUse(..))),
        "{err:?}"
    );
    a.recover(
        &aid("s1"),
        &fid("db"),
        "db",
        &res("cpus(db):2;mem(db):1024"),
        None,
        secs(0),
    );
    a.apply(
        &aid("s1"),
        &ResourceOp::Unreserve(res("cpus(db):2;mem(db):1024")),
    )
    .expect("free now");
    assert!(a.roles().iter().all(|r| r.reserved.is_empty()));
    assert!(matches!(
        a.apply(&aid("zz"), &ResourceOp::Unreserve(res("cpus(db):1"))),
        Err(AllocatorError::UnknownAgent(..))
    ));
}

#[test]
fn gpu_and_region_gates() {
    let mut a = Allocator::new(AllocatorConfig::default(), Some("eu".into()));
    a.add_agent(aid("gpu"), agent("cpus:4;mem:4096;gpus:1"), &[])
        .expect("agent");
    let mut far = agent("cpus:4;mem:4096");
    far.domain = Some(FaultDomain {
        region: "us".into(),
        zone: "z".into(),
    });
    a.add_agent(aid("far"), far, &[]).expect("agent");
    a.add_framework(fid("plain"), fw(&["*"]), &[]).expect("fw");
    assert!(a.allocate(secs(0), None).offers.is_empty());
    let mut smart = fw(&["*"]);
    smart.gpu_aware = true;
    smart.region_aware = true;
    a.add_framework(fid("smart"), smart, &[]).expect("fw");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers.len(), 2);
    assert!(c.offers.iter().all(|o| o.framework == fid("smart")));
}

#[test]
fn min_allocatable_blocks_crumbs() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:0.005;mem:16;disk:100"), &[])
        .expect("agent");
    a.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    assert!(a.allocate(secs(0), None).offers.is_empty());
    let cfg = AllocatorConfig {
        min_allocatable: vec![],
        ..AllocatorConfig::default()
    };
    let mut b = Allocator::new(cfg, None);
    b.add_agent(aid("s1"), agent("cpus:0.005;mem:16"), &[])
        .expect("agent");
    b.add_framework(fid("f"), fw(&["*"]), &[]).expect("fw");
    assert_eq!(b.allocate(secs(0), None).offers.len(), 1);
}

#[test]
fn maintenance_inverse_offers_once_per_framework() {
    let mut a = alloc();
    a.add_agent(
        aid("s1"),
        agent("cpus:4;mem:4096"),
        &[(fid("f"), "*".into(), res("cpus:1;mem:128"))],
    )
    .expect("agent");
    a.add_agent(aid("s2"), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.add_framework(
        fid("f"),
        fw(&["*"]),
        &[(aid("s1"), "*".into(), res("cpus:1;mem:128"))],
    )
    .expect("fw");
    assert_eq!(
        a.allocated_on(&aid("s1")),
        res("cpus:1;mem:128"),
        "not counted twice"
    );
    let u = Unavailability {
        start: secs(1000),
        duration: Some(secs(3600)),
    };
    a.set_unavailability(&aid("s1"), Some(u));
    let c = a.allocate(secs(0), None);
    assert_eq!(
        c.inverse_offers,
        vec![InverseOffer {
            framework: fid("f"),
            agent: aid("s1"),
            unavailability: u
        }]
    );
    assert!(
        a.allocate(secs(1), None).inverse_offers.is_empty(),
        "one outstanding"
    );
    a.inverse_offer_answer(&aid("s1"), &fid("f"), false, Some(secs(10)), secs(1));
    assert!(
        a.allocate(secs(5), None).inverse_offers.is_empty(),
        "declined with filter"
    );
    assert_eq!(a.allocate(secs(11), None).inverse_offers.len(), 1);
    a.inverse_offer_answer(&aid("s1"), &fid("f"), true, None, secs(12));
    assert!(
        a.allocate(secs(13), None).inverse_offers.is_empty(),
        "accepted"
    );
    a.set_unavailability(&aid("s1"), None);
    assert!(a.allocate(secs(14), None).inverse_offers.is_empty());
}

#[test]
fn recovered_failover_state_is_validated() {
    let mut a = alloc();
    let err = a.add_agent(
        aid("s1"),
        agent("cpus:1"),
        &[(fid("f"), "*".into(), res("cpus:2"))],
    );
    assert!(matches!(
        err,
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.add_agent(aid("s1"), agent("cpus:1;mem:64"), &[])
        .expect("agent");
    assert!(matches!(
        a.add_agent(aid("s1"), agent("cpus:1"), &[]),
        Err(AllocatorError::DuplicateAgent(..))
    ));
    assert!(matches!(
        a.add_framework(fid("f"), fw(&[" x"]), &[]),
        Err(AllocatorError::InvalidRole(..))
    ));
    let err = a.add_framework(
        fid("f"),
        fw(&["*"]),
        &[(aid("s1"), "*".into(), res("cpus:5"))],
    );
    assert!(matches!(
        err,
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.add_framework(
        fid("f"),
        fw(&["*"]),
        &[(aid("s1"), "*".into(), res("cpus:1"))],
    )
    .expect("fw");
    assert_eq!(a.allocated_on(&aid("s1")), res("cpus:1"));
    assert_eq!(a.total(), res("cpus:1;mem:64"));
}

#[test]
fn allocator_can_move_between_threads() {
    fn send<T: Send + Sync>(_: &T) {}
    send(&alloc());
}

#[test]
fn an_agent_never_granted_keeps_no_copy_of_its_total() {
    let mut a = alloc();
    a.add_agent(aid("s1"), agent("cpus:4;mem:1024"), &[])
        .expect("agent");
    let ai = 0;
    assert!(a.agents[ai].free.is_none());
    assert_eq!(a.available_on(&aid("s1")), res("cpus:4;mem:1024"));
    // A reservation changes the total; the pool, still all of it, follows without a copy.
    a.apply(&aid("s1"), &ResourceOp::Reserve(res("cpus(db):1")))
        .expect("reserved");
    assert!(a.agents[ai].free.is_none());
    assert_eq!(
        a.available_on(&aid("s1")),
        res("cpus:3;cpus(db):1;mem:1024")
    );
    // The first grant gives the agent its own pool, which takes back what is released.
    a.add_framework(fid("f1"), fw(&["*"]), &[])
        .expect("framework");
    let c = a.allocate(secs(0), None);
    assert_eq!(c.offers.len(), 1);
    assert_eq!(c.offers[0].resources, res("cpus:3;mem:1024"));
    assert_eq!(a.available_on(&aid("s1")), res("cpus(db):1"));
    assert!(a.agents[ai].free.is_some());
    give_back(&mut a, &c);
    assert_eq!(
        a.available_on(&aid("s1")),
        res("cpus:3;cpus(db):1;mem:1024")
    );
    assert_eq!(a.free_recomputed(), a.free);
}
