//! `meseta deploy list|watch|cancel`: the master's running Marathon deployments
//! (`/v2/deployments`, reference `marathon-chronos-api.md` §4.2).

use meseta_api::client::MasterClient;

use crate::app::{progress, render, WaitArgs};
use crate::output;

/// `meseta deploy ...`
#[derive(clap::Subcommand, Debug)]
pub enum DeployCmd {
    /// Running deployments: affected apps, current actions, step.
    List,
    /// Follow a deployment until it is done.
    Watch {
        /// The deployment id.
        id: String,
        /// Give up after this long (`90s`, `10m`, `1h`); exits with code 2.
        #[arg(long, default_value = "10m", value_parser = progress::parse_timeout)]
        timeout: std::time::Duration,
    },
    /// Cancel a deployment: rolls its changes back in a new deployment, or with `--force` just
    /// stops it where it is.
    Cancel {
        /// The deployment id.
        id: String,
        /// Stop without rolling back (leaves old and new instances as they are).
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// Runs a deploy subcommand; returns the exit code.
pub async fn run(cmd: DeployCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let api = &client.marathon();
    match cmd {
        DeployCmd::List => {
            let d = api.deployments().await?;
            if json {
                output::print_json(&d);
            } else {
                println!("{}", render::render_deployments(&d));
            }
            Ok(0)
        }
        DeployCmd::Watch { id, timeout } => {
            let all = api.deployments().await?;
            if progress::find_deployment(&all, &id).is_none() {
                println!("deployment {id} is not running (it finished, or the id is unknown)");
                return Ok(0);
            }
            progress::wait_deployment(api, &id, timeout, json).await
        }
        DeployCmd::Cancel { id, force, wait } => {
            let r = api.cancel_deployment(&id, force).await?;
            if json {
                output::print_json(&r.body);
            }
            match (&r.deployment_id, force) {
                (Some(revert), _) => {
                    if !json {
                        println!("deployment {id} cancelled; rolling back in deployment {revert}");
                    }
                    if wait.wait {
                        return progress::wait_deployment(api, revert, wait.timeout, json).await;
                    }
                }
                (None, true) => {
                    if !json {
                        println!("deployment {id} stopped without rollback");
                    }
                }
                (None, false) => {
                    if !json {
                        println!("deployment {id} cancelled");
                    }
                }
            }
            Ok(0)
        }
    }
}
