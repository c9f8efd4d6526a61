//! Property tests of the allocator: no double grants, limits hold, guarantees are met.

use crate::tests::{agent, fw, res};
use crate::*;
use meseta_types::{AgentId, FrameworkId, Resources, Scalar};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const ROLES: [&str; 4] = ["a", "b", "c/x", "c/y"];

#[derive(Clone, Debug)]
enum Op {
    Allocate,
    /// Recover the n-th outstanding grant: fraction in percent, with a filter or not.
    Recover(usize, u8, bool),
    Reserve(usize, usize),
    Unreserve(usize, usize),
    Suppress(usize),
    Revive(usize),
    RemoveFramework(usize),
    AddFramework(usize),
    RemoveAgent(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Allocate),
        4 => (0..64usize, 0..=100u8, any::<bool>()).prop_map(|(i, p, f)| Op::Recover(i, p, f)),
        1 => (0..8usize, 0..4usize).prop_map(|(a, r)| Op::Reserve(a, r)),
        1 => (0..8usize, 0..4usize).prop_map(|(a, r)| Op::Unreserve(a, r)),
        1 => (0..6usize).prop_map(Op::Suppress),
        1 => (0..6usize).prop_map(Op::Revive),
        1 => (0..6usize).prop_map(Op::RemoveFramework),
        1 => (0..6usize).prop_map(Op::AddFramework),
        1 => (0..8usize).prop_map(Op::RemoveAgent),
    ]
}

fn aid(i: usize) -> AgentId {
    AgentId::new(format!("s{i}"))
}

fn fid(i: usize) -> FrameworkId {
    FrameworkId::new(format!("f{i}"))
}

fn fw_roles(i: usize) -> FrameworkInfo {
    fw(&[ROLES[i % 4], ROLES[(i + 1) % 4]])
}

fn scaled(r: &Resources, pct: u8) -> Resources {
    let mut out = Resources::new();
    for e in r.iter() {
        let mut e = e.clone();
        if let meseta_types::Value::Scalar(s) = e.value {
            e.value =
                meseta_types::Value::Scalar(Scalar::from_milli(s.milli() * i64::from(pct) / 100));
        }
        let _ = out.push(e);
    }
    out
}

/// Per agent: allocated + available == total, and both within total.
fn check_conservation(a: &Allocator, agents: usize) -> Result<(), TestCaseError> {
    for i in 0..agents {
        let Some(total) = a.agent_total(&aid(i)) else {
            continue;
        };
        let used = a.allocated_on(&aid(i));
        let free = a.available_on(&aid(i));
        prop_assert_eq!(
            &used.plus(&free),
            total,
            "agent s{}: {} + {}",
            i,
            used,
            free
        );
    }
    Ok(())
}

/// Per quota role: (limits, consumption) by resource name.
type LimitsAndUse = BTreeMap<String, (BTreeMap<String, Scalar>, BTreeMap<String, Scalar>)>;

