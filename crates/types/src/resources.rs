//! Mesos resources: named, role-labelled scalars, ranges and sets, with exact arithmetic.
//!
//! Used by the agent (its `--resources`), the master and allocator (offers, usage, DRF),
//! the api crate (Mesos v1 JSON) and the CLI (display). Text syntax lives in
//! `resources/parse.rs`, Mesos JSON in `resources/json.rs`.

mod json;
mod parse;

use crate::error::ResourceError;
use crate::ranges::Ranges;
use crate::scalar::Scalar;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The role of unreserved resources.
pub const UNRESERVED: &str = "*";

/// A set of text items (Mesos `Value.Set`). Serializes as `{"item":[..]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Set(#[serde(with = "set_json")] pub BTreeSet<String>);

mod set_json {
    //! Serde helper mapping `BTreeSet<String>` to Mesos `{"item":[..]}`.
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeSet;

    #[derive(Serialize, Deserialize)]
    struct Items<T> {
        #[serde(default)]
        item: T,
    }

    pub fn serialize<S: Serializer>(v: &BTreeSet<String>, s: S) -> Result<S::Ok, S::Error> {
        Items { item: v }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
        Items::<BTreeSet<String>>::deserialize(d).map(|i| i.item)
    }
}

impl Set {
    /// Builds a set from items.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Set {
        Set(items.into_iter().map(Into::into).collect())
    }

    fn join(&self, sep: &str) -> String {
        let items: Vec<&str> = self.0.iter().map(String::as_str).collect();
        format!("{{{}}}", items.join(sep))
    }

    /// Mesos v0 `/state` form: `"{a, b}"`.
    pub fn to_v0_string(&self) -> String {
        self.join(", ")
    }
}

impl fmt::Display for Set {
    /// `"{a,b}"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(","))
    }
}

/// The amount of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A fixed-point amount (`cpus`, `mem`, ...).
    Scalar(Scalar),
    /// Value ranges (`ports`).
    Ranges(Ranges),
    /// Text items.
    Set(Set),
}

impl Value {
    /// The Mesos type name: `"SCALAR"`, `"RANGES"` or `"SET"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "SCALAR",
            Value::Ranges(_) => "RANGES",
            Value::Set(_) => "SET",
        }
    }

    /// Whether the amount is zero / empty.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => s.is_zero(),
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.0.is_empty(),
        }
    }

    /// Whether `self` covers `o` (false on kind mismatch).
    pub fn contains(&self, o: &Value) -> bool {
        match (self, o) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            (Value::Set(a), Value::Set(b)) => a.0.is_superset(&b.0),
            _ => false,
        }
    }

    /// Adds `o` into `self`; returns false (and changes nothing) on kind mismatch.
    fn add(&mut self, o: &Value) -> bool {
        match (self, o) {
            (Value::Scalar(a), Value::Scalar(b)) => *a += *b,
            (Value::Ranges(a), Value::Ranges(b)) => a.add(b),
            (Value::Set(a), Value::Set(b)) => a.0.extend(b.0.iter().cloned()),
            _ => return false,
        }
        true
    }

    /// `self - o`, or `None` unless `self` contains `o`.
    fn checked_sub(&self, o: &Value) -> Option<Value> {
        match (self, o) {
            (Value::Scalar(a), Value::Scalar(b)) => a.checked_sub(*b).map(Value::Scalar),
            (Value::Ranges(a), Value::Ranges(b)) => a.checked_sub(b).map(Value::Ranges),
            (Value::Set(a), Value::Set(b)) if a.0.is_superset(&b.0) => {
                Some(Value::Set(Set(a.0.difference(&b.0).cloned().collect())))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => s.fmt(f),
            Value::Ranges(r) => r.fmt(f),
            Value::Set(s) => s.fmt(f),
        }
    }
}

/// What makes a disk resource a persistent volume (Mesos `Resource.DiskInfo`: `persistence.id`,
/// `volume.container_path`, `volume.mode`). A volume is a distinct item of [`Resources`]: it is
/// never merged with plain disk nor with another volume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiskInfo {
    /// `persistence.id`: names the volume on its agent, for its role.
    pub persistence_id: String,
    /// `volume.container_path`: where the volume appears, relative to the task's sandbox.
    pub container_path: String,
    /// `volume.mode` is `RO`.
    pub read_only: bool,
}

