//! Mesos v1 JSON for [`Resources`]: an array of `Resource` objects (pre-refinement format).
//!
//! Used by the api crate and the store. Unknown fields (`allocation_info`, `reservation`, ...)
//! are ignored; a missing `role` means `"*"`; a non-empty `reservations` stack sets the role
//! to its last element's role.

use super::{DiskInfo, Resource, Resources, Set, Value, UNRESERVED};
use crate::error::ResourceError;
use crate::ranges::Ranges;
use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The Mesos `Value.Type` of a resource.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Kind {
    Scalar,
    Ranges,
    Set,
}

/// `{"value": 4.0}`; kept as a raw float so a negative value can be reported with its name.
#[derive(Serialize, Deserialize)]
struct ScalarJson {
    value: f64,
}

/// `{"id": …}` of `DiskInfo.persistence` (`principal` is ignored).
#[derive(Serialize, Deserialize)]
struct PersistenceJson {
    id: String,
}

/// `DiskInfo.volume`: `{"container_path": …, "mode": "RW"|"RO"}`.
#[derive(Serialize, Deserialize)]
struct VolumeJson {
    #[serde(default)]
    container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
}

/// `Resource.disk`; only a disk with `persistence` is a volume, other disk infos are ignored.
#[derive(Serialize, Deserialize)]
struct DiskJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    persistence: Option<PersistenceJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume: Option<VolumeJson>,
}

impl From<&DiskInfo> for DiskJson {
    fn from(d: &DiskInfo) -> DiskJson {
        DiskJson {
            persistence: Some(PersistenceJson {
                id: d.persistence_id.clone(),
            }),
            volume: Some(VolumeJson {
                container_path: d.container_path.clone(),
                mode: Some(if d.read_only { "RO" } else { "RW" }.to_string()),
            }),
        }
    }
}

impl DiskJson {
    fn into_info(self) -> Option<DiskInfo> {
        let id = self.persistence?.id;
        let (container_path, mode) = match self.volume {
            Some(v) => (v.container_path, v.mode),
            None => (String::new(), None),
        };
        Some(DiskInfo {
            persistence_id: id,
            container_path,
            read_only: mode.as_deref() == Some("RO"),
        })
    }
}

#[derive(Deserialize)]
struct ReservationJson {
    #[serde(default)]
    role: Option<CompactString>,
}

#[derive(Serialize, Deserialize)]
struct ResourceJson {
    name: CompactString,
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scalar: Option<ScalarJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set: Option<Set>,
    #[serde(default)]
    role: Option<CompactString>,
    #[serde(default, skip_serializing)]
    reservations: Option<Vec<ReservationJson>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk: Option<DiskJson>,
}

impl From<&Resource> for ResourceJson {
    fn from(r: &Resource) -> ResourceJson {
        let mut j = ResourceJson {
            name: r.name.clone(),
            kind: Kind::Scalar,
            scalar: None,
            ranges: None,
            set: None,
            role: Some(r.role.clone()),
            reservations: None,
            disk: r.disk.as_deref().map(DiskJson::from),
        };
        match &r.value {
            Value::Scalar(s) => {
                j.scalar = Some(ScalarJson { value: s.as_f64() });
            }
            Value::Ranges(v) => {
                j.kind = Kind::Ranges;
                j.ranges = Some(v.clone());
            }
            Value::Set(v) => {
                j.kind = Kind::Set;
                j.set = Some(v.clone());
            }
        }
        j
    }
}

impl TryFrom<ResourceJson> for Resource {
    type Error = ResourceError;

    fn try_from(j: ResourceJson) -> Result<Resource, ResourceError> {
        let role = j
            .reservations
            .and_then(|rs| rs.into_iter().next_back())
            .and_then(|r| r.role)
            .or(j.role)
            .unwrap_or_else(|| CompactString::const_new(UNRESERVED));
        let mismatch = |what: &str| ResourceError::InvalidToken {
            token: j.name.to_string(),
            reason: format!("type {:?} has no `{what}` payload", j.kind),
        };
        let value = match j.kind {
            Kind::Scalar => {
                let v = j.scalar.ok_or_else(|| mismatch("scalar"))?.value;
                Value::Scalar(scalar_for(&j.name, v)?)
            }
            Kind::Ranges => Value::Ranges(j.ranges.ok_or_else(|| mismatch("ranges"))?),
            Kind::Set => Value::Set(j.set.ok_or_else(|| mismatch("set"))?),
        };
        let disk = j.disk.and_then(DiskJson::into_info);
        if let Some(d) = &disk {
            if j.name != "disk" {
                return Err(ResourceError::InvalidToken {
                    token: j.name.into_string(),
                    reason: "only `disk` resources can be persistent volumes".to_string(),
                });
            }
            if d.persistence_id.is_empty() {
                return Err(ResourceError::InvalidToken {
                    token: j.name.into_string(),
                    reason: "a persistent volume needs a non-empty `persistence.id`".to_string(),
                });
            }
        }
        Ok(Resource {
            disk: disk.map(Box::new),
            ..Resource::new(j.name, role, value)
        })
    }
}

/// Converts a JSON scalar, naming the resource in any error.
fn scalar_for(name: &str, v: f64) -> Result<crate::Scalar, ResourceError> {
    crate::Scalar::from_f64(v).map_err(|e| match e {
        ResourceError::Negative { value, .. } => ResourceError::Negative {
            what: name.to_owned(),
            value,
        },
        ResourceError::NotFinite { .. } => ResourceError::NotFinite {
            what: name.to_owned(),
        },
        ResourceError::TooLarge { value, .. } => ResourceError::TooLarge {
            what: name.to_owned(),
            value,
        },
        other => other,
    })
}

impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<ResourceJson> = self.iter().map(ResourceJson::from).collect();
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Resources, D::Error> {
        let raw = Vec::<ResourceJson>::deserialize(d)?;
        let mut out = Resources::new();
        for j in raw {
            let r = Resource::try_from(j).map_err(serde::de::Error::custom)?;
            out.push(r).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResourceJson::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        Resource::try_from(ResourceJson::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
