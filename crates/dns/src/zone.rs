//! The snapshot queries are answered from: [`Names`] turned into DNS records once per change,
//! and the plain A and SRV answers encoded once ([`crate::wire`]), swapped in whole
//! ([`arc_swap`]), never rebuilt per query.

use std::collections::HashMap;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use crate::records::Names;
use crate::wire::{self, Wire};

/// The records of one name.
#[derive(Default)]
pub(crate) struct Rrs {
    pub a: Vec<Record>,
    pub srv: Vec<Record>,
    /// The A records of the SRV targets (the additional section).
    pub srv_targets: Vec<Record>,
}

/// Everything a query is answered from.
pub struct Snapshot {
    /// The names, for the HTTP lookup API.
    pub names: Names,
    /// The domain, lower-case, without the root dot.
    pub domain: String,
    /// TTL of every record.
    pub ttl: u32,
    pub(crate) origin: LowerName,
    pub(crate) soa: Record,
    pub(crate) rrs: HashMap<LowerName, Rrs>,
    /// The pre-encoded answers, by wire name.
    pub(crate) wire: HashMap<Box<[u8]>, Wire>,
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

impl Snapshot {
    /// The records of `names` under `domain` (a valid lower-case domain); `serial` numbers the
    /// SOA.
    pub fn new(names: Names, domain: &str, ttl: u32, serial: u32) -> Snapshot {
        let origin = fqdn(domain).unwrap_or_else(Name::root);
        let ns = fqdn(&format!("ns1.{domain}")).unwrap_or_else(Name::root);
        let mbox = fqdn(&format!("root.ns1.{domain}")).unwrap_or_else(Name::root);
        // Negative answers are cached for the minimum field: as short as positive ones.
        let soa = Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(ns, mbox, serial, 60, 60, 86400, ttl)),
        );
        let mut rrs: HashMap<LowerName, Rrs> = HashMap::new();
        for name in &names.empty {
            if let Some(n) = fqdn(name) {
                rrs.entry(LowerName::new(&n)).or_default();
            }
        }
        for (name, ips) in &names.hosts {
            let Some(n) = fqdn(name) else { continue };
            let e = rrs.entry(LowerName::new(&n)).or_default();
            e.a = ips
                .iter()
                .map(|ip| Record::from_rdata(n.clone(), ttl, RData::A(A(*ip))))
                .collect();
        }
        for (name, srvs) in &names.services {
            let Some(n) = fqdn(name) else { continue };
            let mut records = Vec::new();
            let mut targets = Vec::new();
            for s in srvs {
                let Some(target) = fqdn(&s.target) else {
                    continue;
                };
                records.push(Record::from_rdata(
                    n.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, 1, s.port, target.clone())),
                ));
                let a = Record::from_rdata(target, ttl, RData::A(A(s.ip)));
                if !targets.contains(&a) {
                    targets.push(a);
                }
            }
            let e = rrs.entry(LowerName::new(&n)).or_default();
            e.srv = records;
            e.srv_targets = targets;
        }
        let wire = rrs
            .iter()
            .filter(|(_, r)| !r.a.is_empty() || !r.srv.is_empty())
            .map(|(n, r)| (wire::key(n), Wire::new(n, &r.a, &r.srv, &r.srv_targets)))
            .collect();
        Snapshot {
            names,
            domain: domain.to_string(),
            ttl,
            origin: LowerName::new(&origin),
            soa,
            rrs,
            wire,
        }
    }

    /// Writes the answer to a plain A or SRV `query` for a name with such records into `out`
    /// (see [`crate::wire`]); false when the query needs the full handler.
    pub fn answer_plain(&self, query: &[u8], out: &mut Vec<u8>) -> bool {
        wire::answer(query, |name| self.wire.get(name), out)
    }

    /// An empty snapshot (before the first state arrives).
    pub fn empty(domain: &str, ttl: u32) -> Arc<Snapshot> {
        Arc::new(Snapshot::new(Names::default(), domain, ttl, 0))
    }
}
