//! The JSON shapes of etcd's v3 gateway (grpc-gateway over the `etcdserverpb` protos) that
//! watches use (the watch stream, and the read that checks a watch's start revision), and the
//! conversions to the store's types.
//!
//! The gateway encodes protobuf's JSON mapping: `int64` fields are JSON strings (`"42"`), `bytes`
//! fields are standard base64, and fields at their default value (0, empty, false) are left out,
//! so every field here has a default.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{KeyValue, LeaseId, Revision, StoreError};

/// base64 for a `bytes` field.
pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes a `bytes` field.
pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, StoreError> {
    B64.decode(text)
        .map_err(|e| StoreError::Backend(format!("etcd sent invalid base64 {text:?}: {e}")))
}

/// `int64` fields travel as strings; accept numbers too.
pub(crate) fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// `int64` fields are sent as strings, as the gateway itself does.
pub(crate) fn ser_i64<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `ResponseHeader`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Header {
    #[serde(deserialize_with = "de_i64")]
    pub revision: Revision,
}

/// `mvccpb.KeyValue`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireKv {
    pub key: String,
    pub value: String,
    #[serde(deserialize_with = "de_i64")]
    pub create_revision: Revision,
    #[serde(deserialize_with = "de_i64")]
    pub mod_revision: Revision,
    #[serde(deserialize_with = "de_i64")]
    pub version: i64,
    #[serde(deserialize_with = "de_i64")]
    pub lease: i64,
}

impl WireKv {
    /// The raw key bytes.
    pub(crate) fn key_bytes(&self) -> Result<Vec<u8>, StoreError> {
        unb64(&self.key)
    }

    /// Converts to a [`KeyValue`] whose key is `key` (already stripped of the namespace).
    pub(crate) fn into_kv(self, key: String) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key,
            value: unb64(&self.value)?,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: (self.lease != 0).then_some(LeaseId(self.lease)),
        })
    }
}

/// `RangeRequest` (only the fields the store uses).
#[derive(Debug, Default, Serialize)]
pub(crate) struct RangeRequest {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub range_end: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_only: bool,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "ser_i64")]
    pub limit: i64,
    /// Read at this past revision (`0`: the latest).
    #[serde(skip_serializing_if = "is_zero", serialize_with = "ser_i64")]
    pub revision: i64,
}

/// `RangeResponse`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RangeResponse {
    pub header: Header,
    pub kvs: Vec<WireKv>,
}

/// `WatchCreateRequest` wrapped in a `WatchRequest`.
#[derive(Debug, Serialize)]
pub(crate) struct WatchRequest {
    pub create_request: WatchCreate,
}

/// `WatchCreateRequest`.
#[derive(Debug, Serialize)]
pub(crate) struct WatchCreate {
    pub key: String,
    pub range_end: String,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "ser_i64")]
    pub start_revision: Revision,
}

/// One line of the watch stream: a result or a gateway error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WatchLine {
    pub result: Option<WatchResponse>,
    pub error: Option<serde_json::Value>,
}

/// `WatchResponse`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WatchResponse {
    pub header: Header,
    pub created: bool,
    pub canceled: bool,
    #[serde(deserialize_with = "de_i64")]
    pub compact_revision: Revision,
    pub cancel_reason: String,
    pub events: Vec<WireEvent>,
}

/// `mvccpb.Event`: `type` is absent for PUT (the enum's zero value).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub kv: WireKv,
}

/// The error body of a failed gateway call: `{"error","code","message"}` (gRPC status code).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    pub code: i32,
    pub message: String,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_as_strings_and_absent_fields() {
        let r: RangeResponse = serde_json::from_str(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"Zm9v","create_revision":"2",
                "mod_revision":"7","version":"3","value":"YmFy","lease":"9"}],"count":"1"}"#,
        )
        .expect("parse");
        assert_eq!(r.header.revision, 7);
        let kv = r.kvs.into_iter().next().expect("one kv");
        assert_eq!(kv.key_bytes().expect("key"), b"foo");
        let kv = kv.into_kv("foo".into()).expect("kv");
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (2, 7, 3, Some(LeaseId(9)))
        );
        assert_eq!(kv.value, b"bar");
        let empty: RangeResponse = serde_json::from_str(r#"{"header":{}}"#).expect("parse");
        assert_eq!((empty.header.revision, empty.kvs.len()), (0, 0));
    }

    #[test]
    fn requests_encode_like_the_gateway() {
        let r = RangeRequest {
            key: b64(b"k"),
            revision: 12,
            ..RangeRequest::default()
        };
        let s = serde_json::to_string(&r).expect("json");
        assert_eq!(s, r#"{"key":"aw==","revision":"12"}"#);
    }

    #[test]
    fn watch_lines() {
        let line: WatchLine = serde_json::from_str(
            r#"{"result":{"header":{"revision":"5"},"events":[{"type":"DELETE",
                "kv":{"key":"YXg=","mod_revision":"5"}},{"kv":{"key":"YXg=","mod_revision":"6"}}]}}"#,
        )
        .expect("parse");
        let res = line.result.expect("result");
        assert_eq!(res.events[0].kind, "DELETE");
        assert_eq!(res.events[1].kind, "");
        let c: WatchLine = serde_json::from_str(
            r#"{"result":{"header":{},"canceled":true,"compact_revision":"4"}}"#,
        )
        .expect("parse");
        assert_eq!(c.result.expect("result").compact_revision, 4);
    }
}