/// One named resource with its role (`"*"` = unreserved).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Resource name, e.g. `cpus` (stored inline: names and roles are short, and a task's
    /// resources are kept for as long as it runs).
    pub name: CompactString,
    /// Role the resource is reserved for, `"*"` if unreserved.
    pub role: CompactString,
    /// The amount.
    pub value: Value,
    /// Set on a persistent volume (a `disk` resource); `None` for everything else.
    pub disk: Option<Box<DiskInfo>>,
}

impl Resource {
    /// Builds a resource.
    pub fn new(
        name: impl Into<CompactString>,
        role: impl Into<CompactString>,
        value: Value,
    ) -> Resource {
        Resource {
            name: name.into(),
            role: role.into(),
            value,
            disk: None,
        }
    }

    /// The same resource as the persistent volume `disk`.
    pub fn with_disk(mut self, disk: DiskInfo) -> Resource {
        self.disk = Some(Box::new(disk));
        self
    }

    /// The persistence id when this is a volume.
    pub fn persistence_id(&self) -> Option<&str> {
        self.disk.as_ref().map(|d| d.persistence_id.as_str())
    }

    /// An unreserved scalar resource; errors on negative or non-finite amounts.
    pub fn scalar(name: impl Into<CompactString>, amount: f64) -> Result<Resource, ResourceError> {
        Ok(Resource::new(
            name,
            UNRESERVED,
            Value::Scalar(Scalar::from_f64(amount)?),
        ))
    }
}

impl fmt::Display for Resource {
    /// `name:value` or `name(role):value`; a volume as `name(role)[id:container_path]:value`
    /// (display only: the `--resources` syntax has no volumes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.role != UNRESERVED {
            write!(f, "({})", self.role)?;
        }
        if let Some(d) = &self.disk {
            let ro = if d.read_only { ":ro" } else { "" };
            write!(f, "[{}:{}{ro}]", d.persistence_id, d.container_path)?;
        }
        write!(f, ":{}", self.value)
    }
}

/// A shared copy (for [`crate::intern::Interner`]).
impl From<&Resources> for std::sync::Arc<Resources> {
    fn from(r: &Resources) -> std::sync::Arc<Resources> {
        std::sync::Arc::new(r.clone())
    }
}

/// A normalized bag of resources: one entry per (name, role, persistence id), no zero/empty
/// entries, and each name used with a single kind.
///
/// Kept as a vector sorted by (name, role): a handful of entries, so binary search is as fast as
/// a map, and cloning (allocators do it on every cycle) costs one allocation instead of a tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Resources(Vec<Resource>);

impl Resources {
    /// No resources.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Parses the Mesos agent `--resources` syntax, e.g. `cpus:4;mem:8192;ports:[31000-32000];cpus(web):2`.
    pub fn parse(s: &str) -> Result<Resources, ResourceError> {
        parse::parse(s)
    }

    /// Adds `r` into the matching (name, role) entry. Errors on an invalid name/role or a kind
    /// different from the one this name already has.
    pub fn push(&mut self, r: Resource) -> Result<(), ResourceError> {
        validate_name(&r.name)?;
        validate_name(&r.role)?;
        if let Some(other) = self.0.iter().find(|e| e.name == r.name) {
            if other.value.kind() != r.value.kind() {
                return Err(ResourceError::KindMismatch {
                    name: r.name.into_string(),
                    first: other.value.kind().to_owned(),
                    second: r.value.kind().to_owned(),
                });
            }
        }
        if r.value.is_empty() {
            return Ok(());
        }
        match self.find(&r.name, &r.role, r.persistence_id()) {
            Ok(i) => {
                self.0[i].value.add(&r.value);
            }
            Err(i) => self.0.insert(i, r),
        }
        Ok(())
    }

    /// Where the (name, role, persistence id) entry is, or where it would go.
    fn find(&self, name: &str, role: &str, volume: Option<&str>) -> Result<usize, usize> {
        self.0.binary_search_by(|e| {
            (e.name.as_str(), e.role.as_str(), e.persistence_id()).cmp(&(name, role, volume))
        })
    }

