//! Mesos RecordIO framing (`<decimal length>\n<bytes>`) for the scheduler event stream, plus the
//! ASCII-only compact JSON encoding that Mesos clients expect inside each record.
//!
//! The master frames events with [`encode`] over [`to_ascii_json`]; the client
//! ([`crate::client`]) parses the chunked body with [`Decoder`].

use serde::Serialize;
use serde_json::ser::Formatter;
use std::io;

/// The largest record [`Decoder`] accepts by default (64 MiB).
pub const DEFAULT_MAX_RECORD: usize = 64 * 1024 * 1024;

/// Longest length header accepted: `u64::MAX` has 20 digits.
const MAX_HEADER_DIGITS: usize = 20;

/// Why a RecordIO stream could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordIoError {
    /// The length header holds something other than decimal digits.
    #[error("invalid recordio length header {header:?}")]
    InvalidHeader {
        /// The offending header bytes, lossily decoded.
        header: String,
    },
    /// A record of length zero (forbidden by the format).
    #[error("recordio record of length 0")]
    EmptyRecord,
    /// A record longer than the decoder's limit.
    #[error("recordio record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// Frames one record: `<len>\n<json>`.
pub fn encode(json: &[u8]) -> Vec<u8> {
    let header = json.len().to_string();
    let mut out = Vec::with_capacity(header.len() + 1 + json.len());
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json);
    out
}

/// A streaming RecordIO decoder: [`feed`](Decoder::feed) it bytes in any chunking and pull complete
/// records with [`next_record`](Decoder::next_record).
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Read position in `buf` (consumed bytes are dropped lazily).
    pos: usize,
    max_record: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder accepting records up to [`DEFAULT_MAX_RECORD`] bytes.
    pub fn new() -> Decoder {
        Decoder::with_max_record(DEFAULT_MAX_RECORD)
    }

    /// A decoder accepting records up to `max_record` bytes.
    pub fn with_max_record(max_record: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            max_record,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed but not yet returned as records.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete record, `Ok(None)` if more bytes are needed. After an error the stream
    /// is unusable.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordIoError> {
        let rest = &self.buf[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            check_partial_header(rest)?;
            return Ok(None);
        };
        let len = parse_header(&rest[..nl])?;
        if len > self.max_record as u64 {
            return Err(RecordIoError::TooLarge {
                len,
                max: self.max_record,
            });
        }
        // `len <= max_record`, which is a usize.
        let len = len as usize;
        let body = &rest[nl + 1..];
        if body.len() < len {
            return Ok(None);
        }
        let record = body[..len].to_vec();
        self.pos += nl + 1 + len;
        Ok(Some(record))
    }
}

fn header_error(header: &[u8]) -> RecordIoError {
    RecordIoError::InvalidHeader {
        header: String::from_utf8_lossy(&header[..header.len().min(32)]).into_owned(),
    }
}

/// Rejects garbage early, before its newline arrives.
fn check_partial_header(rest: &[u8]) -> Result<(), RecordIoError> {
    if rest.len() > MAX_HEADER_DIGITS || !rest.iter().all(u8::is_ascii_digit) {
        return Err(header_error(rest));
    }
    Ok(())
}

fn parse_header(header: &[u8]) -> Result<u64, RecordIoError> {
    if header.is_empty()
        || header.len() > MAX_HEADER_DIGITS
        || !header.iter().all(u8::is_ascii_digit)
    {
        return Err(header_error(header));
    }
    let text = std::str::from_utf8(header).map_err(|_| header_error(header))?;
    let len: u64 = text.parse().map_err(|_| header_error(header))?;
    if len == 0 {
        return Err(RecordIoError::EmptyRecord);
    }
    Ok(len)
}

/// A compact JSON formatter that escapes every non-ASCII character as `\uXXXX` (UTF-16 units).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Compact, ASCII-only JSON of `v`, or the serializer's error (non-string map keys, or a
/// `Serialize` impl that fails).
pub fn try_to_ascii_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    v.serialize(&mut ser)?;
    Ok(out)
}

