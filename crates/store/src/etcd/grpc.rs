//! etcd's v3 gRPC API for the backend's unary calls (reads, writes, transactions, lease grant,
//! revoke and keep-alive): the `etcdserverpb` messages it uses, written out with `prost`'s
//! derive (field numbers as in etcd's `rpc.proto` and `kv.proto`; fields the store never sets
//! or reads are left out, and `prost` skips them in answers), and the calls over `tonic`.
//!
//! Why not only the JSON gateway: etcd's gateway turns each JSON request into a gRPC call to
//! itself. Measured on a 3-member cluster writing 20,000 keys of 560 bytes in transactions of
//! 100, the member taking the requests spent 2.8 s of CPU through the gateway and 0.96 s over
//! gRPC (each follower about 0.5 s either way), so the gateway was most of etcd's cost of a
//! master's writes. Watches stay on the gateway's line stream (see the `watch` module).
//!
//! Messages are built by hand instead of generated from the `.proto` files so that building
//! meseta needs no `protoc`.

use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::client::REQUEST_TIMEOUT;
use crate::StoreError;

/// The method paths.
pub(crate) mod path {
    pub const RANGE: &str = "/etcdserverpb.KV/Range";
    pub const PUT: &str = "/etcdserverpb.KV/Put";
    pub const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
    pub const TXN: &str = "/etcdserverpb.KV/Txn";
    pub const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
    pub const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
    pub const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
}

/// `ResponseHeader` (only the revision).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Header {
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Kv {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// `RangeRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub limit: i64,
    #[prost(bool, tag = "9")]
    pub count_only: bool,
}

/// `RangeResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<Header>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<Kv>,
}

/// `PutRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

/// `DeleteRangeRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

/// `PutResponse`, `DeleteRangeResponse` (`deleted`), `LeaseRevokeResponse`: the header, and
/// the count of deleted keys where there is one.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<Header>,
    #[prost(int64, tag = "2")]
    pub deleted: i64,
}

/// `Compare.CompareTarget`.
pub(crate) mod target {
    pub const VERSION: i32 = 0;
    pub const MOD: i32 = 2;
    pub const VALUE: i32 = 3;
}

/// `Compare.target_union`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum CompareWith {
    #[prost(int64, tag = "4")]
    Version(i64),
    #[prost(int64, tag = "6")]
    ModRevision(i64),
    #[prost(bytes = "vec", tag = "7")]
    Value(Vec<u8>),
}

/// `Compare` (`result` is always `EQUAL`, the enum's zero, so it is never sent).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Compare {
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "CompareWith", tags = "4, 6, 7")]
    pub with: Option<CompareWith>,
}

/// `RequestOp.request`: a put or a range delete.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Request {
    #[prost(message, tag = "2")]
    Put(PutRequest),
    #[prost(message, tag = "3")]
    Delete(DeleteRangeRequest),
}

/// `RequestOp`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RequestOp {
    #[prost(oneof = "Request", tags = "2, 3")]
    pub request: Option<Request>,
}

/// `TxnRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// `TxnResponse` (the per-operation answers are not read).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<Header>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

/// `LeaseGrantRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
}

/// `LeaseGrantResponse` and `LeaseKeepAliveResponse` (same numbers for `ID` and `TTL`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseAnswer {
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

