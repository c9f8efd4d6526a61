//! The direct decoding of the calls a launching framework makes most (ACCEPT with LAUNCH
//! operations, ACKNOWLEDGE and DECLINE) and of the events it receives most (UPDATE, OFFERS).
//!
//! [`Call`]'s derived decoding (a flattened, internally tagged [`CallKind`]) buffers the whole
//! body into serde's intermediate content tree, and each [`Operation`] goes through a
//! `serde_json::Value` so that an unsupported one can be kept as received: an ACCEPT of
//! thousands of tasks is copied three times before it is typed. [`decode_hot`] reads these calls
//! straight from the bytes into their payload types instead, in one pass: each known payload
//! key is decoded into its type whatever the call's `type` says, and the payload the `type`
//! names is kept.
//!
//! It is strict where the derived decoding is lenient or tells a Mesos-worded error: any other
//! call type, an operation other than LAUNCH, a duplicated key, a `null` payload, or any body
//! the direct types do not take give `None`, and the caller decodes the body the usual way.
//! So every body it decodes is one the usual way decodes to the same [`Call`] (the tests check
//! this on both sides), and every error is still worded by the usual way. [`decode_hot_event`]
//! does the same for the client's [`Event`]s.

use serde::Deserialize;

use super::{null_default, Accept, Acknowledge, Call, CallKind, Decline, Filters, IdValue};
use super::{Event, Launch, OfferList, Operation, Update};

/// The hot calls' fields; other keys are skipped unread (serde's `IgnoredAny`).
#[derive(Deserialize)]
struct HotCall {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    framework_id: Option<IdValue>,
    #[serde(default)]
    accept: Option<HotAccept>,
    #[serde(default)]
    acknowledge: Option<Acknowledge>,
    #[serde(default)]
    decline: Option<Decline>,
}

/// [`Accept`] with LAUNCH operations only.
#[derive(Deserialize)]
struct HotAccept {
    #[serde(default, deserialize_with = "null_default")]
    offer_ids: Vec<IdValue>,
    #[serde(default, deserialize_with = "null_default")]
    operations: Vec<HotLaunch>,
    #[serde(default)]
    filters: Option<Filters>,
}

/// A LAUNCH operation (its `type` is checked after decoding).
#[derive(Deserialize)]
struct HotLaunch {
    #[serde(rename = "type")]
    kind: String,
    launch: Launch,
}

/// `body` decoded when it is an ACCEPT of LAUNCH operations, an ACKNOWLEDGE or a DECLINE that
/// the direct types take; `None` otherwise (see the module docs).
pub fn decode_hot(body: &[u8]) -> Option<Call> {
    let hot: HotCall = serde_json::from_slice(body).ok()?;
    let kind = match hot.kind.as_str() {
        "ACCEPT" => {
            let a = hot.accept?;
            let mut operations = Vec::with_capacity(a.operations.len());
            for op in a.operations {
                if op.kind != "LAUNCH" {
                    return None;
                }
                operations.push(Operation::Launch { launch: op.launch });
            }
            CallKind::Accept {
                accept: Accept {
                    offer_ids: a.offer_ids,
                    operations,
                    filters: a.filters,
                },
            }
        }
        "ACKNOWLEDGE" => CallKind::Acknowledge {
            acknowledge: hot.acknowledge?,
        },
        "DECLINE" => CallKind::Decline {
            decline: hot.decline?,
        },
        _ => return None,
    };
    Some(Call {
        framework_id: hot.framework_id,
        kind,
    })
}

/// The hot events' fields; other keys are skipped unread.
#[derive(Deserialize)]
struct HotEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    update: Option<Update>,
    #[serde(default)]
    offers: Option<OfferList>,
}

