//! Mesos maintenance wire types (`docs/maintenance.md`): machines (`{"hostname","ip"}`) and the
//! schedule of their unavailability windows. Read by `/master/maintenance/schedule`,
//! `/master/machine/{down,up}` and the v1 maintenance calls ([`crate::operator::v1::Call`]).

use serde::{Deserialize, Serialize};

/// A machine: `{"hostname","ip"}`, at least one set.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MachineId {
    /// Host name (compared case-insensitively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl MachineId {
    /// The same machine with its hostname lower-cased (hostnames compare case-insensitively,
    /// as in Mesos).
    pub fn normalized(mut self) -> MachineId {
        self.hostname = self.hostname.map(|h| h.to_ascii_lowercase());
        self
    }

    /// Is an agent on `hostname` with address `ip` on this machine? Every part the machine
    /// names must match.
    pub fn matches(&self, hostname: &str, ip: Option<&str>) -> bool {
        let host_ok = self
            .hostname
            .as_ref()
            .is_none_or(|h| h.eq_ignore_ascii_case(hostname));
        let ip_ok = self.ip.as_ref().is_none_or(|i| Some(i.as_str()) == ip);
        host_ok && ip_ok
    }
}

/// `{"nanoseconds": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nanos {
    /// Nanoseconds since the Unix epoch (or a duration).
    pub nanoseconds: i64,
}

/// A window's unavailability: start and optional duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTime {
    /// When the machines become unavailable.
    pub start: Nanos,
    /// For how long (open-ended when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Nanos>,
}

/// One window: machines and when they are unavailable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The machines.
    #[serde(default)]
    pub machine_ids: Vec<MachineId>,
    /// When.
    pub unavailability: WindowTime,
}

/// The maintenance schedule (`{"windows":[..]}`; `{}` is empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The windows.
    #[serde(default)]
    pub windows: Vec<Window>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_match_on_every_part_they_name() {
        let m = MachineId {
            hostname: Some("agent-1".into()),
            ip: None,
        };
        assert!(m.matches("Agent-1", Some("127.0.0.1")));
        assert!(!m.matches("agent-2", Some("127.0.0.1")));
        let m = MachineId {
            hostname: Some("agent-1".into()),
            ip: Some("10.0.0.1".into()),
        };
        assert!(!m.matches("agent-1", Some("127.0.0.1")));
        assert!(m.matches("agent-1", Some("10.0.0.1")));
    }
}
