//! Agent attributes (Mesos `--attributes`): named text, scalar or range values.
//!
//! Used by the agent (parsing its flag), the master (constraints, `/state`) and the api
//! crate (Mesos JSON). Unlike resources, attributes are not added or subtracted.

use crate::error::AttributeError;
use crate::ranges::Ranges;
use crate::scalar::Scalar;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The value of one attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// Free text (`[a-zA-Z0-9_/.-]`).
    Text(String),
    /// A fixed-point number.
    Scalar(Scalar),
    /// Value ranges.
    Ranges(Ranges),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Text(t) => f.write_str(t),
            AttrValue::Scalar(s) => s.fmt(f),
            AttrValue::Ranges(r) => r.fmt(f),
        }
    }
}

/// One named attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AttributeJson", into = "AttributeJson")]
pub struct Attribute {
    /// Attribute name, e.g. `rack`.
    pub name: String,
    /// Its value.
    pub value: AttrValue,
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.value)
    }
}

/// An agent's attributes in the order given. Serializes as the Mesos JSON array.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(pub Vec<Attribute>);

impl Attributes {
    /// Parses `rack:r1;zone:eu-1a;level:10;keys:[1000-1500]` (tokens split on `;` or newline).
    pub fn parse(s: &str) -> Result<Attributes, AttributeError> {
        let mut out = Vec::new();
        for token in s
            .split([';', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            out.push(
                parse_token(token).map_err(|reason| AttributeError::InvalidToken {
                    token: token.to_owned(),
                    reason,
                })?,
            );
        }
        Ok(Attributes(out))
    }

    /// The value of the first attribute named `name`.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    /// Mesos v0 `/state` form: text → string, scalar → number, ranges → `"[a-b, c-d]"`.
    pub fn v0_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for a in &self.0 {
            let v = match &a.value {
                AttrValue::Text(t) => serde_json::Value::from(t.clone()),
                AttrValue::Scalar(s) => serde_json::Value::from(s.as_f64()),
                AttrValue::Ranges(r) => serde_json::Value::from(r.to_v0_string()),
            };
            out.entry(a.name.clone()).or_insert(v);
        }
        out
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The attributes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Attribute> {
        self.0.iter()
    }
}

fn parse_token(token: &str) -> Result<Attribute, String> {
    let (name, value) = token
        .split_once(':')
        .ok_or_else(|| "expected `name:value`".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() || value.is_empty() {
        return Err("name and value must both be non-empty".into());
    }
    if let Some(c) = name.chars().find(|c| !is_text_char(*c)) {
        return Err(format!("name contains `{c}`"));
    }
    Ok(Attribute {
        name: name.to_owned(),
        value: parse_value(value)?,
    })
}

fn is_text_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_/.-".contains(c)
}

fn parse_value(v: &str) -> Result<AttrValue, String> {
    if v.starts_with('[') {
        return Ranges::parse(v)
            .map(AttrValue::Ranges)
            .map_err(|e| e.to_string());
    }
    if v.starts_with('{') {
        return Err("sets are not valid attribute values".into());
    }
    if let Some(s) = v.parse::<f64>().ok().and_then(|n| Scalar::from_f64(n).ok()) {
        return Ok(AttrValue::Scalar(s));
    }
    match v.chars().find(|c| !is_text_char(*c)) {
        Some(c) => Err(format!("text value contains `{c}`")),
        None => Ok(AttrValue::Text(v.to_owned())),
    }
}

impl fmt::Display for Attributes {
    /// The parse syntax: `rack:r1;level:10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            a.fmt(f)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Attributes {
    type Err = AttributeError;

    fn from_str(s: &str) -> Result<Attributes, AttributeError> {
        Attributes::parse(s)
    }
}

/// The Mesos `Value.Type` of an attribute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum AttrKind {
    Text,
    Scalar,
    Ranges,
}

#[derive(Serialize, Deserialize)]
struct TextJson {
    value: String,
}

#[derive(Serialize, Deserialize)]
struct ScalarJson {
    value: f64,
}

#[derive(Serialize, Deserialize)]
struct AttributeJson {
    name: String,
    #[serde(rename = "type")]
    kind: AttrKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<TextJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scalar: Option<ScalarJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ranges: Option<Ranges>,
}

impl From<Attribute> for AttributeJson {
    fn from(a: Attribute) -> AttributeJson {
        let mut j = AttributeJson {
            name: a.name,
            kind: AttrKind::Text,
            text: None,
            scalar: None,
            ranges: None,
        };
        match a.value {
            AttrValue::Text(value) => j.text = Some(TextJson { value }),
            AttrValue::Scalar(s) => {
                j.kind = AttrKind::Scalar;
                j.scalar = Some(ScalarJson { value: s.as_f64() });
            }
            AttrValue::Ranges(r) => {
                j.kind = AttrKind::Ranges;
                j.ranges = Some(r);
            }
        }
        j
    }
}

impl TryFrom<AttributeJson> for Attribute {
    type Error = AttributeError;

    fn try_from(j: AttributeJson) -> Result<Attribute, AttributeError> {
        let bad = |reason: String| AttributeError::InvalidToken {
            token: j.name.clone(),
            reason,
        };
        let missing = |what: &str| bad(format!("type {:?} has no `{what}` payload", j.kind));
        let value = match j.kind {
            AttrKind::Text => AttrValue::Text(j.text.ok_or_else(|| missing("text"))?.value),
            AttrKind::Scalar => {
                let v = j.scalar.ok_or_else(|| missing("scalar"))?.value;
                AttrValue::Scalar(Scalar::from_f64(v).map_err(|e| bad(e.to_string()))?)
            }
            AttrKind::Ranges => AttrValue::Ranges(j.ranges.ok_or_else(|| missing("ranges"))?),
        };
        Ok(Attribute {
            name: j.name,
            value,
        })
    }
}

#[cfg(test)]
mod tests;
