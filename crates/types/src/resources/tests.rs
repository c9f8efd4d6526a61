//! Unit and property tests for [`Resources`]: parsing, arithmetic, display, JSON.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn res(s: &str) -> Resources {
    Resources::parse(s).expect("valid resources")
}

#[test]
fn parse_full_example() {
    let r = res("cpus:4;mem:8192;disk:20000;ports:[31000-32000];cpus(web):2;bugs:{a,b}");
    assert_eq!(r.cpus(), 6.0);
    assert_eq!(r.unreserved().cpus(), 4.0);
    assert_eq!(r.reserved("web").cpus(), 2.0);
    assert_eq!(r.mem(), 8192.0);
    assert_eq!(r.disk(), 20000.0);
    assert_eq!(r.gpus(), 0.0);
    assert_eq!(
        r.ranges("ports"),
        Ranges::parse("[31000-32000]").expect("ok")
    );
    assert_eq!(r.iter().count(), 6);
    let roles: Vec<String> = r.roles().into_iter().collect();
    assert_eq!(roles, vec!["*".to_owned(), "web".to_owned()]);
}

#[test]
fn parse_whitespace_empty_tokens_and_merging() {
    let r = res(" cpus : 1.5 ;; mem:10;\n cpus:0.5; ports:[1-2]; ports:[3-4];");
    assert_eq!(r, res("cpus:2;mem:10;ports:[1-4]"));
    assert!(res("").is_empty());
    assert!(res("cpus:0;ports:[];s:{}").is_empty());
}

#[test]
fn parse_bad_inputs_name_the_token() {
    let cases = [
        ("cpus:-1", "cpus:-1"),
        ("cpus:abc", "cpus:abc"),
        ("mem", "mem"),
        ("ports:[5-1]", "ports:[5-1]"),
        ("cpus(web:2", "cpus(web:2"),
        ("cpusweb):2", "cpusweb):2"),
        ("cpus(web)x:2", "cpus(web)x:2"),
        ("cpus():2", "cpus():2"),
        (":2", ":2"),
        ("cpus:NaN", "cpus:NaN"),
        ("cpus:inf", "cpus:inf"),
        ("a:1:2", "a:1:2"),
        ("cpus:", "cpus:"),
        ("s:{a,b", "s:{a,b"),
        ("s:{a,,b}", "s:{a,,b}"),
        ("mem:1;mem(r):[1-2]", "mem(r):[1-2]"),
        ("x:{a};x:1", "x:1"),
    ];
    for (input, token) in cases {
        match Resources::parse(input) {
            Err(ResourceError::InvalidToken { token: t, .. }) => {
                assert_eq!(t, token, "input {input}")
            }
            other => panic!("{input} should fail with InvalidToken, got {other:?}"),
        }
    }
    let msg = Resources::parse("cpus:-1")
        .expect_err("negative")
        .to_string();
    assert!(msg.contains("cpus:-1") && msg.contains("negative"), "{msg}");
}

#[test]
fn display_order_and_roles() {
    let r = res("zeta:1;ports:[5-6];bugs:{b,a};gpus:1;disk:3;mem:2;cpus(web):1;cpus:4;alpha:0.25");
    assert_eq!(
        r.to_string(),
        "cpus:4;cpus(web):1;mem:2;disk:3;gpus:1;ports:[5-6];alpha:0.25;bugs:{a,b};zeta:1"
    );
    assert_eq!(res(&r.to_string()), r);
}

#[test]
fn push_kind_mismatch_and_validation() {
    let mut r = res("cpus:1");
    let bad = Resource::new(
        "cpus",
        "*",
        Value::Ranges(Ranges::parse("[1-2]").expect("ok")),
    );
    assert!(matches!(
        r.push(bad),
        Err(ResourceError::KindMismatch { .. })
    ));
    let other_role = Resource::new("cpus", "web", Value::Set(Set::new(["a"])));
    assert!(r.push(other_role).is_err());
    let bad_name = Resource::new("cp;us", "*", Value::Scalar(Scalar::from_milli(1)));
    assert!(matches!(
        r.push(bad_name),
        Err(ResourceError::InvalidName { .. })
    ));
    r.push(Resource::scalar("cpus", 0.5).expect("ok"))
        .expect("same kind");
    assert_eq!(r.cpus(), 1.5);
    assert_eq!(r, res("cpus:1.5"));
}

