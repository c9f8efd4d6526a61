//! Parser for the Mesos agent `--resources` text syntax.
//!
//! Used by [`crate::Resources::parse`]; the inverse is `Display for Resources`.

use super::{validate_name, Resource, Resources, Set, Value, UNRESERVED};
use crate::error::ResourceError;
use crate::ranges::Ranges;
use crate::scalar::Scalar;

/// Parses `name[(role)]:value;...` with all whitespace removed and empty tokens skipped.
pub(super) fn parse(s: &str) -> Result<Resources, ResourceError> {
    let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Resources::new();
    for token in text.split(';').filter(|t| !t.is_empty()) {
        let r = parse_token(token).map_err(|reason| invalid(token, reason))?;
        out.push(r).map_err(|e| invalid(token, e.to_string()))?;
    }
    Ok(out)
}

fn invalid(token: &str, reason: String) -> ResourceError {
    ResourceError::InvalidToken {
        token: token.to_owned(),
        reason,
    }
}

fn parse_token(token: &str) -> Result<Resource, String> {
    let (key, value) = token
        .split_once(':')
        .ok_or_else(|| "expected `name:value`".to_owned())?;
    if value.contains(':') {
        return Err("expected exactly one `:`".into());
    }
    let (name, role) = parse_key(key)?;
    let value = parse_value(value)?;
    Ok(Resource::new(name, role, value))
}

/// Splits `name` or `name(role)`.
fn parse_key(key: &str) -> Result<(&str, &str), String> {
    let (name, role) = match key.split_once('(') {
        None if key.contains(')') => return Err("unbalanced parentheses".into()),
        None => (key, UNRESERVED),
        Some((name, rest)) => {
            let role = rest
                .strip_suffix(')')
                .ok_or_else(|| "unbalanced parentheses".to_owned())?;
            (name, role)
        }
    };
    validate_name(name).map_err(|e| e.to_string())?;
    validate_name(role).map_err(|e| e.to_string())?;
    Ok((name, role))
}

fn parse_value(v: &str) -> Result<Value, String> {
    if v.starts_with('[') {
        return Ranges::parse(v)
            .map(Value::Ranges)
            .map_err(|e| e.to_string());
    }
    if let Some(rest) = v.strip_prefix('{') {
        return parse_set(rest).map(Value::Set);
    }
    let n: f64 = v
        .parse()
        .map_err(|_| format!("`{v}` is not a number, ranges or set"))?;
    Scalar::from_f64(n)
        .map(Value::Scalar)
        .map_err(|e| e.to_string())
}

/// Parses the part of `{a,b}` after the opening brace.
fn parse_set(rest: &str) -> Result<Set, String> {
    let inner = rest
        .strip_suffix('}')
        .ok_or_else(|| "set is missing its closing `}`".to_owned())?;
    if inner.is_empty() {
        return Ok(Set::default());
    }
    let mut set = Set::default();
    for item in inner.split(',') {
        if item.is_empty() {
            return Err("set has an empty item".into());
        }
        if let Some(c) = item.chars().find(|c| "{}[]()".contains(*c)) {
            return Err(format!("set item `{item}` contains `{c}`"));
        }
        set.0.insert(item.to_owned());
    }
    Ok(set)
}
