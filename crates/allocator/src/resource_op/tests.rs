//! Tests of RESERVE / UNRESERVE / CREATE / DESTROY on free and held resources.

use crate::tests::{agent, fw, res};
use crate::{Allocator, AllocatorError, ResourceOp};
use meseta_types::{AgentId, DiskInfo, FrameworkId, Resource, Resources};
use std::time::Duration;

fn s1() -> AgentId {
    AgentId::new("s1")
}

fn db() -> FrameworkId {
    FrameworkId::new("db")
}

#[test]
fn reserve_and_unreserve_what_an_offer_holds() {
    let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
    a.add_agent(s1(), agent("cpus:4;mem:4096"), &[])
        .expect("agent");
    a.add_framework(db(), fw(&["db"]), &[]).expect("fw");
    let c = a.allocate(Duration::ZERO, None);
    assert_eq!(c.offers.len(), 1);
    // A reservation for another role than the offer's is refused.
    assert!(matches!(
        a.apply_held(&s1(), &db(), "db", &ResourceOp::Reserve(res("cpus(web):1"))),
        Err(AllocatorError::InvalidReservation(..))
    ));
    // More than the offer holds is refused.
    assert!(matches!(
        a.apply_held(&s1(), &db(), "db", &ResourceOp::Reserve(res("cpus(db):5"))),
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.apply_held(&s1(), &db(), "db", &ResourceOp::Reserve(res("cpus(db):1")))
        .expect("reserve held");
    assert_eq!(a.allocated_on(&s1()), res("cpus:3;mem:4096;cpus(db):1"));
    assert_eq!(a.available_on(&s1()), Resources::new());
    assert!(matches!(
        a.apply_held(
            &s1(),
            &db(),
            "db",
            &ResourceOp::Unreserve(res("cpus(db):2"))
        ),
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.apply_held(
        &s1(),
        &db(),
        "db",
        &ResourceOp::Unreserve(res("cpus(db):1")),
    )
    .expect("unreserve held");
    assert_eq!(a.allocated_on(&s1()), res("cpus:4;mem:4096"));
    assert_eq!(a.agent_total(&s1()), Some(&res("cpus:4;mem:4096")));
}

fn volume(role: &str, id: &str, mb: f64) -> Resources {
    let mut r = Resources::new();
    let disk = Resource::scalar("disk", mb).expect("disk");
    let v = Resource {
        role: role.into(),
        ..disk
    }
    .with_disk(DiskInfo {
        persistence_id: id.into(),
        container_path: "data".into(),
        read_only: false,
    });
    r.push(v).expect("volume");
    r
}

#[test]
fn operator_volumes_are_offered_to_their_role_and_destroyed_when_free() {
    let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
    a.add_agent(s1(), agent("cpus:4;mem:4096;disk:100"), &[])
        .expect("agent");
    a.apply(
        &s1(),
        &ResourceOp::Reserve(res("cpus(db):1;mem(db):64;disk(db):64")),
    )
    .expect("reserve");
    // Not on unreserved disk, not more than is reserved, not twice.
    assert!(a
        .apply(&s1(), &ResourceOp::Create(volume("*", "v1", 1.0)))
        .is_err());
    assert!(matches!(
        a.apply(&s1(), &ResourceOp::Create(volume("db", "v1", 65.0))),
        Err(AllocatorError::InsufficientResources(..))
    ));
    a.apply(&s1(), &ResourceOp::Create(volume("db", "v1", 32.0)))
        .expect("create");
    assert!(matches!(
        a.apply(&s1(), &ResourceOp::Create(volume("db", "v1", 1.0))),
        Err(AllocatorError::InvalidReservation(..))
    ));
    let total = a.agent_total(&s1()).expect("total").clone();
    assert_eq!(total.volumes().count(), 1);
    assert_eq!(total.disk(), 100.0);

    // Only the volume's role is offered it.
    let web = FrameworkId::new("web");
    a.add_framework(web.clone(), fw(&["web"]), &[])
        .expect("web");
    let c = a.allocate(Duration::ZERO, None);
    assert!(c.offers.iter().all(|o| o.resources.volumes().count() == 0));
    a.remove_framework(&web);
    let db = FrameworkId::new("db");
    a.add_framework(db.clone(), fw(&["db"]), &[]).expect("db");
    let c = a.allocate(Duration::from_secs(1), None);
    let offered: Resources = c
        .offers
        .iter()
        .filter(|o| o.framework == db)
        .fold(Resources::new(), |acc, o| acc.plus(&o.resources));
    assert!(offered.contains(&volume("db", "v1", 32.0)), "{offered}");

    // Offered: in use. Given back: destroyed into plain reserved disk.
    assert!(matches!(
        a.apply(&s1(), &ResourceOp::Destroy(volume("db", "v1", 32.0))),
        Err(AllocatorError::ReservationInUse(..))
    ));
    a.recover(&s1(), &db, "db", &offered, None, Duration::from_secs(2));
    a.apply(&s1(), &ResourceOp::Destroy(volume("db", "v1", 32.0)))
        .expect("destroy");
    let total = a.agent_total(&s1()).expect("total");
    assert_eq!(total.volumes().count(), 0);
    assert_eq!(
        total.reserved("db"),
        res("cpus(db):1;mem(db):64;disk(db):64")
    );
}

#[test]
fn volumes_created_and_destroyed_inside_an_accept_stay_with_the_framework() {
    let mut a = Allocator::new(crate::AllocatorConfig::default(), None);
    a.add_agent(s1(), agent("cpus:4;mem:4096;disk(db):64"), &[])
        .expect("agent");
    let db = FrameworkId::new("db");
    a.add_framework(db.clone(), fw(&["db"]), &[]).expect("db");
    assert_eq!(a.allocate(Duration::ZERO, None).offers.len(), 1);
    assert!(a
        .apply_held(
            &s1(),
            &db,
            "web",
            &ResourceOp::Create(volume("web", "v", 8.0))
        )
        .is_err());
    a.apply_held(
        &s1(),
        &db,
        "db",
        &ResourceOp::Create(volume("db", "v", 8.0)),
    )
    .expect("create held");
    let held = a.allocated_on(&s1());
    assert!(held.contains(&volume("db", "v", 8.0)), "{held}");
    assert_eq!(held.disk(), 64.0);
    a.apply_held(
        &s1(),
        &db,
        "db",
        &ResourceOp::Destroy(volume("db", "v", 8.0)),
    )
    .expect("destroy held");
    assert_eq!(a.allocated_on(&s1()).volumes().count(), 0);
    assert_eq!(a.allocated_on(&s1()).disk(), 64.0);
}