#[test]
fn add_keeps_self_on_mismatch() {
    let mut a = res("x:1;cpus:1");
    let mut b = Resources::new();
    b.push(Resource::new("x", "*", Value::Set(Set::new(["q"]))))
        .expect("ok");
    b.push(Resource::scalar("cpus", 2.0).expect("ok"))
        .expect("ok");
    a.add(&b);
    assert_eq!(a, res("x:1;cpus:3"));
}

#[test]
fn contains_and_checked_sub() {
    let a = res("cpus:4;mem:100;ports:[1-10];s:{a,b};cpus(web):1");
    let b = res("cpus:1.5;ports:[2-3];s:{a}");
    assert!(a.contains(&b));
    let left = a.checked_sub(&b).expect("contains");
    assert_eq!(
        left,
        res("cpus:2.5;mem:100;ports:[1-1,4-10];s:{b};cpus(web):1")
    );
    // Per (name, role): unreserved cpus do not satisfy a reservation for another role.
    let want = res("cpus(db):1");
    assert!(!a.contains(&want));
    match a.checked_sub(&want) {
        Err(ResourceError::Insufficient { have, want }) => {
            assert!(have.contains("cpus:4"));
            assert_eq!(want, "cpus(db):1");
        }
        other => panic!("expected insufficient, got {other:?}"),
    }
    assert!(a.checked_sub(&res("ports:[10-11]")).is_err());
    assert!(a.checked_sub(&res("mem:100.001")).is_err());
    assert_eq!(a.checked_sub(&a), Ok(Resources::new()));
}

#[test]
fn role_helpers() {
    let a = res("cpus:4;cpus(web):1;mem(web):5;ports:[1-2];ports(db):[3-4]");
    assert_eq!(a.reserved("web"), res("cpus(web):1;mem(web):5"));
    assert_eq!(a.unreserved(), res("cpus:4;ports:[1-2]"));
    assert_eq!(a.with_role("x"), res("cpus(x):5;mem(x):5;ports(x):[1-4]"));
    assert_eq!(a.with_role("*"), res("cpus:5;mem:5;ports:[1-4]"));
    assert_eq!(a.ranges("ports"), Ranges::parse("[1-4]").expect("ok"));
    assert!(a.ranges("nope").is_empty());
}

#[test]
fn v0_summary_shape() {
    let a = res("cpus:4;cpus(web):0.5;ports:[31000-32000,33000-34000];bugs:{b,a};foo:1.25");
    let s = serde_json::Value::Object(a.v0_summary());
    assert_eq!(
        s,
        json!({
            "cpus": 4.5, "gpus": 0.0, "mem": 0.0, "disk": 0.0, "foo": 1.25,
            "ports": "[31000-32000, 33000-34000]", "bugs": "{a, b}"
        })
    );
    assert!(s["mem"].is_f64());
    let empty = Resources::new().v0_summary();
    assert_eq!(empty.len(), 4);
    assert!(!empty.contains_key("ports"));
}

#[test]
fn json_matches_mesos_format() {
    let a = res("cpus:4;ports:[31000-32000];bugs:{a,b}");
    let expected = json!([
        {"name":"bugs","type":"SET","set":{"item":["a","b"]},"role":"*"},
        {"name":"cpus","type":"SCALAR","scalar":{"value":4.0},"role":"*"},
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*"}
    ]);
    assert_eq!(serde_json::to_value(&a).expect("ser"), expected);
    let back: Resources = serde_json::from_value(expected).expect("de");
    assert_eq!(back, a);
}

#[test]
fn json_deserialize_leniency() {
    let v = json!([
        {"name":"cpus","type":"SCALAR","scalar":{"value":2},"allocation_info":{"role":"x"}},
        {"name":"mem","type":"SCALAR","scalar":{"value":64.5},"role":"old",
         "reservations":[{"type":"STATIC","role":"a"},{"type":"DYNAMIC","role":"a/b"}]},
        {"name":"disk","type":"SCALAR","scalar":{"value":1},"role":"r","reservations":[]},
        {"name":"gpus","type":"SCALAR","scalar":{"value":1},"reservation":{"principal":"p"}}
    ]);
    let r: Resources = serde_json::from_value(v).expect("de");
    assert_eq!(r, res("cpus:2;mem(a/b):64.5;disk(r):1;gpus:1"));
}