    /// Adds all of `o`; an entry whose kind conflicts with self's is skipped (keeps self's).
    pub fn add(&mut self, o: &Resources) {
        for r in o.iter() {
            // Conflicts cannot happen between validly built values; keeping self's entry is the contract.
            let _ = self.push(r.clone());
        }
    }

    /// Empties `self`, keeping its allocation for what is added next.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// `self + o` as a new value.
    pub fn plus(&self, o: &Resources) -> Resources {
        let mut out = self.clone();
        out.add(o);
        out
    }

    /// Whether every (name, role) entry of `o` is covered by the same entry of `self`.
    pub fn contains(&self, o: &Resources) -> bool {
        o.0.iter().all(|want| {
            self.find(&want.name, &want.role, want.persistence_id())
                .is_ok_and(|i| self.0[i].value.contains(&want.value))
        })
    }

    /// Takes `o` out of `self` in place; leaves `self` unchanged and answers
    /// [`ResourceError::Insufficient`] unless `self` contains `o`.
    ///
    /// Unlike [`Resources::checked_sub`] this keeps `self`'s allocation, which matters for the
    /// long-lived per-agent and per-framework totals that every offer and task changes.
    pub fn subtract(&mut self, o: &Resources) -> Result<(), ResourceError> {
        if !self.contains(o) {
            return Err(ResourceError::Insufficient {
                have: self.to_string(),
                want: o.to_string(),
            });
        }
        for want in &o.0 {
            let Ok(i) = self.find(&want.name, &want.role, want.persistence_id()) else {
                continue; // contained, so only an empty `want` could be missing
            };
            // Scalars are subtracted without allocating; ranges and sets build their rest.
            if let Some(left) = self.0[i].value.checked_sub(&want.value) {
                self.0[i].value = left;
            }
            if self.0[i].value.is_empty() {
                self.0.remove(i);
            }
        }
        Ok(())
    }

    /// `self - o`, or [`ResourceError::Insufficient`] unless `self` contains `o`.
    pub fn checked_sub(&self, o: &Resources) -> Result<Resources, ResourceError> {
        let insufficient = || ResourceError::Insufficient {
            have: self.to_string(),
            want: o.to_string(),
        };
        let mut out = self.clone();
        for want in &o.0 {
            let i = out
                .find(&want.name, &want.role, want.persistence_id())
                .map_err(|_| insufficient())?;
            let left = out.0[i]
                .value
                .checked_sub(&want.value)
                .ok_or_else(insufficient)?;
            if left.is_empty() {
                out.0.remove(i);
            } else {
                out.0[i].value = left;
            }
        }
        Ok(out)
    }

    /// The scalar named `name`, summed over roles (zero if absent or not a scalar).
    pub fn scalar(&self, name: &str) -> Scalar {
        self.iter()
            .filter(|r| r.name == name)
            .filter_map(|r| match &r.value {
                Value::Scalar(s) => Some(*s),
                _ => None,
            })
            .sum()
    }

    /// CPUs over all roles.
    pub fn cpus(&self) -> f64 {
        self.scalar("cpus").as_f64()
    }

    /// Memory (MB) over all roles.
    pub fn mem(&self) -> f64 {
        self.scalar("mem").as_f64()
    }

    /// Disk (MB) over all roles.
    pub fn disk(&self) -> f64 {
        self.scalar("disk").as_f64()
    }

    /// GPUs over all roles.
    pub fn gpus(&self) -> f64 {
        self.scalar("gpus").as_f64()
    }

    /// The ranges named `name`, merged over roles (empty if absent).
    pub fn ranges(&self, name: &str) -> Ranges {
        let mut out = Ranges::default();
        for r in self.iter().filter(|r| r.name == name) {
            if let Value::Ranges(v) = &r.value {
                out.add(v);
            }
        }
        out
    }

    /// Whether there are no resources.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All entries, ordered by (name, role).
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    /// The unreserved (`"*"`) part.
    pub fn unreserved(&self) -> Resources {
        self.reserved(UNRESERVED)
    }

