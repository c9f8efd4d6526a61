//! DNS service discovery end to end: a real master with `--dns-listen` and two agents on
//! loopback, a Marathon app in a group with host ports, queried over UDP and TCP with
//! hand-built packets, through the HTTP lookup API and through `meseta dns lookup`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{spawn, wait_for, Cluster};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A master serving DNS on a free port, and `agents` agents; returns the DNS address.
fn cluster_with_dns(agents: usize) -> (Cluster, SocketAddr) {
    cluster_with_dns_args(agents, &[])
}

/// [`cluster_with_dns`] with more flags for the master.
fn cluster_with_dns_args(agents: usize, extra: &[&str]) -> (Cluster, SocketAddr) {
    let mut c = Cluster {
        dir: common::task_reachable_dir(),
        port: common::free_port(),
        master: None,
        agents: Vec::new(),
        agent_ports: vec![0; agents],
        agent_timeout: 30.0,
        resources: "cpus:4;mem:4096;disk:2048;ports:[33000-33999]".into(),
        master_flags: Vec::new(),
        agent_flags: Vec::new(),
    };
    let log = c.dir.path().join("master.log");
    let listen = format!("127.0.0.1:{}", c.port);
    let data = c.dir.path().join("master");
    let mut args = vec![
        "master",
        "--listen",
        &listen,
        "--data-dir",
        data.to_str().expect("utf8"),
        "--dns-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    c.master = Some(spawn(&args, &log));
    let dns: SocketAddr = wait_for("the DNS address", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let rest = text.split("meseta dns serving meseta on ").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    });
    wait_for("master /health", Duration::from_secs(15), || {
        reqwest::blocking::get(format!("{}/health", c.url()))
            .ok()
            .filter(|r| r.status().is_success())
    });
    for i in 0..agents {
        c.agents.push(None);
        c.start_agent(i);
    }
    c.wait_agents(agents);
    (c, dns)
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    q
}

fn udp(server: SocketAddr, bytes: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(bytes, server).expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).expect("a DNS answer");
    Message::from_vec(&buf[..n]).expect("a DNS message")
}

fn tcp(server: SocketAddr, bytes: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let len = u16::try_from(bytes.len()).expect("short");
    s.write_all(&len.to_be_bytes()).expect("write");
    s.write_all(bytes).expect("write");
    let mut l = [0u8; 2];
    s.read_exact(&mut l).expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut buf).expect("message");
    Message::from_vec(&buf).expect("a DNS message")
}

fn ask_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    udp(server, &query(name, rtype).to_vec().expect("encode"))
}

/// The SRV answers' ports, sorted.
fn srv_ports(m: &Message) -> Vec<u16> {
    let mut ports: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    ports.sort_unstable();
    ports
}

