//! `meseta bench launch` (being written).

/// `meseta bench ...`
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Measure launch latency.
    Launch(LaunchArgs),
}

/// `bench launch` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 200)]
    pub tasks: usize,
    /// Command each task runs.
    #[arg(long, default_value = "sleep 1000")]
    pub command: String,
}

/// Runs a bench subcommand.
pub async fn run(cmd: BenchCmd, json: bool) -> anyhow::Result<i32> {
    let _ = (cmd, json);
    Ok(0)
}