    /// The part whose role is exactly `role`.
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter(|r| r.role == role)
    }

    /// The entries for which `keep` is true.
    pub fn filter(&self, keep: impl Fn(&Resource) -> bool) -> Resources {
        Resources(self.0.iter().filter(|r| keep(r)).cloned().collect())
    }

    /// The same amounts, all re-labelled to `role` (volumes stay volumes).
    pub fn with_role(&self, role: &str) -> Resources {
        let mut out = Resources::new();
        for r in self.iter() {
            let relabelled = Resource {
                role: role.into(),
                ..r.clone()
            };
            // Names keep one kind in a valid Resources, so this cannot conflict; an
            // invalid `role` is a caller bug and drops the entry rather than panicking.
            let _ = out.push(relabelled);
        }
        out
    }

    /// The same amounts with every persistent volume turned back into plain disk.
    pub fn without_volumes(&self) -> Resources {
        let mut out = Resources::new();
        for r in self.iter() {
            let plain = Resource {
                disk: None,
                ..r.clone()
            };
            // Same names and kinds as in `self`: cannot conflict.
            let _ = out.push(plain);
        }
        out
    }

    /// The persistent volumes.
    pub fn volumes(&self) -> impl Iterator<Item = &Resource> {
        self.iter().filter(|r| r.disk.is_some())
    }

    /// The roles present.
    pub fn roles(&self) -> BTreeSet<String> {
        self.iter().map(|r| r.role.to_string()).collect()
    }

    /// Mesos `/master/state` summary: `cpus`, `gpus`, `mem`, `disk` always (as floats), other
    /// scalars summed by name, ranges as `"[a-b, c-d]"`, sets as `"{a, b}"`.
    pub fn v0_summary(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut scalars: BTreeMap<&str, Scalar> = ["cpus", "gpus", "mem", "disk"]
            .into_iter()
            .map(|n| (n, Scalar::ZERO))
            .collect();
        let mut ranges: BTreeMap<&str, Ranges> = BTreeMap::new();
        let mut sets: BTreeMap<&str, Set> = BTreeMap::new();
        for r in self.iter() {
            match &r.value {
                Value::Scalar(s) => *scalars.entry(&r.name).or_default() += *s,
                Value::Ranges(v) => ranges.entry(&r.name).or_default().add(v),
                Value::Set(v) => sets
                    .entry(&r.name)
                    .or_default()
                    .0
                    .extend(v.0.iter().cloned()),
            }
        }
        let mut out = serde_json::Map::new();
        for (n, s) in scalars {
            out.insert(n.to_owned(), serde_json::Value::from(s.as_f64()));
        }
        for (n, v) in ranges {
            out.insert(n.to_owned(), v.to_v0_string().into());
        }
        for (n, v) in sets {
            out.insert(n.to_owned(), v.to_v0_string().into());
        }
        out
    }
}

/// Checks a resource name or role: non-empty, no whitespace or syntax characters.
pub(crate) fn validate_name(s: &str) -> Result<(), ResourceError> {
    let bad = |reason: &str| ResourceError::InvalidName {
        name: s.to_owned(),
        reason: reason.to_owned(),
    };
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    match s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || ";:(){}[],".contains(*c))
    {
        Some(c) => Err(bad(&format!("contains `{c}`"))),
        None => Ok(()),
    }
}

/// Display order rank: well-known names first.
fn name_rank(name: &str) -> usize {
    ["cpus", "mem", "disk", "gpus", "ports"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or(5)
}

impl fmt::Display for Resources {
    /// The `--resources` syntax in a stable order, so `parse(display(r)) == r`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<&Resource> = self.iter().collect();
        entries.sort_by(|a, b| {
            (
                name_rank(&a.name),
                &a.name,
                a.role != UNRESERVED,
                &a.role,
                a.persistence_id(),
            )
                .cmp(&(
                    name_rank(&b.name),
                    &b.name,
                    b.role != UNRESERVED,
                    &b.role,
                    b.persistence_id(),
                ))
        });
        for (i, r) in entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            r.fmt(f)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Resources {
    type Err = ResourceError;

    fn from_str(s: &str) -> Result<Resources, ResourceError> {
        Resources::parse(s)
    }
}

#[cfg(test)]
mod tests;
