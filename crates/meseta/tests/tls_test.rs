//! TLS end to end with the built binary: certificates made by `meseta tls`, a master serving
//! HTTPS with mutual TLS for agents and a join token, the CLI over https with the CA, and agents
//! refused for a missing or foreign client certificate or a wrong join token.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{free_port, spawn, wait_for, Proc, MESETA};

fn meseta(args: &[&str]) -> std::process::Output {
    Command::new(MESETA)
        .args(args)
        .output()
        .expect("run meseta")
}

fn ok(args: &[&str]) {
    let out = meseta(args);
    assert!(
        out.status.success(),
        "meseta {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

/// `meseta node list --json` over https trusting `ca`: the agents' host names.
fn node_hosts(url: &str, ca: &Path) -> Option<Vec<String>> {
    let out = meseta(&[
        "--master",
        url,
        "--ca-cert",
        p(ca),
        "node",
        "list",
        "--json",
    ]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let list = v.as_array().or_else(|| v.get("agents")?.as_array())?;
    Some(
        list.iter()
            .filter_map(|a| a.get("hostname")?.as_str().map(str::to_string))
            .collect(),
    )
}

fn agent(dir: &Path, name: &str, url: &str, extra: &[&str]) -> Proc {
    let work = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let mut args = vec![
        "agent",
        "--master",
        url,
        "--work-dir",
        p(&work),
        "--listen",
        "127.0.0.1:0",
        "--resources",
        "cpus:1;mem:256;disk:100;ports:[41000-41010]",
        "--hostname",
        name,
        "--no-docker",
    ];
    args.extend_from_slice(extra);
    spawn(&args, &log)
}

#[test]
fn tls_cluster_with_mutual_tls_and_join_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca_dir = d.join("ca");
    let rogue_dir = d.join("rogue");
    ok(&["tls", "ca", "--out", p(&ca_dir)]);
    ok(&["tls", "ca", "--out", p(&rogue_dir)]);
    let ca = ca_dir.join("ca.pem");
    ok(&[
        "tls",
        "cert",
        "--ca",
        p(&ca_dir),
        "--name",
        "master",
        "--ip",
        "127.0.0.1",
        "--dns",
        "localhost",
    ]);
    ok(&[
        "tls",
        "cert",
        "--ca",
        p(&ca_dir),
        "--name",
        "agent",
        "--ip",
        "127.0.0.1",
        "--client",
    ]);
    ok(&[
        "tls",
        "cert",
        "--ca",
        p(&rogue_dir),
        "--name",
        "agent",
        "--ip",
        "127.0.0.1",
        "--client",
    ]);
    let token = d.join("token");
    std::fs::write(&token, "join-me-7f3a\n").expect("token");
    let wrong_token = d.join("wrong-token");
    std::fs::write(&wrong_token, "join-me-7f3b\n").expect("token");

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("https://127.0.0.1:{port}");
    let _master = spawn(
        &[
            "master",
            "--listen",
            &listen,
            "--data-dir",
            p(&d.join("master")),
            "--tls-cert",
            p(&ca_dir.join("master.pem")),
            "--tls-key",
            p(&ca_dir.join("master.key")),
            "--tls-client-ca",
            p(&ca),
            "--join-token-file",
            p(&token),
        ],
        &d.join("master.log"),
    );
    // The CLI works over https with the CA.
    wait_for("the CLI over https", Duration::from_secs(20), || {
        node_hosts(&url, &ca)
    });
    // Without the CA the master's certificate is not trusted; plain http gets no answer.
    let untrusted = meseta(&["--master", &url, "node", "list", "--json"]);
    assert!(
        !untrusted.status.success(),
        "https without the CA must fail"
    );
    let plain = meseta(&[
        "--master",
        &format!("http://127.0.0.1:{port}"),
        "node",
        "list",
    ]);
    assert!(
        !plain.status.success(),
        "plain http to a TLS listener must fail"
    );

    let cert = ca_dir.join("agent.pem");
    let key = ca_dir.join("agent.key");
    let good = agent(
        d,
        "good",
        &url,
        &[
            "--ca-cert",
            p(&ca),
            "--tls-cert",
            p(&cert),
            "--tls-key",
            p(&key),
            "--join-token-file",
            p(&token),
        ],
    );
    wait_for("the good agent registered", Duration::from_secs(30), || {
        node_hosts(&url, &ca).filter(|h| h.contains(&"good".to_string()))
    });

    let no_cert = agent(
        d,
        "nocert",
        &url,
        &["--ca-cert", p(&ca), "--join-token-file", p(&token)],
    );
    let rogue = agent(
        d,
        "rogue",
        &url,
        &[
            "--ca-cert",
            p(&ca),
            "--tls-cert",
            p(&rogue_dir.join("agent.pem")),
            "--tls-key",
            p(&rogue_dir.join("agent.key")),
            "--join-token-file",
            p(&token),
        ],
    );
    let wrong = agent(
        d,
        "wrongtoken",
        &url,
        &[
            "--ca-cert",
            p(&ca),
            "--tls-cert",
            p(&cert),
            "--tls-key",
            p(&key),
            "--join-token-file",
            p(&wrong_token),
        ],
    );
    let no_token = agent(
        d,
        "notoken",
        &url,
        &[
            "--ca-cert",
            p(&ca),
            "--tls-cert",
            p(&cert),
            "--tls-key",
            p(&key),
        ],
    );

    wait_for(
        "the refusals in the agents' logs",
        Duration::from_secs(30),
        || {
            (no_cert.log_text().contains("403")
                && no_cert.log_text().contains("client certificate")
                && rogue
                    .log_text()
                    .contains("TLS handshake with the master failed")
                && wrong.log_text().contains("403")
                && wrong.log_text().contains("wrong join token")
                && no_token.log_text().contains("401"))
            .then_some(())
        },
    );
    // Give the refused agents a few more reconnect attempts, then check none got in.
    std::thread::sleep(Duration::from_secs(3));
    let hosts = node_hosts(&url, &ca).expect("node list");
    assert_eq!(
        hosts,
        vec!["good".to_string()],
        "only the good agent registers"
    );
    // Each refusal is in the audit log, in the master's own words.
    let out = meseta(&[
        "--master",
        &url,
        "--ca-cert",
        p(&ca),
        "audit",
        "--limit",
        "500",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    let refused = |status: u64, words: &str| {
        audit.as_array().into_iter().flatten().any(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/api/meseta/v1/agent"))
                && e["status"] == status
                && e["denied"].as_str().is_some_and(|d| d.contains(words))
        })
    };
    assert!(
        refused(403, "client certificate"),
        "no certificate: {audit}"
    );
    assert!(refused(403, "wrong join token"), "wrong token: {audit}");
    assert!(refused(401, "join token"), "no token: {audit}");
    drop(good);
}