/// Compact, ASCII-only JSON of `v` (no raw newlines, non-ASCII escaped as `\uXXXX`).
///
/// Meant for meseta's wire types, whose serialization cannot fail; should a value fail anyway,
/// the result is a JSON `null` so that a stream stays well-formed.
pub fn to_ascii_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    try_to_ascii_json(v).unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::*;
    use meseta_types::TaskState;
    use serde_json::{json, Value};

    fn decode_all(d: &mut Decoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = d.next_record().expect("valid stream") {
            out.push(r);
        }
        out
    }

    #[test]
    fn encode_frames_with_decimal_length() {
        assert_eq!(
            encode(br#"{"type":"HEARTBEAT"}"#),
            b"20\n{\"type\":\"HEARTBEAT\"}".to_vec()
        );
    }

    #[test]
    fn decodes_at_every_chunk_boundary() {
        let records: Vec<Vec<u8>> = vec![
            br#"{"type":"HEARTBEAT"}"#.to_vec(),
            b"x".to_vec(),
            "{\"a\":\"0123456789abcdef\"}".repeat(7).into_bytes(),
        ];
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        for split in 0..=stream.len() {
            let mut d = Decoder::new();
            d.feed(&stream[..split]);
            let mut got = decode_all(&mut d);
            d.feed(&stream[split..]);
            got.extend(decode_all(&mut d));
            assert_eq!(got, records, "split at {split}");
            assert_eq!(d.buffered(), 0);
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.feed(std::slice::from_ref(b));
            got.extend(decode_all(&mut d));
        }
        assert_eq!(got, records);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut d = Decoder::new();
        d.feed(b"12x\n{}");
        assert!(matches!(
            d.next_record(),
            Err(RecordIoError::InvalidHeader { .. })
        ));
        let mut d = Decoder::new();
        d.feed(b"abc");
        assert!(
            d.next_record().is_err(),
            "garbage is rejected before its newline"
        );
        let mut d = Decoder::new();
        d.feed(b"0\n");
        assert_eq!(d.next_record(), Err(RecordIoError::EmptyRecord));
        let mut d = Decoder::with_max_record(4);
        d.feed(b"5\nhello");
        assert!(matches!(
            d.next_record(),
            Err(RecordIoError::TooLarge { len: 5, .. })
        ));
    }

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let v = json!({"msg": "héllo 😀\nok", "n": 1.5});
        let out = to_ascii_json(&v);
        assert!(out.is_ascii());
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(text.contains("h\\u00e9llo \\ud83d\\ude00\\nok"), "{text}");
        assert!(!out.contains(&b'\n'), "no raw newline: {text}");
        let back: Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(back, v);
    }

    fn roundtrip_event(expected: Value) -> Event {
        let ev: Event = serde_json::from_value(expected.clone()).expect("deserialize event");
        let bytes = to_ascii_json(&ev);
        let back: Value = serde_json::from_slice(&bytes).expect("valid json");
        assert_eq!(back, expected);
        ev
    }

    #[test]
    fn events_match_mesos_json() {
        roundtrip_event(
            json!({"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"F"},
            "heartbeat_interval_seconds":15.0,"master_info":{"id":"m","port":5050}}}),
        );
        roundtrip_event(json!({"type":"RESCIND","rescind":{"offer_id":{"value":"O"}}}));
        roundtrip_event(json!({"type":"ERROR","error":{"message":"Framework failed over"}}));
        roundtrip_event(json!({"type":"HEARTBEAT"}));
        roundtrip_event(json!({"type":"FAILURE","failure":{"agent_id":{"value":"S"}}}));
        roundtrip_event(json!({"type":"FAILURE","failure":{"agent_id":{"value":"S"},
            "executor_id":{"value":"e"},"status":256}}));
        roundtrip_event(json!({"type":"MESSAGE","message":{"agent_id":{"value":"S"},
            "executor_id":{"value":"e"},"data":"aGk="}}));
        let ev = roundtrip_event(
            json!({"type":"UPDATE","update":{"status":{"task_id":{"value":"t1"},
            "state":"TASK_STARTING","source":"SOURCE_EXECUTOR","agent_id":{"value":"S0"},
            "executor_id":{"value":"t1"},"timestamp":1.7e9,"uuid":"q8GxAAAAAAAAAAAAAAAAAA=="}}}),
        );
        let Event::Update { update } = ev else {
            panic!("not an update")
        };
        assert_eq!(update.status.state, TaskState::Starting);
        let ack = Acknowledge::for_status(&update.status).expect("has uuid");
        assert_eq!(ack.uuid, "q8GxAAAAAAAAAAAAAAAAAA==");
    }

    #[test]
    fn offers_event_matches_mesos_json() {
        let expected = json!({"type":"OFFERS","offers":{"offers":[{"id":{"value":"m-O1"},
            "framework_id":{"value":"m-0000"},"agent_id":{"value":"m-S0"},"hostname":"a1",
            "url":{"scheme":"http","address":{"hostname":"a1","ip":"127.0.0.1","port":5051}},
            "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":4.0},"role":"*"},
              {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*"}],
            "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}]}});
        let Event::Offers { offers } = roundtrip_event(expected) else {
            panic!("not offers")
        };
        assert_eq!(offers.offers[0].resources.cpus(), 4.0);
    }

    #[test]
    fn pymesos_calls_parse() {
        let sub: Call =
            serde_json::from_value(json!({"type":"SUBSCRIBE","subscribe":{"framework_info":
            {"user":"alice","name":"demo","hostname":"h","failover_timeout":100,
             "capabilities":[{"type":"GPU_RESOURCES"}],"unknown_field":1}}}))
            .expect("subscribe");
        let CallKind::Subscribe { subscribe } = &sub.kind else {
            panic!("not subscribe")
        };
        assert_eq!(subscribe.framework_info.failover_timeout, Some(100.0));
        assert_eq!(sub.framework_id, None);

        let accept = json!({"type":"ACCEPT","framework_id":{"value":"F"},"accept":{
            "offer_ids":[{"value":"O1"}],"operations":[{"type":"LAUNCH","launch":{"task_infos":[{
              "name":"t","task_id":{"value":"t1"},"agent_id":{"value":"S0"},
              "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}],
              "command":{"shell":true,"value":"sleep 1","environment":{"variables":[{"name":"A","value":"b"}]}},
              "kill_policy":{"grace_period":{"nanoseconds":3000000000i64}}}]}}],
            "filters":{"refuse_seconds":5.0}}});
        let call: Call = serde_json::from_value(accept.clone()).expect("accept");
        let CallKind::Accept { accept: a } = &call.kind else {
            panic!("not accept")
        };
        let Operation::Launch { launch } = &a.operations[0] else {
            panic!("not launch")
        };
        assert_eq!(launch.task_infos[0].resources.cpus(), 0.5);
        assert_eq!(
            launch.task_infos[0].command.as_ref().map(|c| c.shell),
            Some(true)
        );
        let back: Value = serde_json::from_slice(&to_ascii_json(&call)).expect("json");
        assert_eq!(
            back["accept"]["operations"][0]["launch"]["task_infos"][0]["command"]["value"],
            "sleep 1"
        );
        assert_eq!(back["framework_id"], json!({"value":"F"}));
    }

    #[test]
    fn calls_with_optional_payloads_and_nulls() {
        for (v, name) in [
            (
                json!({"type":"REVIVE","framework_id":{"value":"F"}}),
                "REVIVE",
            ),
            (
                json!({"type":"REVIVE","framework_id":{"value":"F"},"revive":{"roles":["a"]}}),
                "REVIVE",
            ),
            (
                json!({"type":"SUPPRESS","framework_id":{"value":"F"}}),
                "SUPPRESS",
            ),
            (
                json!({"type":"REQUEST","framework_id":{"value":"F"},"request":{"requests":[]}}),
                "REQUEST",
            ),
            (
                json!({"type":"RECONCILE","framework_id":{"value":"F"},"reconcile":{"tasks":null}}),
                "RECONCILE",
            ),
            (
                json!({"type":"KILL","framework_id":{"value":"F"},"kill":{"task_id":{"value":"t"}}}),
                "KILL",
            ),
            (
                json!({"type":"DECLINE","framework_id":{"value":"F"},"decline":{"offer_ids":[{"value":"O"}]}}),
                "DECLINE",
            ),
        ] {
            let call: Call = serde_json::from_value(v).expect(name);
            assert_eq!(call.kind.type_name(), name);
        }
        assert!(serde_json::from_value::<Call>(
            json!({"type":"ACCEPT","framework_id":{"value":"F"}})
        )
        .is_err());
        assert!(serde_json::from_value::<Call>(json!({"type":"NOPE"})).is_err());
    }
}
