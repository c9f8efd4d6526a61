//! `meseta dns lookup NAME`: what the master's DNS answers for a name. Through the master's HTTP
//! lookup API (`/v1/hosts/{name}`, `/v1/services/{name}`, as Mesos-DNS serves them) by default,
//! or straight from a DNS server with `--server ADDR` (UDP, then TCP when the answer was
//! truncated). Prints a table, or with `--json` the lookup API's shape
//! (`[{"host","ip"}]`, `[{"service","host","ip","port"}]`). Exit code 1 when there is no record.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use meseta_api::client::MasterClient;
use serde_json::{json, Value};

use crate::output;

/// `meseta dns ...`
#[derive(clap::Subcommand, Debug)]
pub enum DnsCmd {
    /// Look a name up: its A records (hosts) or SRV records (services).
    Lookup(LookupArgs),
}

/// Record types `lookup` asks for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Addresses (`web-prod.marathon.meseta`).
    #[value(name = "A")]
    A,
    /// Host ports (`_web-prod._tcp.marathon.meseta`).
    #[value(name = "SRV")]
    Srv,
}

/// `meseta dns lookup`.
#[derive(clap::Args, Debug)]
pub struct LookupArgs {
    /// The name, e.g. `web-prod.marathon.meseta` or `_web-prod._tcp.marathon.meseta`.
    pub name: String,
    /// Record type (default: SRV for names starting with `_`, A otherwise).
    #[arg(long = "type", value_enum, ignore_case = true)]
    pub kind: Option<Kind>,
    /// Ask this DNS server (`127.0.0.1:8053`) instead of the master's HTTP lookup API.
    #[arg(long)]
    pub server: Option<SocketAddr>,
}

/// Runs a dns subcommand; returns the exit code.
pub async fn run(cmd: DnsCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let DnsCmd::Lookup(a) = cmd;
    let kind = a.kind.unwrap_or(if a.name.starts_with('_') {
        Kind::Srv
    } else {
        Kind::A
    });
    let rows = match a.server {
        Some(server) => query_server(server, &a.name, kind).await?,
        None => {
            let path = match kind {
                Kind::A => format!("/v1/hosts/{}", a.name),
                Kind::Srv => format!("/v1/services/{}", a.name),
            };
            let v = client
                .get_path(&path)
                .await
                .with_context(|| format!("cannot look {} up at the master", a.name))?;
            // The lookup API answers one blank entry for a name without records.
            v.as_array()
                .into_iter()
                .flatten()
                .filter(|e| !output::str_field(e, "ip").is_empty())
                .cloned()
                .collect()
        }
    };
    if json {
        output::print_json(&Value::Array(rows.clone()));
    } else if rows.is_empty() {
        eprintln!("{}: no {:?} records", a.name, kind);
    } else {
        println!("{}", render(&rows, kind));
    }
    Ok(if rows.is_empty() { 1 } else { 0 })
}

/// The rows as a table.
pub fn render(rows: &[Value], kind: Kind) -> String {
    let f = |r: &Value, k: &str| match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    match kind {
        Kind::A => output::table(
            &["HOST", "IP"],
            &rows
                .iter()
                .map(|r| vec![f(r, "host"), f(r, "ip")])
                .collect::<Vec<_>>(),
        ),
        Kind::Srv => output::table(
            &["SERVICE", "HOST", "IP", "PORT"],
            &rows
                .iter()
                .map(|r| vec![f(r, "service"), f(r, "host"), f(r, "ip"), f(r, "port")])
                .collect::<Vec<_>>(),
        ),
    }
}

/// One DNS exchange with `server` over UDP, retried over TCP when the answer is truncated.
pub async fn exchange(server: SocketAddr, query: &Message) -> anyhow::Result<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bytes = query.to_vec().context("encoding the query")?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .with_context(|| format!("no DNS answer from {server}"))??;
    let answer = Message::from_vec(&buf[..n]).context("decoding the answer")?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let mut tcp = tokio::net::TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).context("query too long")?;
    tcp.write_all(&len.to_be_bytes()).await?;
    tcp.write_all(&bytes).await?;
    let len = tcp.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    tcp.read_exact(&mut buf).await?;
    Message::from_vec(&buf).context("decoding the answer")
}

async fn query_server(server: SocketAddr, name: &str, kind: Kind) -> anyhow::Result<Vec<Value>> {
    let qname = Name::from_ascii(name.trim_end_matches('.').to_string() + ".")
        .with_context(|| format!("{name:?} is not a DNS name"))?;
    let rtype = match kind {
        Kind::A => RecordType::A,
        Kind::Srv => RecordType::SRV,
    };
    let mut q = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(qname.clone(), rtype));
    let answer = exchange(server, &q).await?;
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => bail!("{server} answered {code} for {name}"),
    }
    let ip_of = |target: &Name| -> Option<Ipv4Addr> {
        answer.additionals.iter().find_map(|r| match &r.data {
            RData::A(a) if &r.name == target => Some(a.0),
            _ => None,
        })
    };
    let host = qname.to_ascii();
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(json!({"host": host, "ip": a.0.to_string()})),
            RData::SRV(s) => Some(json!({
                "service": host.trim_end_matches('.'), "host": s.target.to_ascii(),
                "ip": ip_of(&s.target).map(|ip| ip.to_string()).unwrap_or_default(),
                "port": s.port.to_string(),
            })),
            _ => None,
        })
        .collect())
}

fn rand_id() -> u16 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u16::from_be_bytes([b[0], b[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_row_per_record() {
        let rows = vec![
            json!({"service": "_web._tcp.marathon.meseta", "host": "a1.slave.meseta.",
                   "ip": "10.0.0.2", "port": "31000"}),
            json!({"service": "_web._tcp.marathon.meseta", "host": "a2.slave.meseta.",
                   "ip": "10.0.0.3", "port": "31001"}),
        ];
        let t = render(&rows, Kind::Srv);
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.contains("31001") && t.contains("a2.slave.meseta."), "{t}");
    }
}
