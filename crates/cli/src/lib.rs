//! The `meseta` command-line verbs that talk to a master: `execute`, `task`, `node`, `framework`,
//! `job` and `bench`.
//!
//! The `meseta` binary parses [`GlobalArgs`] and a [`Command`] with clap and hands them to
//! [`run`], which returns the process exit code. One module per noun; [`output`] renders tables
//! and JSON for all of them.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod deploy;
pub mod execute;
pub mod framework;
pub mod job;
pub mod maintenance;
pub mod node;
pub mod output;
pub mod role;
pub mod sim;
pub mod task;

use meseta_api::client::MasterClient;

/// Options every subcommand accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Base URL of the master.
    #[arg(
        long,
        env = "MESETA_MASTER",
        default_value = "http://127.0.0.1:5050",
        global = true
    )]
    pub master: String,
    /// Print machine-readable JSON instead of tables and text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The CLI verbs.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run one command as a task and wait for it to finish (like mesos-execute).
    Execute(execute::ExecuteArgs),
    /// List, follow and kill tasks.
    #[command(subcommand)]
    Task(task::TaskCmd),
    /// Inspect agents.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// List and tear down frameworks.
    #[command(subcommand)]
    Framework(framework::FrameworkCmd),
    /// Roles: weights, quota, allocation.
    #[command(subcommand)]
    Role(role::RoleCmd),
    /// Quota of roles.
    #[command(subcommand)]
    Quota(role::QuotaCmd),
    /// Dynamic reservations of agents' resources for roles.
    #[command(subcommand)]
    Reservation(maintenance::ReservationCmd),
    /// Scheduled jobs (the Chronos-compatible jobs scheduler).
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Long-running services (the Marathon-compatible apps scheduler).
    #[command(subcommand)]
    App(app::AppCmd),
    /// Deployments of services: list, watch, cancel.
    #[command(subcommand)]
    Deploy(deploy::DeployCmd),
    /// Benchmarks against a private local cluster.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Simulated agents for tests and benchmarks.
    #[command(subcommand)]
    Sim(sim::SimCmd),
}

/// Runs `cmd` and returns the process exit code.
pub async fn run(cmd: Command, g: GlobalArgs) -> anyhow::Result<i32> {
    match cmd {
        Command::Execute(args) => execute::run(args, &client(&g)?, g.json).await,
        Command::Task(c) => task::run(c, &client(&g)?, g.json).await,
        Command::Node(c) => node::run(c, &client(&g)?, g.json).await,
        Command::Framework(c) => framework::run(c, &client(&g)?, g.json).await,
        Command::Role(c) => role::run_role(c, &client(&g)?, g.json).await,
        Command::Quota(c) => role::run_quota(c, &client(&g)?, g.json).await,
        Command::Reservation(c) => maintenance::run_reservation(c, &client(&g)?, g.json).await,
        Command::Job(c) => job::run(c, &client(&g)?, g.json).await,
        Command::App(c) => app::run(c, &g.master, g.json).await,
        Command::Deploy(c) => deploy::run(c, &g.master, g.json).await,
        Command::Bench(c) => bench::run(c, g.json).await,
        Command::Sim(c) => sim::run(c, &g.master, g.json).await,
    }
}

fn client(g: &GlobalArgs) -> anyhow::Result<MasterClient> {
    Ok(MasterClient::new(&g.master)?)
}

/// The user the CLI runs as: `$USER`, else the name of the current uid, else `root`.
pub(crate) fn current_user() -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return u;
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        g: GlobalArgs,
        #[command(subcommand)]
        cmd: Command,
    }

    #[test]
    fn command_tree_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_parse_after_subcommands() {
        let cli = Cli::try_parse_from([
            "meseta",
            "task",
            "list",
            "--all",
            "--json",
            "--master",
            "http://m:1",
        ])
        .expect("valid args");
        assert!(cli.g.json);
        assert_eq!(cli.g.master, "http://m:1");
        assert!(matches!(
            cli.cmd,
            Command::Task(task::TaskCmd::List { all: true })
        ));
    }

    #[test]
    fn bench_defaults() {
        let cli = Cli::try_parse_from(["meseta", "bench", "launch"]).expect("valid args");
        let Command::Bench(bench::BenchCmd::Launch(a)) = cli.cmd else {
            panic!("not bench")
        };
        assert_eq!(a.tasks, 200);
        assert_eq!(a.command, "sleep 1000");
    }
}