#[test]
fn json_deserialize_errors() {
    let cases = [
        json!([{"name":"cpus","type":"SCALAR","scalar":{"value":-1.0}}]),
        json!([{"name":"cpus","type":"SCALAR","ranges":{"range":[]}}]),
        json!([{"name":"cpus","type":"TEXT","text":{"value":"x"}}]),
        json!([{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]),
        json!([{"name":"x","type":"SCALAR","scalar":{"value":1}},
               {"name":"x","type":"SET","set":{"item":["a"]}}]),
        json!([{"type":"SCALAR","scalar":{"value":1}}]),
        json!([{"name":"","type":"SCALAR","scalar":{"value":1}}]),
    ];
    for c in cases {
        assert!(
            serde_json::from_value::<Resources>(c.clone()).is_err(),
            "{c}"
        );
    }
    let err = serde_json::from_value::<Resources>(
        json!([{"name":"cpus","type":"SCALAR","scalar":{"value":-1.0}}]),
    )
    .expect_err("negative");
    assert!(err.to_string().contains("cpus"), "{err}");
}

#[test]
fn fractional_exactness() {
    let tenth = res("cpus:0.1");
    let mut sum = Resources::new();
    for _ in 0..10 {
        sum.add(&tenth);
    }
    assert_eq!(sum, res("cpus:1"));
    assert_eq!(sum.cpus(), 1.0);
    let mut left = sum.clone();
    for _ in 0..10 {
        left = left.checked_sub(&tenth).expect("enough");
    }
    assert!(left.is_empty());
    assert!(left.checked_sub(&tenth).is_err());
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cpus".to_owned()),
        Just("mem".to_owned()),
        Just("disk".to_owned()),
        Just("gpus".to_owned()),
        "[a-z]{1,5}",
    ]
}

fn arb_role() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(UNRESERVED.to_owned()),
        1 => "[a-z]{1,3}(/[a-z]{1,2})?",
    ]
}

fn arb_ranges() -> impl Strategy<Value = Ranges> {
    prop::collection::vec((0u64..100_000, 0u64..50), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(b, l)| crate::Range::new(b, b + l))
            .collect()
    })
}

/// Resources where a name's kind is a function of the name, so any two generated values are compatible.
fn arb_resources() -> impl Strategy<Value = Resources> {
    let entry = (
        arb_name(),
        arb_role(),
        0i64..10_000_000,
        arb_ranges(),
        prop::collection::btree_set("[a-c]{1,2}", 0..3),
    );
    prop::collection::vec(entry, 0..8).prop_map(|v| {
        let mut out = Resources::new();
        for (name, role, milli, ranges, set) in v {
            let value = match (name.len() % 3, name.as_str()) {
                (_, "cpus" | "mem" | "disk" | "gpus") | (0, _) => {
                    Value::Scalar(Scalar::from_milli(milli))
                }
                (1, _) => Value::Ranges(ranges),
                _ => Value::Set(Set(set)),
            };
            out.push(Resource::new(name, role, value))
                .expect("compatible by construction");
        }
        out
    })
}

proptest! {
    #[test]
    fn plus_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
        let sum = a.plus(&b);
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        // Ranges and sets are set-like: subtracting b only restores a when they are disjoint.
        let b_only = disjoint_part(&b, &a);
        prop_assert_eq!(a.plus(&b_only).checked_sub(&b_only), Ok(a.clone()));
    }

    #[test]
    fn scalar_plus_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
        let a = a.filter(|r| matches!(r.value, Value::Scalar(_)));
        let b = b.filter(|r| matches!(r.value, Value::Scalar(_)));
        prop_assert_eq!(a.plus(&b).checked_sub(&b), Ok(a.clone()));
        prop_assert!(a.plus(&b).contains(&a));
    }

    #[test]
    fn checked_sub_never_goes_negative(a in arb_resources(), b in arb_resources()) {
        match a.checked_sub(&b) {
            Ok(left) => {
                prop_assert!(a.contains(&b));
                for r in left.iter() {
                    prop_assert!(!r.value.is_empty());
                    if let Value::Scalar(s) = r.value {
                        prop_assert!(s.milli() > 0);
                    }
                }
                prop_assert_eq!(left.plus(&b).contains(&a), true);
            }
            Err(e) => {
                prop_assert!(!a.contains(&b));
                let is_insufficient = matches!(e, ResourceError::Insufficient { .. });
                prop_assert!(is_insufficient);
            }
        }
    }

    #[test]
    fn subtract_in_place_agrees_with_checked_sub(a in arb_resources(), b in arb_resources()) {
        // b taken from a sum that contains it, and b against an unrelated a.
        for have in [a.plus(&b), a.clone()] {
            let mut in_place = have.clone();
            match (have.checked_sub(&b), in_place.subtract(&b)) {
                (Ok(expected), Ok(())) => prop_assert_eq!(in_place, expected),
                (Err(_), Err(e)) => {
                    prop_assert_eq!(&in_place, &have);
                    let is_insufficient = matches!(e, ResourceError::Insufficient { .. });
                    prop_assert!(is_insufficient);
                }
                (expected, got) => prop_assert!(false, "checked_sub {expected:?}, subtract {got:?}"),
            }
        }
    }

    #[test]
    fn display_parse_roundtrip(a in arb_resources()) {
        prop_assert_eq!(Resources::parse(&a.to_string()), Ok(a.clone()));
    }

    #[test]
    fn json_roundtrip(a in arb_resources()) {
        let j = serde_json::to_string(&a).expect("serialize");
        let back: Resources = serde_json::from_str(&j).expect("deserialize");
        prop_assert_eq!(back, a);
    }

    #[test]
    fn tenths_add_up_exactly(n in 1u32..50) {
        let tenth = res("cpus:0.1;mem:0.1");
        let mut sum = Resources::new();
        for _ in 0..n * 10 {
            sum.add(&tenth);
        }
        prop_assert_eq!(sum, res(&format!("cpus:{n};mem:{n}")));
    }
}

