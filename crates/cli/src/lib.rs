//! The `meseta` command-line verbs that talk to a master: `execute`, `task`, `node`, `framework`,
//! `role`, `quota`, `reservation`, `job`, `app`, `pod`, `deploy`, `dns`, `acl`, `audit` and `secret`.
//!
//! The `meseta` binary parses [`GlobalArgs`] and a [`Command`] with clap and hands them to
//! [`run`], which returns the process exit code. One module per noun, each a client of the
//! master's public HTTP APIs through the one typed client, [`meseta_api::client::MasterClient`];
//! [`output`] renders tables and JSON for all of them, [`input`] reads their input files.
#![forbid(unsafe_code)]

pub mod acl;
pub mod app;
pub mod deploy;
pub mod dns;
pub mod execute;
pub mod framework;
pub mod input;
pub mod job;
pub mod lb;
pub mod maintenance;
pub mod node;
pub mod output;
pub mod pod;
pub mod role;
pub mod secret;
pub mod task;

use meseta_api::client::MasterClient;

/// Options every subcommand accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Base URL of the master, or a comma-separated list of the masters of a highly available
    /// cluster (`http://m1:5050,http://m2:5050`): requests go to the leading master (a
    /// follower's redirect is followed; an unreachable master, or one that knows no leader yet,
    /// is skipped).
    #[arg(
        long,
        env = "MESETA_MASTER",
        default_value = "http://127.0.0.1:5050",
        global = true
    )]
    pub master: String,
    /// CA certificate (PEM) trusted for an `https` master.
    #[arg(long = "ca-cert", env = "MESETA_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Print machine-readable JSON instead of tables and text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The ACL token to send (`Authorization: Bearer`), needed by masters run with `--acl`.
    #[arg(long, env = "MESETA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
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
    /// Pods: containers scheduled together as one task group (Marathon `/v2/pods`).
    #[command(subcommand)]
    Pod(pod::PodCmd),
    /// Deployments of services: list, watch, cancel.
    #[command(subcommand)]
    Deploy(deploy::DeployCmd),
    /// Service discovery: what the master's DNS answers for a name.
    #[command(subcommand)]
    Dns(dns::DnsCmd),
    /// Access control: the bootstrap token, tokens and policies.
    #[command(subcommand)]
    Acl(acl::AclCmd),
    /// The audit log: mutations and denials, newest last.
    Audit(acl::AuditArgs),
    /// Secrets: put, list (never values), remove.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
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
        Command::App(c) => app::run(c, &client(&g)?, g.json).await,
        Command::Pod(c) => pod::run(c, &client(&g)?, g.json).await,
        Command::Deploy(c) => deploy::run(c, &client(&g)?, g.json).await,
        Command::Dns(c) => dns::run(c, &client(&g)?, g.json).await,
        Command::Acl(c) => acl::run(c, &client(&g)?, g.json).await,
        Command::Audit(a) => acl::audit(a, &client(&g)?, g.json).await,
        Command::Secret(c) => secret::run(c, &client(&g)?, g.json).await,
    }
}

fn client(g: &GlobalArgs) -> anyhow::Result<MasterClient> {
    let token = g.token.as_deref().filter(|t| !t.is_empty());
    Ok(MasterClient::with_options(
        &g.master,
        token,
        g.ca_cert.as_deref(),
    )?)
}

/// The framework user of the CLI's own frameworks (`execute`, bench): the user the CLI runs as
/// (`$USER`, else the name of the current uid), or none (empty) for root, whose tasks then run as
/// the agents' default user (root only when a task asks for it on an agent that allows it).
pub fn current_user() -> String {
    let name = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_default();
    if name == "root" {
        String::new()
    } else {
        name
    }
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
    fn master_takes_a_list() {
        let cli = Cli::try_parse_from([
            "meseta",
            "--master",
            "http://m1:5050,http://m2:5050",
            "app",
            "list",
        ])
        .expect("valid args");
        assert_eq!(cli.g.master, "http://m1:5050,http://m2:5050");
        let client = client(&cli.g).expect("client");
        assert_eq!(client.masters(), ["http://m1:5050", "http://m2:5050"]);
    }
}
