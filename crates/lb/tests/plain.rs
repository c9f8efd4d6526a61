//! Plain HTTP/1.1 requests through the L7 listener's fast path: a raw backend that records
//! the requests it gets and answers with each kind of body framing, the balancer in this
//! process fed by a stand-in master, and a raw keep-alive client.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fake_master, read_head, routed, wait_routed, wait_until, Tasks, VHOST};
use meseta_lb::{Config, Lb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Request heads (lower-cased) and bodies a backend got.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A backend answering by path: `/len` with a length, `/chunked` with a chunked body sent in
/// parts, `/close` with a body that ends when it closes (HTTP/1.0), `/echo` with the request's
/// body.
async fn backend(seen: Seen) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut s).await.to_ascii_lowercase();
                    if head.is_empty() {
                        return;
                    }
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    seen.lock()
                        .expect("seen")
                        .push((head.clone(), body.clone()));
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let parts: Vec<Vec<u8>> = match path.as_str() {
                        "/chunked" => vec![
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                                .to_vec(),
                            b"0\r\n\r\n".to_vec(),
                        ],
                        "/close" => vec![b"HTTP/1.0 200 OK\r\n\r\nuntil-close".to_vec()],
                        "/echo" => {
                            let mut r =
                                format!("HTTP/1.1 201 Created\r\nContent-Length: {length}\r\n\r\n")
                                    .into_bytes();
                            r.extend_from_slice(&body);
                            vec![r]
                        }
                        _ => vec![
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\
                              Keep-Alive: timeout=5\r\n\r\n"
                                .to_vec(),
                            b"ok".to_vec(),
                        ],
                    };
                    for p in parts {
                        if s.write_all(&p).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if path == "/close" {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads a response with a `Content-Length` body: (head, body).
async fn response(c: &mut TcpStream) -> (String, String) {
    let head = read_head(c).await;
    let length = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).await.expect("body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

async fn balancer(tasks: Tasks) -> Lb {
    balancer_with(tasks, Duration::from_secs(30)).await
}

async fn balancer_with(tasks: Tasks, backend_timeout: Duration) -> Lb {
    let master = fake_master(tasks).await;
    let mut config = Config::new(master);
    config.proxy.backend_timeout = backend_timeout;
    config.listen_http = "127.0.0.1:0".parse().expect("addr");
    config.listen_admin = "127.0.0.1:0".parse().expect("addr");
    config.workers = 1;
    config.resync = Duration::from_millis(100);
    config.debounce = Duration::from_millis(10);
    Lb::start(config).await.expect("lb starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_are_forwarded_with_their_bodies_and_framing() {
    let seen: Seen = Arc::default();
    let addr = backend(seen.clone()).await;
    let tasks: Tasks = Arc::new(Mutex::new(vec![addr]));
    let lb = balancer(tasks).await;
    let admin = lb.admin_addr;
    wait_routed(admin, addr).await;
    let mut c = TcpStream::connect(lb.http_addr).await.expect("connect");

    // Hop-by-hop headers stay on their hop; X-Forwarded-For gets the client.
    let req = format!(
        "GET /len?q=1 HTTP/1.1\r\nHost: {VHOST}\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\
         X-Forwarded-For: 10.1.1.1\r\nX-Other: kept\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.expect("write");
    let (head, body) = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("keep-alive"), "{head}");
    assert_eq!(body, "ok");
    let (got, _) = seen
        .lock()
        .expect("seen")
        .last()
        .cloned()
        .expect("a request");
    assert!(got.starts_with("get /len?q=1 http/1.1\r\n"), "{got}");
    assert!(
        got.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1\r\n"),
        "{got}"
    );
    assert!(got.contains("x-other: kept\r\n"), "{got}");
    assert!(
        !got.contains("connection") && !got.contains("keep-alive"),
        "{got}"
    );

    // A body goes to the backend and back.
    let req = format!("POST /echo HTTP/1.1\r\nHost: {VHOST}\r\nContent-Length: 5\r\n\r\nhello");
    c.write_all(req.as_bytes()).await.expect("write");
    let (head, body) = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 201 Created\r\n"), "{head}");
    assert_eq!(body, "hello");

    // A chunked body is relayed chunked, and the connection goes on after its end.
    let req = format!("GET /chunked HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut c).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut body = [0u8; 13];
    c.read_exact(&mut body).await.expect("chunked body");
    assert_eq!(&body, b"3\r\nabc\r\n0\r\n\r\n");

    // An unknown host is answered by the balancer.
    c.write_all(b"GET / HTTP/1.1\r\nHost: nobody.local\r\n\r\n")
        .await
        .expect("write");
    let (head, body) = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("no app serves host 'nobody.local'"), "{body}");

    // A body without a length ends when the backend closes: so does the client's connection.
    let req = format!("GET /close HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut c).await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s")
        .expect("read to the end");
    assert_eq!(rest, b"until-close");
    assert_eq!(
        routed(admin).await,
        vec![(addr.to_string(), 0)],
        "nothing left in flight"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_refuses_is_a_502_with_the_reason() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = l.local_addr().expect("addr");
    drop(l);
    let tasks: Tasks = Arc::new(Mutex::new(vec![dead]));
    let lb = balancer(tasks).await;
    let admin = lb.admin_addr;
    wait_routed(admin, dead).await;
    let mut c = TcpStream::connect(lb.http_addr).await.expect("connect");
    let req = format!("GET / HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("write");
    let (head, body) = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(
        body.contains(&format!("cannot connect to backend {dead}")),
        "{body}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_is_skipped_and_a_silent_one_is_a_504() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = l.local_addr().expect("addr");
    drop(l);
    let seen: Seen = Arc::default();
    let live = backend(seen.clone()).await;
    // A backend that takes connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let quiet = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let tasks: Tasks = Arc::new(Mutex::new(vec![dead, live]));
    let lb = balancer_with(tasks.clone(), Duration::from_millis(300)).await;
    let admin = lb.admin_addr;
    wait_until("both backends in the balancer's table", || async {
        routed(admin).await.len() == 2
    })
    .await;
    let mut c = TcpStream::connect(lb.http_addr).await.expect("connect");
    // Whichever comes first, every request ends on the live backend.
    for _ in 0..4 {
        let req = format!("GET /len HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
        c.write_all(req.as_bytes()).await.expect("write");
        let (head, body) = response(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "ok");
    }
    *tasks.lock().expect("tasks") = vec![quiet];
    wait_until("the silent backend alone in the table", || async {
        routed(admin)
            .await
            .iter()
            .map(|(a, _)| a.clone())
            .collect::<Vec<_>>()
            == vec![quiet.to_string()]
    })
    .await;
    let req = format!("GET /len HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
    c.write_all(req.as_bytes()).await.expect("write");
    let (head, body) = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    assert!(body.contains("did not answer within 0.3 s"), "{body}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_are_served_by_hyper() {
    use http_body_util::BodyExt;
    let seen: Seen = Arc::default();
    let addr = backend(seen).await;
    let lb = balancer(Arc::new(Mutex::new(vec![addr]))).await;
    let admin = lb.admin_addr;
    wait_routed(admin, addr).await;
    let stream = TcpStream::connect(lb.http_addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = hyper::Request::builder()
            .uri(format!("http://{VHOST}/len"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    lb.stop().await;
}