/// The part of `b` that shares no range value or set item with `a` (scalars kept as is).
fn disjoint_part(b: &Resources, a: &Resources) -> Resources {
    let mut out = Resources::new();
    for r in b.iter() {
        let other = a.iter().find(|e| e.name == r.name && e.role == r.role);
        let value = match (&r.value, other) {
            (
                Value::Ranges(v),
                Some(Resource {
                    value: Value::Ranges(x),
                    ..
                }),
            ) => Value::Ranges(v.difference(x)),
            (
                Value::Set(v),
                Some(Resource {
                    value: Value::Set(x),
                    ..
                }),
            ) => Value::Set(Set(v.0.difference(&x.0).cloned().collect())),
            (v, _) => v.clone(),
        };
        out.push(Resource::new(r.name.clone(), r.role.clone(), value))
            .expect("compatible by construction");
    }
    out
}

#[test]
fn volumes_are_distinct_items_and_round_trip_through_json() {
    let json = serde_json::json!([
        {"name": "disk", "type": "SCALAR", "scalar": {"value": 100.0},
         "reservations": [{"type": "DYNAMIC", "role": "db"}]},
        {"name": "disk", "type": "SCALAR", "scalar": {"value": 64.0},
         "reservations": [{"type": "DYNAMIC", "role": "db"}],
         "disk": {"persistence": {"id": "v1", "principal": "ops"},
                  "volume": {"container_path": "data", "mode": "RW"}}}
    ]);
    let r: Resources = serde_json::from_value(json).expect("resources");
    assert_eq!(
        r.iter().count(),
        2,
        "a volume is never merged with plain disk: {r}"
    );
    assert_eq!(r.disk(), 164.0);
    let vol = r.volumes().next().expect("one volume");
    assert_eq!(vol.persistence_id(), Some("v1"));
    let d = vol.disk.as_ref().expect("disk info");
    assert_eq!((d.container_path.as_str(), d.read_only), ("data", false));
    assert_eq!(r.to_string(), "disk(db):100;disk(db)[v1:data]:64");
    let back: Resources =
        serde_json::from_value(serde_json::to_value(&r).expect("json")).expect("back");
    assert_eq!(back, r);

    // Plain disk does not cover a volume, and the volume is subtracted as itself.
    let plain = Resources::parse("disk(db):1000").expect("plain");
    assert!(!plain.contains(&r));
    assert!(r.contains(&r.reserved("db")));
    let rest = r.checked_sub(&r.filter(|e| e.disk.is_some())).expect("sub");
    assert_eq!(rest, Resources::parse("disk(db):100").expect("rest"));
    assert_eq!(
        r.without_volumes(),
        Resources::parse("disk(db):164").expect("sum")
    );
    assert_eq!(r.with_role("*").volumes().count(), 1);
}

#[test]
fn only_disk_with_a_persistence_id_is_a_volume() {
    let not_disk = serde_json::json!([{"name": "mem", "type": "SCALAR", "scalar": {"value": 1.0},
        "disk": {"persistence": {"id": "v"}}}]);
    assert!(serde_json::from_value::<Resources>(not_disk).is_err());
    let empty_id = serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 1.0},
        "disk": {"persistence": {"id": ""}}}]);
    assert!(serde_json::from_value::<Resources>(empty_id).is_err());
    let source_only = serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 1.0},
        "disk": {"source": {"type": "PATH"}}}]);
    let r: Resources = serde_json::from_value(source_only).expect("plain disk");
    assert_eq!(r.volumes().count(), 0);
}
