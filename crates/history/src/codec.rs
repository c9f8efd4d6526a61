//! The stored form of history: one store key per (entity, tier, chunk of [`CHUNK_SLOTS`] slots),
//! the value a small binary record holding every series of that entity for those slots.
//!
//! ```text
//!  key:   <prefix>/<fine|coarse>/<cluster | node/<id> | app/<name>>/<chunk number>
//!  value: version u8 · tier u8 · chunk i64 LE · series count u8 ·
//!         per series: code u8 · CHUNK_SLOTS × bf16 u16 LE
//! ```
//!
//! A chunk of 12 series is 3.5 KB; ids are percent-escaped (`/` and `%`) in keys.

use crate::ring::{Ring, MISSING};
use crate::{Entity, Series, Tier, CHUNK_SLOTS};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 1;

/// Why a stored chunk could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// The key does not name a chunk under the prefix.
    #[error("not a history chunk key: {0:?}")]
    BadKey(String),
    /// The value is shorter than its header says, or of an unknown version.
    #[error("malformed history chunk ({0})")]
    Malformed(&'static str),
    /// The key and the value disagree.
    #[error("history chunk {0:?} does not match its key")]
    Mismatch(String),
}

/// A decoded chunk.
pub(crate) struct Decoded {
    pub tier: Tier,
    pub chunk: i64,
    pub series: Vec<(Series, Vec<u16>)>,
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Fine => "fine",
        Tier::Coarse => "coarse",
    }
}

/// The store key of a chunk.
pub fn chunk_key(prefix: &str, entity: &Entity, tier: Tier, chunk: i64) -> String {
    let e = match entity {
        Entity::Cluster => "cluster".to_string(),
        Entity::Node(id) => format!("node/{}", escape(id)),
        Entity::App(id) => format!("app/{}", escape(id)),
    };
    format!("{prefix}/{}/{e}/{chunk}", tier_name(tier))
}

/// The entity and tier a chunk key names.
pub fn parse_chunk_key(prefix: &str, key: &str) -> Result<(Entity, Tier), CodecError> {
    let bad = || CodecError::BadKey(key.to_string());
    let rest = key
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(bad)?;
    let (tier, rest) = rest.split_once('/').ok_or_else(bad)?;
    let tier = match tier {
        "fine" => Tier::Fine,
        "coarse" => Tier::Coarse,
        _ => return Err(bad()),
    };
    let (entity, chunk) = rest.rsplit_once('/').ok_or_else(bad)?;
    chunk.parse::<i64>().map_err(|_| bad())?;
    let entity = match entity.split_once('/') {
        None if entity == "cluster" => Entity::Cluster,
        Some(("node", id)) if !id.is_empty() => Entity::Node(unescape(id)),
        Some(("app", id)) if !id.is_empty() => Entity::App(unescape(id)),
        _ => return Err(bad()),
    };
    Ok((entity, tier))
}

/// Encode the slots of `chunk` of every series that has a value in them.
pub(crate) fn encode<'a>(
    tier: Tier,
    chunk: i64,
    series: impl Iterator<Item = (Series, &'a Ring)>,
) -> Vec<u8> {
    let first = chunk * CHUNK_SLOTS;
    let mut body = Vec::new();
    let mut count = 0u8;
    for (s, ring) in series {
        let bits: Vec<u16> = (first..first + CHUNK_SLOTS)
            .map(|slot| ring.bits(slot))
            .collect();
        if bits.iter().all(|&b| b == MISSING) {
            continue;
        }
        count += 1;
        body.push(s.code());
        for b in bits {
            body.extend_from_slice(&b.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(VERSION);
    out.push(tier.code());
    out.extend_from_slice(&chunk.to_le_bytes());
    out.push(count);
    out.extend_from_slice(&body);
    out
}

/// Decode a chunk; series of unknown codes are skipped.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Malformed("short header"));
    }
    if bytes[0] != VERSION {
        return Err(CodecError::Malformed("unknown version"));
    }
    let tier = Tier::from_code(bytes[1]).ok_or(CodecError::Malformed("unknown tier"))?;
    let mut chunk = [0u8; 8];
    chunk.copy_from_slice(&bytes[2..10]);
    let chunk = i64::from_le_bytes(chunk);
    let count = usize::from(bytes[10]);
    let per = 1 + CHUNK_SLOTS as usize * 2;
    let body = &bytes[HEADER..];
    if body.len() != count * per {
        return Err(CodecError::Malformed(
            "length does not match the series count",
        ));
    }
    let series = body
        .chunks_exact(per)
        .filter_map(|rec| {
            let s = Series::from_code(rec[0])?;
            let values = rec[1..]
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            Some((s, values))
        })
        .collect();
    Ok(Decoded {
        tier,
        chunk,
        series,
    })
}
