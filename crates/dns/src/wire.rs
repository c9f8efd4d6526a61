//! Answers encoded once per snapshot: for every name with A or SRV records, the whole response
//! to a plain query for it (one question, no EDNS) is encoded when the snapshot is built, and a
//! query is answered by copying it and patching in the query's id, flags and question.
//!
//! ```text
//!  query:    [id|flags|1 0 0 0] [qname qtype IN]
//!  template: [0 |QR AA |1 n 0 m] [qname qtype IN] [answers … additionals …]  (names → offset 12)
//!  answer:   template with the query's id, RD and CD bits and question bytes (same length)
//! ```
//!
//! The templates are made with the same records and flags the [`crate::handler`] answers with,
//! so both paths give the same bytes; anything else (other types, EDNS, unknown names, names
//! outside the domain, malformed packets) goes to the handler.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

/// Largest answer sent without EDNS (RFC 1035 §4.2.1).
const UDP_MAX: usize = 512;
/// Where the question starts.
const HEADER: usize = 12;
/// Longest name on the wire.
const NAME_MAX: usize = 255;

/// The pre-encoded answers of one name.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    a: Option<Box<[u8]>>,
    srv: Option<Box<[u8]>>,
}

impl Wire {
    /// The templates for `name`'s A and SRV answers (`None` where it has no such records, or
    /// where the answer would not fit a plain UDP response).
    pub(crate) fn new(name: &LowerName, a: &[Record], srv: &[Record], targets: &[Record]) -> Wire {
        Wire {
            a: template(name, RecordType::A, a, &[]),
            srv: template(name, RecordType::SRV, srv, targets),
        }
    }
}

/// `name` on the wire (lower-case, uncompressed), the key of [`Wire`]s.
pub(crate) fn key(name: &LowerName) -> Box<[u8]> {
    Name::from(name.clone())
        .to_bytes()
        .unwrap_or_default()
        .into_boxed_slice()
}

fn template(
    name: &LowerName,
    qtype: RecordType,
    answers: &[Record],
    additionals: &[Record],
) -> Option<Box<[u8]>> {
    if answers.is_empty() {
        return None;
    }
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.add_query(Query::query(Name::from(name.clone()), qtype));
    m.add_answers(answers.iter().cloned());
    m.add_additionals(additionals.iter().cloned());
    let bytes = m.to_vec().ok()?;
    (bytes.len() <= UDP_MAX).then(|| bytes.into_boxed_slice())
}

/// Writes into `out` the answer to `query` from `lookup` (wire name → templates); false when
/// the query is not a plain one this path answers.
pub(crate) fn answer<'a>(
    query: &[u8],
    lookup: impl FnOnce(&[u8]) -> Option<&'a Wire>,
    out: &mut Vec<u8>,
) -> bool {
    if query.len() < HEADER + 5 {
        return false;
    }
    // A query (QR 0), opcode QUERY, not truncated, no AA: only RD may be set; then only CD,
    // rcode 0; one question and nothing else (no EDNS).
    if query[2] & !0x01 != 0
        || query[3] & !0x10 != 0
        || query[4..HEADER] != [0, 1, 0, 0, 0, 0, 0, 0]
    {
        return false;
    }
    let mut name = [0u8; NAME_MAX];
    let mut at = HEADER;
    let mut len = 0;
    loop {
        let Some(&l) = query.get(at) else {
            return false;
        };
        let l = usize::from(l);
        // A pointer (or a reserved label type) has no place in the first name.
        if l & 0xC0 != 0 || len + l + 1 > NAME_MAX {
            return false;
        }
        let Some(label) = query.get(at..at + 1 + l) else {
            return false;
        };
        for (d, s) in name[len..len + 1 + l].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        len += 1 + l;
        at += 1 + l;
        if l == 0 {
            break;
        }
    }
    let end = at + 4;
    if query.len() != end || query[at + 2..end] != [0, 1] {
        return false;
    }
    let qtype = u16::from_be_bytes([query[at], query[at + 1]]);
    let Some(wire) = lookup(&name[..len]) else {
        return false;
    };
    let template = match qtype {
        1 => wire.a.as_deref(),
        33 => wire.srv.as_deref(),
        _ => None,
    };
    let Some(template) = template.filter(|t| t.len() >= end) else {
        return false;
    };
    out.clear();
    out.extend_from_slice(template);
    out[..2].copy_from_slice(&query[..2]);
    out[2] |= query[2] & 0x01;
    out[3] |= query[3] & 0x10;
    out[HEADER..end].copy_from_slice(&query[HEADER..end]);
    true
}
