//! History: recording, both tiers, range queries, chunk round trips and the memory bound.

use super::*;

const T0: i64 = 1_800_000_000;

#[test]
fn a_sample_lands_in_both_tiers_and_the_coarse_slot_is_the_mean() {
    let mut h = History::new();
    let e = Entity::App("web".into());
    for i in 0..30 {
        h.record(
            &e,
            Series::CpusUsed,
            T0 + i * FINE_STEP,
            ((i + 1) % 2) as f64,
        );
    }
    assert_eq!(h.latest(&e, Series::CpusUsed), Some(0.0));
    let fine = h.range(&e, Series::CpusUsed, T0, T0 + 50, 10);
    assert_eq!(
        fine,
        vec![
            (T0, 1.0),
            (T0 + 10, 0.0),
            (T0 + 20, 1.0),
            (T0 + 30, 0.0),
            (T0 + 40, 1.0),
            (T0 + 50, 0.0)
        ]
    );
    // A series that never left 0 takes no memory and reads as empty.
    h.record(&e, Series::GpusAllocated, T0, 0.0);
    assert_eq!(h.latest(&e, Series::GpusAllocated), None);
    assert_eq!(h.max_heap_bytes(), SERIES_BYTES);
    assert!(h.heap_bytes() <= SERIES_BYTES);
    let rings = &h.entities[&e][&Series::CpusUsed];
    let cs = (T0 + 29 * FINE_STEP).div_euclid(COARSE_STEP);
    let mean = rings.coarse.get(cs).expect("coarse sample");
    assert!(mean > 0.3 && mean < 0.7, "mean {mean}");
}

#[test]
fn old_ranges_come_from_the_coarse_tier_after_the_fine_one_wrapped() {
    let mut h = History::new();
    let e = Entity::Cluster;
    // 8 hours of samples: the fine tier keeps the last 6.
    let n = 8 * 3600 / FINE_STEP;
    for i in 0..n {
        h.record(
            &e,
            Series::MemUsed,
            T0 + i * FINE_STEP,
            if i < 360 { 100.0 } else { 5.0 },
        );
    }
    let end = T0 + (n - 1) * FINE_STEP;
    let first_hour = h.range(&e, Series::MemUsed, T0, T0 + 3599, 300);
    assert_eq!(first_hour.len(), 12, "{first_hour:?}");
    assert!(first_hour.iter().all(|(_, v)| *v == 100.0));
    let recent = h.range(&e, Series::MemUsed, end - 60, end, 10);
    assert_eq!(recent.len(), 7);
    assert!(recent.iter().all(|(_, v)| *v == 5.0));
}

#[test]
fn dirty_chunks_round_trip_through_the_store_form() {
    let mut h = History::new();
    let nodes = [
        Entity::Node("agent/1%x".into()),
        Entity::Cluster,
        Entity::App("a_b".into()),
    ];
    let fill = |h: &mut History| {
        for (k, e) in nodes.iter().enumerate() {
            for i in 0..200 {
                h.record(
                    e,
                    Series::CpusAllocated,
                    T0 + i * FINE_STEP,
                    (k * 1000 + i as usize + 1) as f64,
                );
                h.record(e, Series::Tasks, T0 + i * FINE_STEP, 3.0);
            }
        }
    };
    fill(&mut h);
    let mut whole = History::new();
    fill(&mut whole);
    let all = whole.take_dirty("/meseta/history");
    // Taken a few at a time, the same chunks come out, each once.
    let mut chunks = Vec::new();
    loop {
        let some = h.take_dirty_at_most("/meseta/history", 2);
        assert!(some.len() <= 2);
        if some.is_empty() {
            break;
        }
        chunks.extend(some);
    }
    assert!(all.len() > 2, "several batches: {}", all.len());
    assert_eq!(chunks, all);
    assert!(h.take_dirty("/meseta/history").is_empty(), "taken once");
    let mut back = History::new();
    for (key, bytes) in &chunks {
        back.load_chunk("/meseta/history", key, bytes)
            .expect("loads");
    }
    for e in &nodes {
        for s in [Series::CpusAllocated, Series::Tasks] {
            let a = h.range(e, s, T0, T0 + 2000, 10);
            assert_eq!(a, back.range(e, s, T0, T0 + 2000, 10), "{e:?} {s:?}");
            assert_eq!(a.len(), 200);
        }
    }
    // After a reload, recording goes on and only the touched chunks are dirty.
    back.record(&Entity::Cluster, Series::Tasks, T0 + 2000, 4.0);
    assert_eq!(back.take_dirty("/p").len(), 2);
}