/// `record` decoded when it is an UPDATE or OFFERS event that the direct types take; `None`
/// otherwise, and the caller decodes it the usual way.
pub fn decode_hot_event(record: &[u8]) -> Option<Event> {
    let hot: HotEvent = serde_json::from_slice(record).ok()?;
    match hot.kind.as_str() {
        "UPDATE" => hot.update.map(|update| Event::Update { update }),
        "OFFERS" => hot.offers.map(|offers| Event::Offers { offers }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The usual decoding: through a `Value`, as the master's edge does.
    fn usual(body: &[u8]) -> Option<Call> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        serde_json::from_value(v).ok()
    }

    /// `decode_hot` gives `expect_hot` (decoded or not), and what it decodes the usual way
    /// decodes the same.
    fn check(body: serde_json::Value, expect_hot: bool) {
        let bytes = serde_json::to_vec(&body).expect("json");
        let hot = decode_hot(&bytes);
        assert_eq!(hot.is_some(), expect_hot, "{body}");
        if let Some(hot) = hot {
            assert_eq!(Some(hot), usual(&bytes), "{body}");
        }
    }

    fn task(id: &str) -> serde_json::Value {
        json!({"name": id, "task_id": {"value": id}, "agent_id": {"value": "a1"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
            "command": {"shell": true, "value": "sleep 10", "user": "nobody",
                "environment": {"variables": [{"name": "A", "value": "1"},
                    {"name": "S", "type": "SECRET",
                     "secret": {"type": "REFERENCE", "reference": {"name": "/a/s"}}}]}},
            "labels": {"labels": [{"key": "k", "value": "v"}]}})
    }

    #[test]
    fn launches_acknowledgements_and_declines_decode_as_usual() {
        let fw = json!({"value": "f1"});
        check(
            json!({"framework_id": fw, "type": "ACCEPT", "accept": {
                "offer_ids": [{"value": "o1"}],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task("t1"), task("t2")]}}],
                "filters": {"refuse_seconds": 0.0}}}),
            true,
        );
        // Payload before type, nulls and missing optional fields, unknown keys.
        check(
            json!({"accept": {"offer_ids": null, "operations": [
                {"launch": {"task_infos": null}, "type": "LAUNCH", "extra": [1, {"x": null}]}]},
                "type": "ACCEPT", "framework_id": null, "unknown": {"a": 1}}),
            true,
        );
        check(json!({"type": "ACCEPT", "accept": {}}), true);
        check(
            json!({"type": "ACKNOWLEDGE", "framework_id": fw, "acknowledge": {
                "agent_id": {"value": "a1"}, "task_id": {"value": "t1"}, "uuid": "AAAA"}}),
            true,
        );
        check(
            json!({"type": "DECLINE", "framework_id": fw, "decline": {
                "offer_ids": [{"value": "o1"}], "filters": {"refuse_seconds": 5}}}),
            true,
        );
        // Another call's payload beside: ignored by both when it decodes.
        check(
            json!({"type": "DECLINE", "decline": {"offer_ids": []},
                "acknowledge": {"agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": "x"}}),
            true,
        );
    }

    #[test]
    fn everything_else_is_left_to_the_usual_decoding() {
        let fw = json!({"value": "f1"});
        let not_hot = [
            // Other call types.
            json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}),
            json!({"type": "TEARDOWN", "framework_id": fw}),
            json!({"type": "REVIVE", "framework_id": fw}),
            // Other operations, or a LAUNCH beside them.
            json!({"type": "ACCEPT", "accept": {"operations": [
                {"type": "RESERVE", "reserve": {"resources": []}}]}}),
            json!({"type": "ACCEPT", "accept": {"operations": [
                {"type": "LAUNCH", "launch": {"task_infos": []}},
                {"type": "GROW_VOLUME", "grow_volume": {}}]}}),
            json!({"type": "ACCEPT", "accept": {"operations": [
                {"type": "LAUNCH_GROUP", "launch_group": {}, "launch": {"task_infos": []}}]}}),
            // Errors the usual decoding words.
            json!({"type": "ACCEPT", "accept": null}),
            json!({"type": "ACCEPT"}),
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH"}]}}),
            json!({"type": "ACCEPT", "accept": {"operations": [{"type": "LAUNCH", "launch": null}]}}),
            json!({"type": "ACCEPT", "accept": {"operations": [
                {"type": "LAUNCH", "launch": {"task_infos": [{"name": 1}]}}]}}),
            json!({"type": "ACKNOWLEDGE", "acknowledge": {"uuid": "x"}}),
            json!({"type": 7, "decline": {}}),
            json!({"decline": {}}),
            json!([1, 2]),
            // A payload of another type that the direct types refuse.
            json!({"type": "DECLINE", "decline": {}, "accept": {"operations": 3}}),
        ];
        for body in not_hot {
            check(body, false);
        }
        // Duplicated keys (JSON objects keep the last; the direct types refuse).
        let dup = br#"{"type":"DECLINE","type":"DECLINE","decline":{}}"#;
        assert!(decode_hot(dup).is_none());
        assert!(decode_hot(b"not json").is_none());
    }

    /// `decode_hot_event` gives `expect_hot`, and what it decodes the usual way decodes the same.
    fn check_event(body: serde_json::Value, expect_hot: bool) {
        let bytes = serde_json::to_vec(&body).expect("json");
        let hot = decode_hot_event(&bytes);
        assert_eq!(hot.is_some(), expect_hot, "{body}");
        if let Some(hot) = hot {
            let usual: Event = serde_json::from_value(body.clone()).expect("usual");
            assert_eq!(hot, usual, "{body}");
        }
    }

    #[test]
    fn updates_and_offers_decode_as_usual() {
        let status = json!({"task_id": {"value": "t1"}, "state": "TASK_RUNNING",
            "agent_id": {"value": "a1"}, "uuid": "AAAAAAAAAAAAAAAAAAAAAA==", "timestamp": 1.5,
            "source": "SOURCE_EXECUTOR", "message": "m", "unknown": [1]});
        check_event(
            json!({"type": "UPDATE", "update": {"status": status}}),
            true,
        );
        check_event(
            json!({"update": {"status": status}, "type": "UPDATE", "x": 1}),
            true,
        );
        let offer = json!({"id": {"value": "o1"}, "framework_id": {"value": "f1"},
            "agent_id": {"value": "a1"}, "hostname": "h1",
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 32000}]}}],
            "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]});
        check_event(
            json!({"type": "OFFERS", "offers": {"offers": [offer]}}),
            true,
        );
        check_event(json!({"type": "HEARTBEAT"}), false);
        check_event(
            json!({"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": "f"}}}),
            false,
        );
        check_event(json!({"type": "UPDATE", "update": null}), false);
        check_event(
            json!({"type": "UPDATE", "update": {"status": {"state": 3}}}),
            false,
        );
        assert!(decode_hot_event(br#"{"type":"UPDATE","type":"UPDATE"}"#).is_none());
    }
}
