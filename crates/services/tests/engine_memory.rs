//! Heap bytes the services engine holds per running instance, measured with a counting global
//! allocator (this test is its own binary so nothing else allocates meanwhile). It counts the
//! bytes requested, not the allocator's rounding, and is deterministic: no timing involved.
//! Inline size and map overhead are included because the instance maps live on the heap.

// A counting `GlobalAlloc` is necessarily unsafe code; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use meseta_api::marathon::AppDefinition;
use meseta_api::scheduler::{IdValue, Offer, TaskStatus};
use meseta_services::engine::Engine;
use meseta_services::validate::validate_app;
use meseta_types::{Resources, TaskState};
use serde_json::json;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const AGENTS: usize = 100;
const APPS: usize = 10;
const PER_APP: u32 = 100;

fn offer(round: usize, agent: usize) -> Offer {
    Offer {
        id: IdValue::new(format!("o{round}-{agent}")),
        framework_id: IdValue::new("fw"),
        agent_id: IdValue::new(format!("agent-{agent:04}-0123456789abcdef")),
        hostname: format!("host-{agent:04}.example.com"),
        resources: Resources::parse("cpus:8;mem:8192;disk:1000;ports:[31000-32000]")
            .expect("resources"),
        ..Offer::default()
    }
}

/// Deploy `APPS` apps of `PER_APP` instances like `meseta bench services` and run them all.
fn run_everything(e: &mut Engine) -> usize {
    for a in 0..APPS {
        let def: AppDefinition = serde_json::from_value(json!({
            "id": format!("/bench-svc-{a}"), "cmd": "sleep 1000", "cpus": 0.01, "mem": 16,
            "instances": PER_APP,
        }))
        .expect("definition");
        let app = validate_app(&def).expect("valid");
        e.put_app(app, 1.0, false, true).expect("create");
    }
    let mut running = 0;
    for round in 0..10 {
        let now = 2.0 + round as f64;
        let offers: Vec<Offer> = (0..AGENTS).map(|a| offer(round, a)).collect();
        for l in e.offers(&offers, now) {
            for t in l.tasks {
                let mut s = TaskStatus::new(t.task_id.clone(), TaskState::Running, now);
                s.agent_id = Some(l.agent_id.clone());
                e.on_status(&s, now);
                running += 1;
            }
        }
        e.tick(now);
        drop(e.take_outputs());
    }
    running
}

#[test]
fn the_engine_holds_few_bytes_per_running_instance() {
    let mut e = Engine::new(7);
    // Warm up (first-use allocations of the test harness and statics), then measure a second
    // engine from empty to everything running.
    let _ = run_everything(&mut e);
    drop(e);
    let before = LIVE.load(Ordering::Relaxed);
    let mut e = Engine::new(8);
    let running = run_everything(&mut e);
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(running, APPS * PER_APP as usize, "everything placed");
    assert_eq!(e.deployments().count(), 0, "deployments finished");
    // Apps themselves (definitions, versions) are per app: measure them apart.
    let per_app_bytes: isize = {
        let b = LIVE.load(Ordering::Relaxed);
        let apps: Vec<_> = e.apps().cloned().collect();
        let a = LIVE.load(Ordering::Relaxed);
        drop(apps);
        a - b
    };
    let engine = after - before;
    let per_instance = (engine - per_app_bytes) as f64 / running as f64;
    println!(
        "engine {engine} B for {running} instances: {per_instance:.0} B per instance \
         (apps {per_app_bytes} B)"
    );
    assert!(per_instance <= 350.0, "{per_instance:.0} B per instance");
}