#[test]
fn bad_chunks_are_refused_with_the_reason() {
    let mut h = History::new();
    assert!(matches!(
        h.load_chunk("/p", "/q/fine/cluster/1", &[]),
        Err(CodecError::BadKey(_))
    ));
    assert!(matches!(
        h.load_chunk("/p", "/p/fine/cluster/1", &[1, 0]),
        Err(CodecError::Malformed(_))
    ));
    assert!(matches!(
        h.load_chunk("/p", "/p/fine/pod/x/1", &[]),
        Err(CodecError::BadKey(_))
    ));
    let mut ok = History::new();
    ok.record(&Entity::Cluster, Series::CpusUsed, T0, 1.0);
    let chunks = ok.take_dirty("/p");
    let (key, bytes) = chunks
        .iter()
        .find(|(k, _)| k.contains("/coarse/"))
        .expect("coarse");
    let fine_key = key.replace("/coarse/", "/fine/");
    assert!(matches!(
        h.load_chunk("/p", &fine_key, bytes),
        Err(CodecError::Mismatch(_))
    ));
    let mut cut = bytes.clone();
    cut.pop();
    assert!(matches!(
        h.load_chunk("/p", key, &cut),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn memory_is_bounded_per_series_and_gone_entities_are_swept() {
    let mut h = History::new();
    for n in 0..10 {
        let e = Entity::Node(format!("n{n}"));
        h.record(&e, Series::CpusUsed, T0, 1.0);
        h.record(&e, Series::MemUsed, T0, 1.0);
    }
    assert_eq!(h.max_heap_bytes(), 20 * SERIES_BYTES);
    assert!(
        h.heap_bytes() <= 20 * 2 * 64,
        "one value each: a run per ring"
    );
    assert_eq!(SERIES_BYTES, (2160 + 4032) * 2);
    // Fifteen days later, a new sample of one node pushes everything else out of the window.
    let later = T0 + 15 * 86400;
    h.record(&Entity::Node("n0".into()), Series::CpusUsed, later, 2.0);
    h.sweep(later);
    assert_eq!(h.entities().count(), 1, "only n0 holds data");
}

#[test]
fn metric_names_map_to_series_and_back() {
    for s in Series::ALL {
        assert_eq!(Series::from_metric(s.metric()), Some(s));
        assert_eq!(Series::from_code(s.code()), Some(s));
    }
    assert_eq!(Series::from_metric("nope"), None);
}

#[test]
fn steady_series_take_little_and_changing_ones_at_most_the_bound() {
    let mut h = History::new();
    let steady = Entity::Node("steady".into());
    let busy = Entity::Node("busy".into());
    // A day of samples: the node's total never changes, its use at every sample.
    for i in 0..8640 {
        let t = T0 + i * FINE_STEP;
        h.record(&steady, Series::CpusTotal, t, 4.0);
        h.record(&busy, Series::CpusUsed, t, (i % 97) as f64 / 10.0);
    }
    let steady_bytes = h.heap_bytes() - {
        let mut only_busy = History::new();
        for i in 0..8640 {
            only_busy.record(
                &busy,
                Series::CpusUsed,
                T0 + i * FINE_STEP,
                (i % 97) as f64 / 10.0,
            );
        }
        only_busy.heap_bytes()
    };
    assert!(
        steady_bytes <= 128,
        "a steady series takes {steady_bytes} bytes"
    );
    assert!(h.heap_bytes() <= h.max_heap_bytes());
    assert_eq!(h.max_heap_bytes(), 2 * SERIES_BYTES);
    let end = T0 + 8639 * FINE_STEP;
    assert_eq!(h.latest(&steady, Series::CpusTotal), Some(4.0));
    assert_eq!(
        h.range(&steady, Series::CpusTotal, end - 60, end, 10).len(),
        7
    );
    let early = h.range(&steady, Series::CpusTotal, T0, T0 + 3600, 300);
    assert_eq!(
        early.len(),
        13,
        "the first hour from the coarse tier: {early:?}"
    );
}