fn running_host_ports(c: &Cluster) -> Vec<u16> {
    let r = c.call(Method::GET, "/v2/apps/prod/web/tasks", None);
    let mut ports: Vec<u16> = r.body["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["ports"][0].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    ports.sort_unstable();
    ports
}

fn wait_running(c: &Cluster, n: usize) -> Vec<u16> {
    wait_for(&format!("{n} running tasks"), WAIT, || {
        let p = running_host_ports(c);
        (p.len() == n).then_some(p)
    })
}

#[test]
fn apps_resolve_by_a_and_srv_and_follow_a_scale() {
    let (c, dns) = cluster_with_dns(2);
    let app = json!({"id": "/prod/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                     "instances": 2, "portDefinitions": [{"port": 0}]});
    let r = c.call(Method::POST, "/v2/apps", Some(&app));
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.body
    );
    let ports = wait_running(&c, 2);

    // A over UDP: both agents are on loopback.
    let srv_name = "_web-prod._tcp.marathon.meseta.";
    let a = wait_for("the app's A record", Duration::from_secs(5), || {
        let m = ask_udp(dns, "web-prod.marathon.meseta.", RecordType::A);
        (!m.answers.is_empty()).then_some(m)
    });
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert!(a.answers.iter().all(|r| r.ttl <= 5 && r.ttl > 0));
    assert!(a
        .answers
        .iter()
        .all(|r| matches!(&r.data, RData::A(ip) if ip.0.is_loopback())));

    // SRV over UDP and TCP: one answer per task, its host port, a target with an A record.
    let m = wait_for("2 SRV answers", Duration::from_secs(5), || {
        let m = ask_udp(dns, srv_name, RecordType::SRV);
        (srv_ports(&m) == ports).then_some(m)
    });
    for r in &m.answers {
        let RData::SRV(s) = &r.data else {
            panic!("not SRV: {r}")
        };
        assert!(
            m.additionals.iter().any(|a| a.name == s.target),
            "the target {} has an address in the additional section",
            s.target
        );
    }
    let t = tcp(
        dns,
        &query(srv_name, RecordType::SRV).to_vec().expect("encode"),
    );
    assert_eq!(srv_ports(&t), ports, "the same over TCP");

    // HTTP lookup API and the CLI.
    let services = c
        .get(&format!("/v1/services/{}", srv_name.trim_end_matches('.')))
        .expect("lookup API");
    assert_eq!(services.as_array().map(Vec::len), Some(2), "{services}");
    assert_eq!(services[0]["ip"], "127.0.0.1");
    let hosts = c
        .get("/v1/hosts/web-prod.marathon.meseta")
        .expect("lookup API");
    assert_eq!(hosts[0]["host"], "web-prod.marathon.meseta.");
    let out = c.cli(&["dns", "lookup", srv_name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let server = dns.to_string();
    let out = c.cli(&[
        "dns", "lookup", srv_name, "--type", "SRV", "--server", &server,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for p in &ports {
        assert!(text.contains(&p.to_string()), "{text}");
    }

    // Scale to 3: the third task is answered soon after it runs (the feed follows events).
    let r = c.call(
        Method::PUT,
        "/v2/apps/prod/web",
        Some(&json!({"instances": 3})),
    );
    assert!(r.status < 300, "{} {}", r.status, r.body);
    let ports = wait_running(&c, 3);
    let seen = Instant::now();
    wait_for("3 SRV answers", Duration::from_secs(3), || {
        (srv_ports(&ask_udp(dns, srv_name, RecordType::SRV)) == ports).then_some(())
    });
    eprintln!(
        "third task answered {:?} after the API showed it running",
        seen.elapsed()
    );
}

#[test]
fn bad_unknown_and_foreign_queries_get_the_right_codes() {
    let (_c, dns) = cluster_with_dns(1);
    // A header that announces a question, followed by half of one: FORMERR, same id.
    let mut bytes = query("web.marathon.meseta.", RecordType::A)
        .to_vec()
        .expect("encode");
    bytes.truncate(12 + 5);
    let m = udp(dns, &bytes);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let m = tcp(dns, &bytes);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::FormErr,
        "over TCP too"
    );
    // Two questions: FORMERR.
    let mut two = query("a.meseta.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("b.meseta.").expect("name"),
        RecordType::A,
    ));
    let m = udp(dns, &two.to_vec().expect("encode"));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    // Unknown in the domain: NXDOMAIN with the SOA.
    let m = ask_udp(dns, "nothing.marathon.meseta.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        m.authorities
            .iter()
            .any(|r| matches!(r.data, RData::SOA(_))),
        "{m:?}"
    );
    // Known without the asked type: NOERROR, no answers, the SOA.
    let m = ask_udp(dns, "leader.meseta.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = ask_udp(dns, "leader.meseta.", RecordType::A);
    assert_eq!(m.answers.len(), 1, "the leading master");
    // Outside the domain without upstream resolvers: REFUSED.
    let m = ask_udp(dns, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // The server is still up.
    let m = ask_udp(dns, "slave.meseta.", RecordType::A);
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn foreign_names_are_relayed_to_the_upstream_resolver() {
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::Record;
    // A resolver that answers every query with 192.0.2.7.
    let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = upstream.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            for query in &q.queries {
                r.add_query(query.clone());
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 7))),
                ));
            }
            let _ = upstream.send_to(&r.to_vec().expect("encode"), from);
        }
    });
    let (_c, dns) = cluster_with_dns_args(0, &["--dns-upstream", &upstream_addr]);
    let m = ask_udp(dns, "www.example.com.", RecordType::A);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        m.answers.iter().any(
            |r| matches!(&r.data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(192, 0, 2, 7))
        ),
        "{m:?}"
    );
    // Names in the domain are still ours.
    let m = ask_udp(dns, "nothing.meseta.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
