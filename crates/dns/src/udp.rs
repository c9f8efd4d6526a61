//! The UDP side of the server: one thread per core reading the shared socket. A plain A or SRV
//! query for a known name is answered on the spot from the snapshot's pre-encoded answers
//! ([`crate::wire`]): one read, one copy, one send, no task and no allocation. Every other
//! packet goes to the [`Handler`] in a task on the runtime, whose response is encoded as
//! hickory's server does for UDP (512 bytes without EDNS, else the offered payload).
//!
//! ```text
//!  socket ──recv──▶ loop thread ──plain, known──▶ template + id ──send──▶ client
//!                        └──other──▶ task: Request → Handler → UdpReply ──send──▶ client
//! ```
//! TCP stays with hickory's server.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::zone::Snapshot;

/// Largest query read (larger ones arrive cut, and get FORMERR).
const MAX_QUERY: usize = 4096;
/// How often a loop looks whether it must stop.
const POLL: Duration = Duration::from_millis(200);

/// Starts `loops` threads serving `socket` until `cancel`; needs a Tokio runtime (the
/// handler's tasks run on it).
pub(crate) fn spawn(
    socket: UdpSocket,
    loops: usize,
    snapshot: Arc<ArcSwap<Snapshot>>,
    handler: Arc<Handler>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(POLL))?;
    let socket = Arc::new(socket);
    let runtime = tokio::runtime::Handle::current();
    for i in 0..loops.max(1) {
        let (socket, snapshot, handler) = (socket.clone(), snapshot.clone(), handler.clone());
        let (runtime, cancel) = (runtime.clone(), cancel.clone());
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || serve(&socket, &snapshot, &handler, &runtime, &cancel))?;
    }
    Ok(())
}

fn serve(
    socket: &Arc<UdpSocket>,
    snapshot: &ArcSwap<Snapshot>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    cancel: &CancellationToken,
) {
    let mut buf = vec![0u8; MAX_QUERY];
    let mut out = Vec::with_capacity(512);
    while !cancel.is_cancelled() {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // E.g. an ICMP error of an earlier send reported here: keep serving.
                tracing::debug!(error = %e, "dns udp receive failed");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        // Nothing can be answered to port 0.
        if src.port() == 0 {
            continue;
        }
        let query = &buf[..n];
        if snapshot.load().answer_plain(query, &mut out) {
            if let Err(e) = socket.send_to(&out, src) {
                tracing::debug!(error = %e, %src, "dns udp send failed");
            }
            continue;
        }
        let reply = UdpReply {
            socket: socket.clone(),
            dst: src,
        };
        let (raw, handler) = (query.to_vec(), handler.clone());
        runtime.spawn(async move { handle(&handler, raw, reply).await });
    }
}

/// Answers one packet as hickory's server does: none without a header or for a response,
/// FORMERR when it does not decode, else the handler's answer.
async fn handle(handler: &Handler, raw: Vec<u8>, mut reply: UdpReply) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&raw)) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    let src = reply.dst;
    match Request::from_bytes(raw, src, Protocol::Udp) {
        Ok(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, reply)
                .await;
        }
        Err(e) => {
            tracing::debug!(error = %e, %src, "undecodable dns query");
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return;
            };
            let builder = MessageResponseBuilder::new(&queries, None);
            let response = builder.error_msg(&header.metadata, ResponseCode::FormErr);
            if let Err(e) = reply.send_response(response).await {
                tracing::debug!(error = %e, %src, "cannot send FORMERR");
            }
        }
    }
}

/// Sends a response to one client over the shared socket.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = encode(response)?;
        self.socket.send_to(&bytes, self.dst)?;
        Ok(info)
    }
}

