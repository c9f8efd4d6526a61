//! Marathon placement constraints on the wire (reference §1.5): `["hostname","UNIQUE"]`.
//!
//! Re-exported by [`super`] (`meseta_api::marathon`); evaluated by `meseta-services`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A constraint operator (§1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintOperator {
    /// At most one instance per value.
    Unique,
    /// All instances on one value.
    Cluster,
    /// Spread evenly across values.
    GroupBy,
    /// Value fully matches a regex.
    Like,
    /// Value does not fully match a regex.
    Unlike,
    /// At most N instances per value.
    MaxPer,
    /// Value equals the given text.
    Is,
}

impl ConstraintOperator {
    /// Every operator, in the order Marathon lists them.
    pub const ALL: [ConstraintOperator; 7] = [
        ConstraintOperator::Unique,
        ConstraintOperator::Cluster,
        ConstraintOperator::GroupBy,
        ConstraintOperator::Like,
        ConstraintOperator::MaxPer,
        ConstraintOperator::Unlike,
        ConstraintOperator::Is,
    ];

    /// Parses an operator name, case-insensitively.
    pub fn parse(s: &str) -> Option<ConstraintOperator> {
        let up = s.to_ascii_uppercase();
        ConstraintOperator::ALL
            .into_iter()
            .find(|op| op.as_str() == up)
    }

    /// The wire name (`UNIQUE`, `GROUP_BY`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintOperator::Unique => "UNIQUE",
            ConstraintOperator::Cluster => "CLUSTER",
            ConstraintOperator::GroupBy => "GROUP_BY",
            ConstraintOperator::Like => "LIKE",
            ConstraintOperator::Unlike => "UNLIKE",
            ConstraintOperator::MaxPer => "MAX_PER",
            ConstraintOperator::Is => "IS",
        }
    }
}

impl fmt::Display for ConstraintOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A placement constraint; on the wire `["hostname","UNIQUE"]` or `["rack","MAX_PER","2"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// `hostname` (or `@hostname`), `@region`, `@zone`, or an agent attribute name.
    pub field: String,
    /// The operator.
    pub operator: ConstraintOperator,
    /// The operator's argument, if any.
    pub value: Option<String>,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.field, self.operator)?;
        if let Some(v) = &self.value {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = if self.value.is_some() { 3 } else { 2 };
        let mut seq = s.serialize_seq(Some(len))?;
        seq.serialize_element(&self.field)?;
        seq.serialize_element(self.operator.as_str())?;
        if let Some(v) = &self.value {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Constraint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a constraint array [field, OPERATOR] or [field, OPERATOR, value]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Constraint, A::Error> {
                let mut parts: Vec<String> = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    parts.push(p);
                }
                Constraint::from_parts(&parts).map_err(de::Error::custom)
            }
        }
        d.deserialize_seq(V)
    }
}

impl Constraint {
    /// Builds a constraint from its array form, checking only the shape and the operator name
    /// (value rules are checked by `meseta-services` validation).
    pub fn from_parts(parts: &[String]) -> Result<Constraint, String> {
        if parts.len() != 2 && parts.len() != 3 {
            return Err("Each constraint must have either 2 or 3 fields".to_owned());
        }
        if parts[0].is_empty() {
            return Err("missing field for constraint declaration".to_owned());
        }
        let operator = ConstraintOperator::parse(&parts[1]).ok_or_else(|| {
            "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, \
             UNLIKE or IS"
                .to_owned()
        })?;
        Ok(Constraint {
            field: parts[0].clone(),
            operator,
            value: parts.get(2).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constraint_parsing() {
        let c: Constraint = serde_json::from_value(json!(["rack", "max_per", "2"])).expect("ok");
        assert_eq!(c.operator, ConstraintOperator::MaxPer);
        assert_eq!(c.value.as_deref(), Some("2"));
        assert!(serde_json::from_value::<Constraint>(json!(["rack"])).is_err());
        assert!(serde_json::from_value::<Constraint>(json!(["rack", "NEAR"])).is_err());
        assert_eq!(
            serde_json::to_value(&c).expect("ser"),
            json!(["rack", "MAX_PER", "2"])
        );
    }
}
