//! Placement constraints (reference §1.5): may an offer from an agent take one more instance?
//!
//! Used by the services framework when matching offers, and by `/v2/queue` to say why an
//! instance waits ([`Unmet`]'s text). Pure: the caller passes the offering agent and the agents
//! of the app's instances already placed (one entry per instance).
//!
//! Field `hostname` (or `@hostname`) is the agent's hostname, `@region`/`@zone` its fault
//! domain, anything else a Mesos attribute. When the field is missing on the agent only `UNLIKE`
//! matches.

use meseta_api::marathon::{Constraint, ConstraintOperator};
use meseta_types::attributes::{AttrValue, Attributes};
use regex_automata::meta::Regex;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// What the constraint checker needs to know about one agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    /// The agent's hostname.
    pub hostname: &'a str,
    /// Fault-domain region, if any.
    pub region: Option<&'a str>,
    /// Fault-domain zone, if any.
    pub zone: Option<&'a str>,
    /// The agent's attributes.
    pub attributes: &'a Attributes,
}

/// The value of a constraint field on one agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FieldValue {
    /// Text form (scalars in their shortest exact form, ranges `[a-b,…]`).
    text: String,
    /// Scalar attributes in thousandths, for numeric `IS`.
    milli: Option<i64>,
}

fn field_value(agent: &AgentView<'_>, field: &str) -> Option<FieldValue> {
    let text = |s: &str| FieldValue {
        text: s.to_owned(),
        milli: None,
    };
    match field {
        "hostname" | "@hostname" => Some(text(agent.hostname)),
        "@region" => agent.region.map(text),
        "@zone" => agent.zone.map(text),
        _ => agent.attributes.get(field).map(|v| match v {
            AttrValue::Scalar(s) => FieldValue {
                text: s.to_string(),
                milli: Some(s.milli()),
            },
            other => text(&other.to_string()),
        }),
    }
}

/// Compiles `pattern` so that it must match a whole value (`LIKE`/`UNLIKE` semantics).
pub fn full_match_regex(pattern: &str) -> Result<Regex, ConstraintError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ConstraintError::Regex {
        pattern: pattern.to_owned(),
        reason: e.to_string(),
    })
}

/// A constraint that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConstraintError {
    /// A `LIKE`/`UNLIKE` value is not a regular expression.
    #[error("constraint regex {pattern:?} is not valid: {reason}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The parser's text.
        reason: String,
    },
}

/// Why an offer may not take one more instance: the first constraint it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// The unmet constraint.
    pub constraint: Constraint,
    /// Human-readable reason, for `/v2/queue`.
    pub reason: String,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "constraint {} not met: {}", self.constraint, self.reason)
    }
}

/// An app's constraints with their regexes compiled once.
#[derive(Debug, Clone)]
pub struct CompiledConstraints {
    items: Vec<(Constraint, Option<Regex>)>,
}

impl CompiledConstraints {
    /// Compiles `constraints` (only `LIKE`/`UNLIKE` values need compiling).
    pub fn new(constraints: &[Constraint]) -> Result<CompiledConstraints, ConstraintError> {
        let mut items = Vec::with_capacity(constraints.len());
        for c in constraints {
            let re = match (c.operator, c.value.as_deref()) {
                (ConstraintOperator::Like | ConstraintOperator::Unlike, Some(p)) => {
                    Some(full_match_regex(p)?)
                }
                _ => None,
            };
            items.push((c.clone(), re));
        }
        Ok(CompiledConstraints { items })
    }

