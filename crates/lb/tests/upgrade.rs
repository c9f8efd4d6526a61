//! WebSocket-style upgrades through the L7 listener: a raw TCP backend that answers `101` and
//! echoes, the balancer in this process fed by a stand-in master, and a raw client. Plain
//! keep-alive requests go through the same client connection first.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fake_master, get_text, read_head, routed, wait_routed, wait_until, Tasks, VHOST};
use meseta_lb::{Config, Lb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend on a free port: `Upgrade` requests get `101` and then an echo of every byte;
/// other requests get `200 ok` on a keep-alive connection.
async fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut s).await.to_ascii_lowercase();
                    if head.is_empty() {
                        return;
                    }
                    if head.contains("\r\nupgrade: websocket") && head.contains("upgrade") {
                        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                                      Connection: Upgrade\r\n\r\n";
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` on the upgraded connection and reads the echo.
async fn echo(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg)
        .await
        .expect("write on the upgraded connection");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo within 5 s")
        .expect("read the echo");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_spliced_to_a_backend_counted_and_cut_when_it_drains() {
    let backend = echo_backend().await;
    let tasks: Tasks = Arc::new(Mutex::new(vec![backend]));
    let master = fake_master(tasks.clone()).await;
    let mut config = Config::new(master);
    config.listen_http = "127.0.0.1:0".parse().expect("addr");
    config.listen_admin = "127.0.0.1:0".parse().expect("addr");
    config.bind_ip = "127.0.0.1".parse().expect("ip");
    config.workers = 1;
    config.resync = Duration::from_millis(100);
    config.debounce = Duration::from_millis(10);
    config.drain = Duration::from_secs(2);
    let lb = Lb::start(config).await.expect("lb starts");
    let (http, admin) = (lb.http_addr, lb.admin_addr);
    wait_routed(admin, backend).await;

    let mut client = TcpStream::connect(http).await.expect("connect to the lb");
    // Plain keep-alive requests first, on the same client connection.
    for _ in 0..2 {
        let req = format!("GET /plain HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
        client.write_all(req.as_bytes()).await.expect("write");
        let head = read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 2];
        client.read_exact(&mut body).await.expect("body");
        assert_eq!(&body, b"ok");
    }
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {VHOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    client.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut client).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert_eq!(echo(&mut client, b"hello").await, b"hello");
    assert_eq!(echo(&mut client, &[7u8; 70_000]).await, vec![7u8; 70_000]);

    let metrics = get_text(admin, "/metrics").await;
    let line = format!("meseta_lb_upgrades_total{{app=\"/ws\",backend=\"{backend}\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");
    assert_eq!(
        routed(admin).await,
        vec![(backend.to_string(), 1)],
        "the upgraded connection is in flight on its backend"
    );

    // The backend leaves the table: the connection drains, then is cut at the deadline.
    tasks.lock().expect("tasks").clear();
    wait_until("the backend out of the table", || async {
        routed(admin).await.is_empty()
    })
    .await;
    let left = Instant::now();
    assert_eq!(
        echo(&mut client, b"still").await,
        b"still",
        "open while draining"
    );
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest)).await;
    assert!(
        cut.is_ok(),
        "the connection was cut after the drain deadline"
    );
    assert!(
        left.elapsed() >= Duration::from_millis(1000),
        "cut at the deadline, not at once: {:?}",
        left.elapsed()
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_refused_by_the_backend_is_an_ordinary_response() {
    // A backend that does not switch: the client gets its answer and keeps HTTP.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                while !read_head(&mut s).await.is_empty() {
                    let answer = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope";
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let tasks: Tasks = Arc::new(Mutex::new(vec![backend]));
    let master = fake_master(tasks).await;
    let mut config = Config::new(master);
    config.listen_http = "127.0.0.1:0".parse().expect("addr");
    config.listen_admin = "127.0.0.1:0".parse().expect("addr");
    config.workers = 1;
    config.resync = Duration::from_millis(100);
    let lb = Lb::start(config).await.expect("lb starts");
    let admin = lb.admin_addr;
    wait_routed(admin, backend).await;
    let mut client = TcpStream::connect(lb.http_addr).await.expect("connect");
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {VHOST}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    client.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    let mut body = [0u8; 4];
    client.read_exact(&mut body).await.expect("body");
    assert_eq!(&body, b"nope");
    let metrics = get_text(admin, "/metrics").await;
    assert!(!metrics.contains("meseta_lb_upgrades_total{"), "{metrics}");
    lb.stop().await;
}