/// A response on the wire within UDP's limit: 512 bytes without EDNS, else the payload the
/// response offers; SERVFAIL when it cannot be encoded.
fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<(ResponseInfo, Vec<u8>), NetError> {
    let id = response.metadata().id;
    let max = response.edns().map_or(512, |e| e.max_payload());
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    match response.destructive_emit(&mut encoder) {
        Ok(info) => return Ok((info, bytes)),
        Err(e) => tracing::warn!(error = %e, "cannot encode a dns response"),
    }
    bytes.clear();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(512);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header
        .emit(&mut encoder)
        .map_err(|e| NetError::from(e.to_string()))?;
    Ok((ResponseInfo::from(header), bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv4Addr;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::records::{Names, Srv};

    fn snapshot() -> Arc<ArcSwap<Snapshot>> {
        let mut names = Names::default();
        let ips: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
            .into_iter()
            .collect();
        names.hosts = BTreeMap::from([("web.marathon.meseta".to_owned(), ips)]);
        names.services = BTreeMap::from([(
            "_web._tcp.marathon.meseta".to_owned(),
            BTreeSet::from([
                Srv {
                    target: "web-a1.marathon.meseta".into(),
                    ip: Ipv4Addr::new(10, 0, 0, 1),
                    port: 31000,
                },
                Srv {
                    target: "web-b2.marathon.meseta".into(),
                    ip: Ipv4Addr::new(10, 0, 0, 2),
                    port: 31001,
                },
            ]),
        )]);
        let snap = Snapshot::new(names, "meseta", 5, 7);
        Arc::new(ArcSwap::new(Arc::new(snap)))
    }

    fn query(id: u16, name: &str, t: RecordType, rd: bool) -> Vec<u8> {
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = rd;
        q.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
        q.to_vec().expect("encode")
    }

    /// What the handler sends for `raw`.
    async fn handled(snap: &Arc<ArcSwap<Snapshot>>, raw: Vec<u8>) -> Vec<u8> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let reply = UdpReply {
            socket,
            dst: client.local_addr().expect("addr"),
        };
        let handler = Handler::new(snap.clone(), Vec::new());
        handle(&handler, raw, reply).await;
        let mut buf = [0u8; 2048];
        let n = client.recv(&mut buf).expect("an answer");
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn plain_answers_say_what_the_handler_says() {
        let snap = snapshot();
        let cases = [
            query(1, "web.marathon.meseta.", RecordType::A, false),
            query(0xBEEF, "WeB.Marathon.MESETA.", RecordType::A, true),
            query(42, "_web._tcp.marathon.meseta.", RecordType::SRV, true),
        ];
        for raw in cases {
            let mut out = Vec::new();
            assert!(snap.load().answer_plain(&raw, &mut out), "answered plainly");
            // The same message (the handler compresses names a little less).
            let m = Message::from_vec(&out).expect("decodes");
            let h = Message::from_vec(&handled(&snap, raw.clone()).await).expect("decodes");
            assert_eq!(m, h, "same answer to {raw:?}");
            assert!(!m.answers.is_empty() && m.metadata.authoritative);
            // The question comes back as asked (case included).
            assert_eq!(out[12..raw.len()], raw[12..]);
        }
    }

    #[tokio::test]
    async fn other_queries_go_to_the_handler() {
        let snap = snapshot();
        let mut out = Vec::new();
        let plain = |raw: &[u8], out: &mut Vec<u8>| snap.load().answer_plain(raw, out);
        // Unknown names, other types, names outside the domain, EDNS, garbage.
        assert!(!plain(
            &query(1, "nope.marathon.meseta.", RecordType::A, true),
            &mut out
        ));
        assert!(!plain(
            &query(1, "web.marathon.meseta.", RecordType::AAAA, true),
            &mut out
        ));
        assert!(!plain(
            &query(1, "example.com.", RecordType::A, true),
            &mut out
        ));
        let mut edns = Message::new(1, MessageType::Query, OpCode::Query);
        edns.add_query(Query::query(
            Name::from_ascii("web.marathon.meseta.").expect("name"),
            RecordType::A,
        ));
        edns.set_edns(hickory_proto::op::Edns::new());
        assert!(!plain(&edns.to_vec().expect("encode"), &mut out));
        let mut cut = query(1, "web.marathon.meseta.", RecordType::A, true);
        cut.truncate(cut.len() - 3);
        assert!(!plain(&cut, &mut out));
        assert!(!plain(&[0u8; 11], &mut out));
        // A truncated query gets FORMERR from the handler's path.
        let answer = handled(&snap, cut).await;
        let m = Message::from_vec(&answer).expect("decodes");
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // An unknown name: NXDOMAIN.
        let answer = handled(
            &snap,
            query(9, "nope.marathon.meseta.", RecordType::A, true),
        )
        .await;
        let m = Message::from_vec(&answer).expect("decodes");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.metadata.id, 9);
    }
}