    /// Whether `agent` may take one more instance given the agents of the instances already
    /// `placed` (one entry per instance); `Err` names the first constraint broken.
    pub fn check(&self, agent: &AgentView<'_>, placed: &[AgentView<'_>]) -> Result<(), Unmet> {
        for (c, re) in &self.items {
            if let Err(reason) = check_one(c, re.as_ref(), agent, placed) {
                return Err(Unmet {
                    constraint: c.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// One-shot form of [`CompiledConstraints::check`].
pub fn check_offer(
    constraints: &[Constraint],
    agent: &AgentView<'_>,
    placed: &[AgentView<'_>],
) -> Result<Result<(), Unmet>, ConstraintError> {
    Ok(CompiledConstraints::new(constraints)?.check(agent, placed))
}

/// Instances already placed per field value (instances on agents lacking the field are skipped).
fn counts(field: &str, placed: &[AgentView<'_>]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in placed {
        if let Some(v) = field_value(p, field) {
            *out.entry(v.text).or_insert(0) += 1;
        }
    }
    out
}

fn int_value(c: &Constraint) -> Option<usize> {
    c.value.as_deref().and_then(|v| v.trim().parse().ok())
}

fn check_one(
    c: &Constraint,
    re: Option<&Regex>,
    agent: &AgentView<'_>,
    placed: &[AgentView<'_>],
) -> Result<(), String> {
    let field = &c.field;
    let Some(value) = field_value(agent, field) else {
        return if c.operator == ConstraintOperator::Unlike {
            Ok(())
        } else {
            Err(format!("agent {} has no {field}", agent.hostname))
        };
    };
    let v = &value.text;
    match c.operator {
        ConstraintOperator::Unique => {
            let n = counts(field, placed).get(v).copied().unwrap_or(0);
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{field} {v} already runs {n} instance(s)"))
            }
        }
        ConstraintOperator::MaxPer => {
            let max = int_value(c).unwrap_or(0);
            let n = counts(field, placed).get(v).copied().unwrap_or(0);
            if n < max {
                Ok(())
            } else {
                Err(format!("{field} {v} already runs {n} of at most {max}"))
            }
        }
        ConstraintOperator::Cluster => {
            let want = match &c.value {
                Some(w) if !w.is_empty() => Some(w.clone()),
                _ => placed
                    .iter()
                    .find_map(|p| field_value(p, field))
                    .map(|f| f.text),
            };
            match want {
                Some(w) if &w != v => Err(format!("{field} is {v}, instances cluster on {w}")),
                _ => Ok(()),
            }
        }
        ConstraintOperator::GroupBy => group_by(c, field, v, placed),
        ConstraintOperator::Like => match re {
            Some(re) if re.is_match(v.as_str()) => Ok(()),
            _ => Err(format!("{field} {v} does not match {:?}", value_text(c))),
        },
        ConstraintOperator::Unlike => match re {
            Some(re) if re.is_match(v.as_str()) => {
                Err(format!("{field} {v} matches {:?}", value_text(c)))
            }
            _ => Ok(()),
        },
        ConstraintOperator::Is => {
            if is_equal(&value, value_text(c)) {
                Ok(())
            } else {
                Err(format!("{field} is {v}, not {}", value_text(c)))
            }
        }
    }
}

fn value_text(c: &Constraint) -> &str {
    c.value.as_deref().unwrap_or("")
}

/// `IS`: text equality, or numeric equality to 3 decimals for scalar attributes.
fn is_equal(value: &FieldValue, want: &str) -> bool {
    if value.text == want {
        return true;
    }
    match (value.milli, want.trim().parse::<f64>()) {
        (Some(m), Ok(w)) => (w * 1000.0).round() as i64 == m,
        _ => false,
    }
}

/// `GROUP_BY` (Marathon's rule): a value not yet used is always fine; otherwise, once at least
/// `minimum` groups exist, only a value with the smallest count may take one more.
fn group_by(c: &Constraint, field: &str, v: &str, placed: &[AgentView<'_>]) -> Result<(), String> {
    let minimum = int_value(c).unwrap_or(0);
    let groups = counts(field, placed);
    let Some(&mine) = groups.get(v) else {
        return Ok(());
    };
    let min_count = groups.values().copied().min().unwrap_or(0);
    if groups.len() >= minimum && mine == min_count {
        Ok(())
    } else if groups.len() < minimum {
        Err(format!(
            "{field} {v} already used; waiting for {} more distinct value(s)",
            minimum - groups.len()
        ))
    } else {
        Err(format!(
            "{field} {v} runs {mine} instance(s), more than the least used value ({min_count})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(field: &str, op: &str, value: Option<&str>) -> Constraint {
        let mut parts = vec![field.to_owned(), op.to_owned()];
        parts.extend(value.map(str::to_owned));
        Constraint::from_parts(&parts).expect("valid constraint")
    }

    fn attrs(s: &str) -> Attributes {
        Attributes::parse(s).expect("valid attributes")
    }

    fn view<'a>(host: &'a str, a: &'a Attributes) -> AgentView<'a> {
        AgentView {
            hostname: host,
            region: None,
            zone: None,
            attributes: a,
        }
    }

    fn ok(cs: &[Constraint], agent: &AgentView<'_>, placed: &[AgentView<'_>]) -> bool {
        check_offer(cs, agent, placed).expect("compiles").is_ok()
    }

    #[test]
    fn unique_hostname() {
        let none = Attributes::default();
        let cs = [c("hostname", "UNIQUE", None)];
        let a = view("a", &none);
        let b = view("b", &none);
        assert!(ok(&cs, &a, &[]));
        assert!(ok(&cs, &a, &[b]));
        let e = check_offer(&cs, &a, &[a, b])
            .expect("compiles")
            .expect_err("a is taken");
        assert!(e.to_string().contains("hostname:UNIQUE"), "{e}");
        assert!(e.reason.contains("already runs 1"), "{}", e.reason);
    }

    #[test]
    fn cluster_like_unlike_is() {
        let r1 = attrs("rack:r1;level:10");
        let r2 = attrs("rack:r2;level:2.5");
        let (a, b) = (view("a", &r1), view("b", &r2));
        assert!(ok(&[c("rack", "CLUSTER", Some("r1"))], &a, &[]));
        assert!(!ok(&[c("rack", "CLUSTER", Some("r1"))], &b, &[]));
        assert!(ok(&[c("rack", "CLUSTER", None)], &b, &[]), "first pins");
        assert!(!ok(&[c("rack", "CLUSTER", None)], &b, &[a]));
        assert!(ok(&[c("rack", "LIKE", Some("r[12]"))], &b, &[]));
        assert!(
            !ok(&[c("rack", "LIKE", Some("r"))], &b, &[]),
            "full match only"
        );
        assert!(!ok(&[c("rack", "UNLIKE", Some("r2"))], &b, &[]));
        assert!(
            ok(&[c("zone", "UNLIKE", Some("x"))], &b, &[]),
            "missing field"
        );
        assert!(
            !ok(&[c("zone", "LIKE", Some(".*"))], &b, &[]),
            "missing field"
        );
        assert!(ok(&[c("level", "IS", Some("10.000"))], &a, &[]));
        assert!(ok(&[c("level", "IS", Some("2.5"))], &b, &[]));
        assert!(!ok(&[c("level", "IS", Some("2"))], &b, &[]));
        assert!(ok(&[c("@hostname", "IS", Some("a"))], &a, &[]));
    }

    #[test]
    fn region_zone() {
        let none = Attributes::default();
        let a = AgentView {
            hostname: "a",
            region: Some("eu"),
            zone: Some("eu-1a"),
            attributes: &none,
        };
        assert!(ok(&[c("@zone", "UNIQUE", None)], &a, &[]));
        assert!(!ok(&[c("@zone", "UNIQUE", None)], &a, &[a]));
        assert!(ok(&[c("@region", "IS", Some("eu"))], &a, &[]));
    }

    #[test]
    fn max_per_and_group_by() {
        let r1 = attrs("rack:r1");
        let r2 = attrs("rack:r2");
        let (a, b) = (view("a", &r1), view("b", &r2));
        let mp = [c("rack", "MAX_PER", Some("2"))];
        assert!(ok(&mp, &a, &[a, b]));
        assert!(!ok(&mp, &a, &[a, a, b]));
        let gb = [c("rack", "GROUP_BY", None)];
        assert!(ok(&gb, &a, &[a, b]));
        assert!(!ok(&gb, &a, &[a, a, b]));
        let gb2 = [c("rack", "GROUP_BY", Some("2"))];
        assert!(!ok(&gb2, &a, &[a]), "needs a second rack first");
        assert!(ok(&gb2, &b, &[a]));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(CompiledConstraints::new(&[c("rack", "LIKE", Some("("))]).is_err());
    }

    /// Places instances greedily: each round offers agents in `order` and places on the first
    /// accepted one. Returns the hosts' value index per placed instance.
    fn place(cs: &[Constraint], racks: &[Attributes], order: &[usize], n: usize) -> Vec<usize> {
        let compiled = CompiledConstraints::new(cs).expect("compiles");
        let hosts: Vec<String> = (0..racks.len()).map(|i| format!("h{i}")).collect();
        let mut placed: Vec<usize> = Vec::new();
        for round in 0..n {
            let views: Vec<AgentView<'_>> =
                placed.iter().map(|&i| view(&hosts[i], &racks[i])).collect();
            let pick = (0..order.len())
                .map(|k| order[(k + round) % order.len()] % racks.len())
                .find(|&i| compiled.check(&view(&hosts[i], &racks[i]), &views).is_ok());
            match pick {
                Some(i) => placed.push(i),
                None => break,
            }
        }
        placed
    }

    fn rack_counts(racks: &[Attributes], placed: &[usize], n_racks: usize) -> Vec<usize> {
        let mut out = vec![0; n_racks];
        for &i in placed {
            if let Some(AttrValue::Text(t)) = racks[i].get("rack") {
                let r: usize = t[1..].parse().expect("rack index");
                out[r] += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn unique_never_places_two_on_one_value(
            rack_of in proptest::collection::vec(0usize..5, 1..12),
            order in proptest::collection::vec(0usize..12, 1..30),
            n in 0usize..20,
        ) {
            let racks: Vec<Attributes> =
                rack_of.iter().map(|r| attrs(&format!("rack:r{r}"))).collect();
            let placed = place(&[c("rack", "UNIQUE", None)], &racks, &order, n);
            for count in rack_counts(&racks, &placed, 5) {
                prop_assert!(count <= 1);
            }
        }

        #[test]
        fn max_per_never_exceeds(
            rack_of in proptest::collection::vec(0usize..4, 1..12),
            order in proptest::collection::vec(0usize..12, 1..30),
            max in 1usize..4,
            n in 0usize..30,
        ) {
            let racks: Vec<Attributes> =
                rack_of.iter().map(|r| attrs(&format!("rack:r{r}"))).collect();
            let cs = [c("rack", "MAX_PER", Some(&max.to_string()))];
            let placed = place(&cs, &racks, &order, n);
            for count in rack_counts(&racks, &placed, 4) {
                prop_assert!(count <= max);
            }
        }

        #[test]
        fn group_by_spreads_evenly(
            n_racks in 1usize..5,
            per_rack in 1usize..4,
            order in proptest::collection::vec(0usize..16, 1..30),
            n in 0usize..40,
        ) {
            let racks: Vec<Attributes> = (0..n_racks * per_rack)
                .map(|i| attrs(&format!("rack:r{}", i % n_racks)))
                .collect();
            let cs = [c("rack", "GROUP_BY", Some(&n_racks.to_string()))];
            let placed = place(&cs, &racks, &order, n);
            let counts = rack_counts(&racks, &placed, n_racks);
            let (lo, hi) = (counts.iter().min().copied(), counts.iter().max().copied());
            if let (Some(lo), Some(hi)) = (lo, hi) {
                // Only check spread when every rack could be offered at each round.
                let offered: std::collections::BTreeSet<usize> =
                    order.iter().map(|&i| (i % racks.len()) % n_racks).collect();
                if offered.len() == n_racks {
                    prop_assert!(hi - lo <= 1, "counts {:?}", counts);
                    prop_assert_eq!(placed.len(), n);
                }
            }
        }
    }
}
