//! Tests for [`Attributes`]: text syntax, JSON and the v0 map.

use super::*;
use serde_json::json;

fn attrs(s: &str) -> Attributes {
    Attributes::parse(s).expect("valid attributes")
}

#[test]
fn parse_example() {
    let a = attrs("rack:r1;zone:eu-1a;workload:stateless;level:10;keys:[1000-1500]");
    assert_eq!(a.0.len(), 5);
    assert_eq!(a.get("rack"), Some(&AttrValue::Text("r1".into())));
    assert_eq!(a.get("zone"), Some(&AttrValue::Text("eu-1a".into())));
    assert_eq!(
        a.get("level"),
        Some(&AttrValue::Scalar(Scalar::from_milli(10_000)))
    );
    assert_eq!(
        a.get("keys"),
        Some(&AttrValue::Ranges(
            Ranges::parse("[1000-1500]").expect("ok")
        ))
    );
    assert_eq!(a.get("missing"), None);
}

#[test]
fn parse_newlines_colons_and_text_chars() {
    let a = attrs("os:linux/x86_64\nhost:node.example-1;;\n; v : 1.5 ");
    assert_eq!(a.0.len(), 3);
    assert_eq!(
        a.get("v"),
        Some(&AttrValue::Scalar(Scalar::from_milli(1500)))
    );
    assert_eq!(
        a.get("host"),
        Some(&AttrValue::Text("node.example-1".into()))
    );
    // Only the first ':' splits; the rest is the value, which then fails the text charset.
    assert!(Attributes::parse("url:http://x").is_err());
    assert_eq!(attrs("n:-5").get("n"), Some(&AttrValue::Text("-5".into())));
    assert!(attrs("").is_empty());
}

#[test]
fn parse_bad_inputs() {
    for (input, token) in [
        ("rack", "rack"),
        (":r1", ":r1"),
        ("rack:", "rack:"),
        ("rack:r 1", "rack:r 1"),
        ("bugs:{a,b}", "bugs:{a,b}"),
        ("keys:[5-1]", "keys:[5-1]"),
        ("ok:1;bad:x!y", "bad:x!y"),
        ("ra ck:r1", "ra ck:r1"),
    ] {
        match Attributes::parse(input) {
            Err(AttributeError::InvalidToken { token: t, .. }) => assert_eq!(t, token, "{input}"),
            other => panic!("{input} should fail, got {other:?}"),
        }
    }
    let msg = Attributes::parse("bugs:{a,b}")
        .expect_err("set")
        .to_string();
    assert!(msg.contains("bugs:{a,b}") && msg.contains("sets"), "{msg}");
}

#[test]
fn display_roundtrip() {
    let a = attrs("rack:r1;level:10.5;keys:[1000-1500,1600-1700]");
    assert_eq!(
        a.to_string(),
        "rack:r1;level:10.5;keys:[1000-1500,1600-1700]"
    );
    assert_eq!(attrs(&a.to_string()), a);
}

#[test]
fn json_matches_mesos_format() {
    let a = attrs("rack:r1;level:10;keys:[1000-1500]");
    let expected = json!([
        {"name":"rack","type":"TEXT","text":{"value":"r1"}},
        {"name":"level","type":"SCALAR","scalar":{"value":10.0}},
        {"name":"keys","type":"RANGES","ranges":{"range":[{"begin":1000,"end":1500}]}}
    ]);
    assert_eq!(serde_json::to_value(&a).expect("ser"), expected);
    let back: Attributes = serde_json::from_value(expected).expect("de");
    assert_eq!(back, a);
}

#[test]
fn json_errors() {
    for bad in [
        json!([{"name":"a","type":"SET","set":{"item":["x"]}}]),
        json!([{"name":"a","type":"TEXT","scalar":{"value":1.0}}]),
        json!([{"name":"a","type":"SCALAR","scalar":{"value":-1.0}}]),
    ] {
        assert!(
            serde_json::from_value::<Attributes>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn v0_map_shape() {
    let a = attrs("rack:r1;level:10;keys:[1000-1500,1600-1700]");
    assert_eq!(
        serde_json::Value::Object(a.v0_map()),
        json!({"rack":"r1","level":10.0,"keys":"[1000-1500, 1600-1700]"})
    );
}