/// `LeaseRevokeRequest` and `LeaseKeepAliveRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseId {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// The revision in an answer's header (0 when there is none).
pub(crate) fn revision(header: &Option<Header>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// One gRPC connection per member, opened on first use.
pub(crate) struct Channels {
    channels: Vec<Channel>,
}

/// HTTP/2 flow-control windows: a transaction is up to about 1.5 MiB, and a wave of them runs
/// concurrently on one connection; the 64 KiB default would hold each at one round trip per
/// window.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// HTTP/2 pings while calls are open: a connection to a member that stopped answering (frozen,
/// or cut off by the network without a reset) is closed after about interval + timeout, so a
/// later call to that member connects anew (and fails fast if it cannot) instead of waiting on
/// a dead connection. etcd answers pings more frequent than every 5 s, or pings on a connection
/// without calls, by closing the connection (`--grpc-keepalive-min-time`).
const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(6);
const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl Channels {
    /// Lazily connecting channels to `endpoints` (`http://host:port`).
    pub(crate) fn new(
        endpoints: &[String],
        connect_timeout: std::time::Duration,
    ) -> Result<Channels, StoreError> {
        let channels = endpoints
            .iter()
            .map(|e| {
                Endpoint::from_shared(e.clone())
                    .map(|ep| {
                        ep.connect_timeout(connect_timeout)
                            .tcp_nodelay(true)
                            .initial_stream_window_size(STREAM_WINDOW)
                            .initial_connection_window_size(CONNECTION_WINDOW)
                            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                            .connect_lazy()
                    })
                    .map_err(|err| StoreError::Backend(format!("bad etcd endpoint {e}: {err}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Channels { channels })
    }

    /// A gRPC client on member `idx`'s channel, once the channel takes calls.
    async fn ready(&self, idx: usize) -> Result<tonic::client::Grpc<Channel>, Failure> {
        let mut grpc = tonic::client::Grpc::new(self.channels[idx].clone());
        grpc.ready()
            .await
            .map_err(|e| Failure::NotSent(e.to_string()))?;
        Ok(grpc)
    }

    /// One unary call on member `idx`, within [`REQUEST_TIMEOUT`].
    pub(crate) async fn unary<Req, Resp>(
        &self,
        idx: usize,
        path: &'static str,
        req: Req,
    ) -> Result<Resp, Failure>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        answered_within(async {
            let mut grpc = self.ready(idx).await?.max_decoding_message_size(usize::MAX);
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(Failure::from_status)
        })
        .await
    }

    /// A lease keep-alive: the bidirectional `LeaseKeepAlive` stream with one request, and its
    /// first answer, within [`REQUEST_TIMEOUT`].
    pub(crate) async fn keep_alive(&self, idx: usize, id: i64) -> Result<LeaseAnswer, Failure> {
        answered_within(async {
            let mut grpc = self.ready(idx).await?;
            let codec = tonic_prost::ProstCodec::<LeaseId, LeaseAnswer>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path::LEASE_KEEP_ALIVE);
            let requests = futures::stream::iter([LeaseId { id }]);
            let mut answers = grpc
                .streaming(tonic::Request::new(requests), path, codec)
                .await
                .map_err(Failure::from_status)?
                .into_inner();
            match answers.message().await {
                Ok(Some(answer)) => Ok(answer),
                Ok(None) => Err(Failure::Unanswered(
                    "the keep-alive stream ended without an answer".into(),
                )),
                Err(status) => Err(Failure::from_status(status)),
            }
        })
        .await
    }
}

/// `call`'s outcome, or [`Failure::Unanswered`] after [`REQUEST_TIMEOUT`].
async fn answered_within<T>(
    call: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Unanswered(format!(
            "no answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

/// A failed gRPC call.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request never left (no connection to the member).
    NotSent(String),
    /// Sent, and no answer came (timeout, connection lost): it may have been applied.
    Unanswered(String),
    /// The member answered with a gRPC status.
    Status(tonic::Code, String),
}

impl Failure {
    fn from_status(status: tonic::Status) -> Failure {
        if connect_failed(&status) {
            return Failure::NotSent(status.to_string());
        }
        Failure::Status(status.code(), status.message().to_owned())
    }
}

/// Whether `status` comes from failing to connect (so the request was never sent): tonic
/// reports it as `Unavailable` with the transport's connect error among its sources.
fn connect_failed(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | TimedOut | NotFound | AddrNotAvailable
            ) {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = e.source();
    }
    false
}

/// The HTTP status etcd's gateway gives a gRPC code (grpc-gateway's mapping), so that one
/// error mapping serves both transports.
pub(crate) fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code;
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_with_etcds_field_numbers() {
        // A put of key "k", value "v", lease 12: tags 1 and 2 (length-delimited), 3 (varint).
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 12,
        };
        assert_eq!(
            put.encode_to_vec(),
            [0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 12]
        );
        // A compare on the mod revision: target 2 (field 2), key (3), mod_revision (6).
        let c = Compare {
            target: target::MOD,
            key: b"k".to_vec(),
            with: Some(CompareWith::ModRevision(5)),
        };
        assert_eq!(c.encode_to_vec(), [0x10, 2, 0x1a, 1, b'k', 0x30, 5]);
        // A delete inside a transaction's success branch: RequestOp field 3 in TxnRequest field 2.
        let txn = TxnRequest {
            compare: vec![],
            success: vec![RequestOp {
                request: Some(Request::Delete(DeleteRangeRequest {
                    key: b"k".to_vec(),
                    range_end: vec![],
                })),
            }],
            failure: vec![],
        };
        assert_eq!(txn.encode_to_vec(), [0x12, 5, 0x1a, 3, 0x0a, 1, b'k']);
    }

    #[test]
    fn answers_decode_and_skip_what_is_not_read() {
        // RangeResponse { header { cluster_id: 1, revision: 7 }, kvs [{ key "a", value "b",
        // mod_revision 7, lease 9 }], count: 1 }
        let bytes = [
            0x0a, 4, 0x08, 1, 0x18, 7, // header
            0x12, 10, 0x0a, 1, b'a', 0x18, 7, 0x2a, 1, b'b', 0x30, 9, // kv
            0x20, 1, // count (not read)
        ];
        let r = RangeResponse::decode(&bytes[..]).expect("decode");
        assert_eq!(revision(&r.header), 7);
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(
            (&r.kvs[0].key[..], &r.kvs[0].value[..], r.kvs[0].lease),
            (&b"a"[..], &b"b"[..], 9)
        );
        // TxnResponse with succeeded and a per-op answer that is skipped.
        let t = TxnResponse::decode(&[0x10, 1, 0x1a, 2, 0x12, 0][..]).expect("decode");
        assert!(t.succeeded);
    }

    #[tokio::test]
    async fn a_member_that_refuses_connections_was_never_sent_the_request() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let channels = Channels::new(
            &[format!("http://127.0.0.1:{port}")],
            std::time::Duration::from_secs(1),
        )
        .expect("channels");
        let put = PutRequest {
            key: b"k".to_vec(),
            value: vec![],
            lease: 0,
        };
        let r = channels
            .unary::<_, WriteResponse>(0, path::PUT, put.clone())
            .await;
        assert!(matches!(r, Err(Failure::NotSent(_))), "{r:?}");
        // Again on the same channel (its reconnect path).
        let r = channels.unary::<_, WriteResponse>(0, path::PUT, put).await;
        assert!(matches!(r, Err(Failure::NotSent(_))), "{r:?}");
    }

    #[test]
    fn grpc_codes_map_like_the_gateway() {
        assert_eq!(http_status(tonic::Code::Unavailable), 503);
        assert_eq!(http_status(tonic::Code::ResourceExhausted), 429);
        assert_eq!(http_status(tonic::Code::OutOfRange), 400);
        assert_eq!(http_status(tonic::Code::Unknown), 500);
    }
}
