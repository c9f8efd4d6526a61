//! On-disk encoding of one record of the redb data table: a fixed header
//! (format, create revision, mod revision, version, optional lease) followed by the raw value.
//! Used only by the redb backend; redb sees plain byte slices.

use crate::{KeyValue, LeaseId, StoreError};

/// Bumped if the layout ever changes.
const FORMAT: u8 = 1;
/// format + create + mod + version + lease flag.
const HEADER: usize = 1 + 8 * 3 + 1;

/// Encodes everything but the key (which is the table key).
pub(crate) fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8 + kv.value.len());
    out.push(FORMAT);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    match kv.lease {
        None => out.push(0),
        Some(LeaseId(id)) => {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes the record stored under `key`.
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = |why: &str| StoreError::Backend(format!("corrupt record for key {key:?}: {why}"));
    if bytes.len() < HEADER {
        return Err(corrupt("too short"));
    }
    if bytes[0] != FORMAT {
        return Err(corrupt("unknown format"));
    }
    let int = |at: usize| -> Result<i64, StoreError> {
        let raw: [u8; 8] = bytes
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupt("truncated integer"))?;
        Ok(i64::from_le_bytes(raw))
    };
    let (lease, value_at) = match bytes[HEADER - 1] {
        0 => (None, HEADER),
        1 => (Some(LeaseId(int(HEADER)?)), HEADER + 8),
        _ => return Err(corrupt("bad lease flag")),
    };
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: int(1)?,
        mod_revision: int(9)?,
        version: int(17)?,
        lease,
        value: bytes.get(value_at..).unwrap_or_default().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_lease() {
        for lease in [None, Some(LeaseId(-7))] {
            let kv = KeyValue {
                key: "k".into(),
                value: b"hello".to_vec(),
                create_revision: 3,
                mod_revision: 9,
                version: 4,
                lease,
            };
            assert_eq!(decode("k", &encode(&kv)).expect("decode"), kv);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("k", b"xx").is_err());
        let mut bytes = encode(&KeyValue {
            key: "k".into(),
            value: vec![],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: Some(LeaseId(1)),
        });
        bytes.truncate(HEADER + 3);
        assert!(decode("k", &bytes).is_err());
    }
}