fn limits_of(a: &Allocator) -> LimitsAndUse {
    a.roles()
        .into_iter()
        .filter_map(|r| r.quota.map(|q| (r.name, (q.limits, r.consumed))))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_double_grants_and_limits_hold(
        sizes in prop::collection::vec((1..16u32, 1..32u32), 1..8),
        nfw in 1..6usize,
        limit_a in 0..40u32,
        limit_c in 0..40u32,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut a = Allocator::new(AllocatorConfig::default(), None);
        for (i, (c, m)) in sizes.iter().enumerate() {
            a.add_agent(aid(i), agent(&format!("cpus:{c};mem:{}", m * 256)), &[]).expect("agent");
        }
        for i in 0..nfw {
            a.add_framework(fid(i), fw_roles(i), &[]).expect("fw");
        }
        let lim = |c: u32| Quota { guarantees: BTreeMap::new(), limits: [("cpus".to_string(), Scalar::from_milli(i64::from(c) * 1000))].into() };
        a.set_quota("a", lim(limit_a), true).expect("quota");
        a.set_quota("c", lim(limit_c), true).expect("quota");
        let mut grants: Vec<Allocation> = Vec::new();
        for (t, op) in ops.into_iter().enumerate() {
            let now = Duration::from_secs(t as u64);
            match op {
                Op::Allocate => {
                    let before = limits_of(&a);
                    let free: Vec<Resources> = (0..sizes.len()).map(|i| a.available_on(&aid(i))).collect();
                    let c = a.allocate(now, None);
                    let mut per_agent: BTreeMap<AgentId, Resources> = BTreeMap::new();
                    for g in &c.offers {
                        per_agent.entry(g.agent.clone()).or_default().add(&g.resources);
                    }
                    for (agent, granted) in per_agent {
                        let i: usize = agent.as_str()[1..].parse().expect("index");
                        prop_assert!(free[i].contains(&granted), "granted {} of free {}", granted, free[i]);
                    }
                    for (role, (limits, consumed)) in limits_of(&a) {
                        let (_, was) = &before[&role];
                        for (name, limit) in limits {
                            let now_used = consumed.get(&name).copied().unwrap_or_default();
                            let was_used = was.get(&name).copied().unwrap_or_default();
                            prop_assert!(now_used <= limit.max(was_used), "{} {}: {} > {}", role, name, now_used, limit);
                        }
                    }
                    grants.extend(c.offers);
                }
                Op::Recover(i, pct, filter) => {
                    if !grants.is_empty() {
                        let g = grants.remove(i % grants.len());
                        let part = scaled(&g.resources, pct);
                        let refuse = filter.then(|| Duration::from_secs(3));
                        a.recover(&g.agent, &g.framework, &g.role, &part, refuse, now);
                    }
                }
                Op::Reserve(ag, r) => {
                    let _ = a.apply(&aid(ag), &ResourceOp::Reserve(res(&format!("cpus({}):1", ROLES[r]))));
                }
                Op::Unreserve(ag, r) => {
                    let _ = a.apply(&aid(ag), &ResourceOp::Unreserve(res(&format!("cpus({}):1", ROLES[r]))));
                }
                Op::Suppress(f) => a.suppress(&fid(f), None),
                Op::Revive(f) => a.revive(&fid(f), None),
                Op::RemoveFramework(f) => {
                    a.remove_framework(&fid(f));
                    grants.retain(|g| g.framework != fid(f));
                }
                Op::AddFramework(f) => {
                    let _ = a.add_framework(fid(f), fw_roles(f), &[]);
                }
                Op::RemoveAgent(ag) => {
                    a.remove_agent(&aid(ag));
                    grants.retain(|g| g.agent != aid(ag));
                }
            }
            check_conservation(&a, sizes.len())?;
            let recomputed = a.free_recomputed();
            prop_assert_eq!(recomputed.0.iter().sum::<i64>(), a.free.0.iter().sum::<i64>());
            for (i, v) in recomputed.0.iter().enumerate() {
                prop_assert_eq!(*v, a.free.get(i), "free headroom of name {}", i);
            }
        }
    }

    #[test]
    fn guarantees_met_when_cluster_can(
        sizes in prop::collection::vec((1..16u32, 1..32u32), 1..10),
        others in 1..5usize,
        pct in 1..=100u32,
    ) {
        let cfg = AllocatorConfig { min_allocatable: vec![], ..AllocatorConfig::default() };
        let mut a = Allocator::new(cfg, None);
        let mut cpus = 0u32;
        let mut mem = 0u32;
        for (i, (c, m)) in sizes.iter().enumerate() {
            cpus += c;
            mem += m * 256;
            a.add_agent(aid(i), agent(&format!("cpus:{c};mem:{}", m * 256)), &[]).expect("agent");
        }
        let g_cpus = i64::from(cpus) * 1000 * i64::from(pct) / 100;
        let g_mem = i64::from(mem) * 1000 * i64::from(pct) / 100;
        let q = Quota {
            guarantees: [("cpus".to_string(), Scalar::from_milli(g_cpus)), ("mem".to_string(), Scalar::from_milli(g_mem))].into(),
            limits: BTreeMap::new(),
        };
        a.set_quota("gold", q, false).expect("quota");
        // Others subscribe first and are lighter: only the guarantee logic can save gold.
        for i in 0..others {
            a.add_framework(fid(i), fw(&["*", "batch"]), &[]).expect("fw");
        }
        a.add_framework(FrameworkId::new("gold-fw"), fw(&["gold"]), &[]).expect("fw");
        a.allocate(Duration::ZERO, None);
        let gold = a.roles().into_iter().find(|r| r.name == "gold").expect("gold");
        let got = |n: &str| gold.consumed.get(n).map_or(0, |s| s.milli());
        prop_assert!(got("cpus") >= g_cpus, "cpus {} < {}", got("cpus"), g_cpus);
        prop_assert!(got("mem") >= g_mem, "mem {} < {}", got("mem"), g_mem);
    }
}
