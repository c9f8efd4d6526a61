//! Fault domains of agents and masters (`--domain region=r1,zone=z1`).
//!
//! Sent by the agent in its registration, kept in the master's agent registry, shown in
//! `/master/slaves`, `/master/state`, `GET_AGENTS` and on offers in the Mesos `DomainInfo` shape
//! `{"fault_domain": {"region": {"name"}, "zone": {"name"}}}`, and used by the allocator's region
//! gate (frameworks without `REGION_AWARE` only get agents of the master's region).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A fault domain: a region and a zone within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Domain {
    /// Region name, e.g. `us-east-1`.
    pub region: String,
    /// Zone name, e.g. `us-east-1a`.
    pub zone: String,
}

/// Why a `--domain` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A `key=value` pair is malformed or repeated, or the key is unknown.
    #[error("invalid domain part '{0}': expecting region=<name>,zone=<name>")]
    Part(String),
    /// `region` or `zone` is missing or empty.
    #[error("domain needs a non-empty {0}")]
    Missing(&'static str),
}

impl Domain {
    /// Parses `region=r1,zone=z1` (either order, surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<Domain, DomainError> {
        let (mut region, mut zone) = (None, None);
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| DomainError::Part(part.trim().to_string()))?;
            let slot = match k.trim() {
                "region" => &mut region,
                "zone" => &mut zone,
                _ => return Err(DomainError::Part(part.trim().to_string())),
            };
            if slot.is_some() {
                return Err(DomainError::Part(part.trim().to_string()));
            }
            *slot = Some(v.trim().to_string());
        }
        let region = region
            .filter(|r| !r.is_empty())
            .ok_or(DomainError::Missing("region"))?;
        let zone = zone
            .filter(|z| !z.is_empty())
            .ok_or(DomainError::Missing("zone"))?;
        Ok(Domain { region, zone })
    }

    /// The Mesos `DomainInfo` JSON.
    pub fn to_mesos_json(&self) -> Value {
        json!({"fault_domain": {"region": {"name": self.region}, "zone": {"name": self.zone}}})
    }
}

impl std::fmt::Display for Domain {
    /// `region=r1,zone=z1`, the form [`Domain::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "region={},zone={}", self.region, self.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_orders() {
        let d = Domain::parse("zone=z1, region=r1").expect("domain");
        assert_eq!(d.region, "r1");
        assert_eq!(d.zone, "z1");
        assert_eq!(Domain::parse(&d.to_string()).expect("round trip"), d);
        assert_eq!(
            d.to_mesos_json(),
            json!({"fault_domain": {"region": {"name": "r1"}, "zone": {"name": "z1"}}})
        );
    }

    #[test]
    fn refuses_bad_domains() {
        for (s, why) in [
            ("region=r1", "zone"),
            ("zone=z1", "region"),
            ("region=,zone=z", "region"),
            ("region=r,zone=z,rack=x", "rack"),
            ("region=r,region=s,zone=z", "region=s"),
            ("r1", "r1"),
            ("", "invalid"),
        ] {
            let err = Domain::parse(s).expect_err(s).to_string();
            assert!(err.contains(why), "{s}: {err}");
        }
    }
}
