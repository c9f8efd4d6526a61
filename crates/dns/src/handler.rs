//! The DNS request handler: answers names in the domain from the current [`Snapshot`], forwards
//! or refuses the others.
//!
//! - not exactly one question → FORMERR (undecodable packets get FORMERR from hickory's server
//!   before they reach here; packets shorter than a header have no id to answer and are dropped);
//! - an opcode other than QUERY → NOTIMP;
//! - a name in the domain with records of the asked type → NOERROR, authoritative; SRV answers
//!   carry their targets' A records as additionals;
//! - a name in the domain without them → NOERROR with the SOA (no data); an unknown name in the
//!   domain → NXDOMAIN with the SOA;
//! - a name outside the domain → relayed to the first upstream resolver that answers
//!   ([`crate::upstream`]), or REFUSED when none is configured (SERVFAIL when none answers).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::zone::Snapshot;

/// Largest UDP answer we offer with EDNS (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// Answers queries from a swapped snapshot.
pub struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstream: Vec<SocketAddr>,
}

impl Handler {
    /// A handler over `snapshot`, relaying names outside the domain to `upstream` (none: REFUSED).
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, upstream: Vec<SocketAddr>) -> Handler {
        Handler { snapshot, upstream }
    }
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut rh: R,
    code: ResponseCode,
) -> ResponseInfo {
    let builder = MessageResponseBuilder::new(&request.queries, None);
    rh.send_response(builder.error_msg(&request.metadata, code))
        .await
        .unwrap_or_else(|_| failed(request, code))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, rh, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(request, rh, ResponseCode::FormErr).await;
        };
        let snap = self.snapshot.load_full();
        let qname = info.query.name();
        if !snap.origin.zone_of(qname) {
            if self.upstream.is_empty() {
                return send_error(request, rh, ResponseCode::Refused).await;
            }
            return match crate::upstream::forward(&self.upstream, request.as_slice()).await {
                Some(msg) => {
                    let mut metadata = msg.metadata;
                    metadata.id = request.metadata.id;
                    let builder = MessageResponseBuilder::new(&request.queries, None);
                    let resp = builder.build(
                        metadata,
                        msg.answers.iter(),
                        msg.authorities.iter(),
                        std::iter::empty(),
                        msg.additionals.iter(),
                    );
                    rh.send_response(resp)
                        .await
                        .unwrap_or_else(|_| failed(request, ResponseCode::ServFail))
                }
                None => send_error(request, rh, ResponseCode::ServFail).await,
            };
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let none: &[Record] = &[];
        let (answers, additionals): (Vec<&Record>, &[Record]) = match snap.rrs.get(qname) {
            None => {
                metadata.response_code = ResponseCode::NXDomain;
                (Vec::new(), none)
            }
            Some(rrs) => match info.query.query_type() {
                RecordType::A => (rrs.a.iter().collect(), none),
                RecordType::SRV => (rrs.srv.iter().collect(), &rrs.srv_targets),
                RecordType::ANY => (rrs.a.iter().chain(rrs.srv.iter()).collect(), none),
                RecordType::SOA if qname == &snap.origin => (vec![&snap.soa], none),
                _ => (Vec::new(), none),
            },
        };
        let soa = answers.is_empty().then_some(&snap.soa);
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            e
        });
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let resp = builder.build(
            metadata,
            answers,
            std::iter::empty(),
            soa,
            additionals.iter(),
        );
        rh.send_response(resp)
            .await
            .unwrap_or_else(|_| failed(request, ResponseCode::ServFail))
    }
}
