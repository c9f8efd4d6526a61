//! `meseta`: one binary for the master, the agent, the task shim and the CLI.
//!
//! Wiring only: clap parses the command line, and each subcommand hands off to its crate.
//! `meseta shim` runs before any async runtime exists, so it is single-threaded when it forks.
#![deny(unsafe_code)]

mod access;
mod backup;
mod cluster;
mod dns;
mod heap;
mod lb;
mod secrets;
mod shutdown;
mod tls;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A datacenter operating system: master, agents and clients in one binary.
#[derive(Parser, Debug)]
#[command(name = "meseta", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Top,
    #[command(flatten)]
    global: meseta_cli::GlobalArgs,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "MESETA_LOG_JSON")]
    log_json: bool,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// A one-machine cluster: a master and one agent, embedded store.
    Dev(cluster::DevArgs),
    /// Run a master.
    Master(cluster::MasterArgs),
    /// Run an agent.
    Agent(cluster::AgentArgs),
    /// Supervise one task (started by the agent; not for direct use).
    #[command(hide = true)]
    Shim {
        /// The task directory holding launch.json.
        task_dir: PathBuf,
    },
    #[command(flatten)]
    Client(meseta_cli::Command),
    /// Benchmarks against a private local cluster.
    #[command(subcommand)]
    Bench(meseta_bench::BenchCmd),
    /// Simulated agents for tests and benchmarks.
    #[command(subcommand)]
    Sim(meseta_bench::sim::SimCmd),
    /// Write the store's contents to a file (from a running master, or a stopped one's dir).
    Backup(backup::BackupArgs),
    /// Write a backup file into a stopped master's empty store.
    Restore(backup::RestoreArgs),
    /// The load balancer (follows the masters' event stream; never reloads), or its status.
    Lb(lb::LbArgs),
    /// Make a CA and certificates for a dev/test cluster.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
}

fn main() {
    // The agent starts one shim per task: skip building the whole command tree for it (about
    // a millisecond of every launch). `meseta shim DIR` parsed by clap below behaves the same.
    let mut args = std::env::args_os().skip(1);
    if let (Some(verb), Some(dir), None) = (args.next(), args.next(), args.next()) {
        if verb == "shim" && !dir.to_string_lossy().starts_with('-') {
            std::process::exit(meseta_isolation::shim::run(std::path::Path::new(&dir)));
        }
    }
    let cli = Cli::parse();
    if let Top::Shim { task_dir } = &cli.command {
        std::process::exit(meseta_isolation::shim::run(task_dir));
    }
    let balancer = matches!(&cli.command, Top::Lb(a) if a.cmd.is_none());
    let server = balancer || matches!(cli.command, Top::Dev(_) | Top::Master(_) | Top::Agent(_));
    init_logging(server, cli.log_json);
    if server {
        heap::configure_for_server();
        if let Err(e) = shutdown::arm_watchdog(SHUTDOWN_GRACE) {
            eprintln!("error: {}", render_chain(&e));
            std::process::exit(1);
        }
    }
    let code = match runtime(server).and_then(|rt| rt.block_on(run(cli))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_chain(&e));
            1
        }
    };
    std::process::exit(code);
}

/// How long a server may take to stop after SIGTERM or Ctrl-C before it is ended regardless.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// An error and its causes on one line, `outer: cause: root`. Many library errors already
/// print their source inside their own message; a cause whose text the line already ends with
/// is not repeated.
fn render_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Servers get two worker threads (enough on these machines, and it keeps idle memory low).
fn runtime(server: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if server {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().context("starting the async runtime")
}

fn init_logging(server: bool, json: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Top::Dev(a) => cluster::dev(a, cli.global.ca_cert).await.map(|_| 0),
        Top::Master(a) => cluster::master(a).await.map(|_| 0),
        Top::Agent(a) => cluster::agent(a, cli.global.ca_cert).await.map(|_| 0),
        Top::Shim { .. } => Ok(0),
        Top::Client(c) => meseta_cli::run(c, cli.global).await,
        Top::Bench(c) => meseta_bench::run(c, cli.global.json).await,
        Top::Sim(c) => meseta_bench::sim::run(c, &cli.global.master, cli.global.json).await,
        Top::Backup(a) => backup::backup(a, &cli.global.master, cli.global.json).await,
        Top::Restore(a) => backup::restore(a, cli.global.json).await,
        Top::Lb(a) => lb::run(a, &cli.global.master, cli.global.json).await,
        Top::Tls(c) => tls::run(c),
    }
}

#[cfg(test)]
mod tests {
    use super::render_chain;

    /// An error that prints its source in its own message, as many library errors do.
    #[derive(Debug)]
    struct Bind {
        source: std::io::Error,
    }

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot bind on 127.0.0.1:5051: {}", self.source)
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let io_text = io.to_string();
        let e = anyhow::Error::new(Bind { source: io }).context("agent stopped");
        let line = render_chain(&e);
        assert_eq!(line.matches(&io_text).count(), 1, "{line}");
        assert!(line.starts_with("agent stopped: cannot bind"), "{line}");
        let plain = anyhow::anyhow!("root cause")
            .context("middle")
            .context("top");
        assert_eq!(render_chain(&plain), "top: middle: root cause");
    }
}
