//! `meseta app add|list|show|update|scale|restart|remove|versions|rollback|canary`: a client of
//! the master's Marathon API (`/v2/apps`, reference `marathon-chronos-api.md` §2) plus meseta's
//! canary extension (`/v2/apps/{id}/canary`). Tables by default, the raw JSON with `--json`;
//! `--wait` follows the resulting deployment (see [`progress`]).

pub mod canary;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod flow_tests;
pub mod judge;
pub mod progress;
pub mod render;

use std::time::Duration;

use anyhow::{bail, Context};
use meseta_api::client::marathon::absolute_id;
use meseta_api::client::{Marathon, MasterClient, Reply};
use serde_json::{json, Value};

use crate::input::read_json;
use crate::output;
use canary::CanaryGoal;

/// `--wait` and `--timeout`, shared by every verb that starts a deployment.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until the deployment is done, showing its progress.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (`90s`, `10m`, `1h`); exits with code 2.
    #[arg(long, default_value = "10m", value_parser = progress::parse_timeout)]
    pub timeout: Duration,
}

/// `meseta app ...`
#[derive(clap::Subcommand, Debug)]
pub enum AppCmd {
    /// Create apps from Marathon app JSON (one object or an array; `-` reads stdin).
    Add {
        /// The JSON file, or `-`.
        file: String,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List apps with their instance counts and whether a deployment is running.
    List,
    /// One app and its tasks.
    Show {
        /// The app id.
        id: String,
    },
    /// Change an app: the file's fields replace the current ones (PUT, partial update).
    Update {
        /// The app id.
        id: String,
        /// The JSON file, or `-`.
        file: String,
        /// Override a deployment that holds the app.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set the number of instances.
    Scale {
        /// The app id.
        id: String,
        /// The new instance count.
        instances: u32,
        /// Override a deployment that holds the app.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Replace every instance (a rolling restart following the upgrade strategy).
    Restart {
        /// The app id.
        id: String,
        /// Override a deployment that holds the app.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete the app and stop its instances.
    Remove {
        /// The app id.
        id: String,
        /// Override a deployment that holds the app.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The app's stored versions, newest first.
    Versions {
        /// The app id.
        id: String,
    },
    /// Go back to an earlier version (default: the one before the current).
    Rollback {
        /// The app id.
        id: String,
        /// The version to restore (a timestamp from `app versions`).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Override a deployment that holds the app.
        #[arg(long)]
        force: bool,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Canary deployments: `canary ID FILE --instances K`, `canary status|promote|abort ID`.
    Canary(CanaryArgs),
}

/// `meseta app canary ...`: start a canary, or act on the running one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CanaryArgs {
    /// Act on the running canary.
    #[command(subcommand)]
    pub action: Option<CanaryAction>,
    /// The app id.
    #[arg(required = true)]
    pub id: Option<String>,
    /// App definition fields to change for the canaries (JSON file, or `-`).
    #[arg(required = true)]
    pub file: Option<String>,
    /// Number of canary instances.
    #[arg(long, required = true)]
    pub instances: Option<u32>,
    /// Promote once every canary has been healthy this long (roll back if one fails).
    #[arg(long, value_name = "SECS")]
    pub auto_promote_after: Option<u64>,
    /// `--wait` and `--timeout`.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// `--judge lb --lb URL`: promote or roll back on the balancer's measurements.
    #[command(flatten)]
    pub judge: judge::JudgeArgs,
}

/// `meseta app canary status|promote|abort|judge ID`
#[derive(clap::Subcommand, Debug)]
pub enum CanaryAction {
    /// The canary's state and instance counts.
    Status {
        /// The app id.
        id: String,
    },
    /// Roll the remaining instances to the canary version.
    Promote {
        /// The app id.
        id: String,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Kill the canaries and return to the stable version.
    Abort {
        /// The app id.
        id: String,
        /// `--wait` and `--timeout`.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Judge the running canary on the balancer's measurements: promote or roll back.
    Judge {
        /// The app id.
        id: String,
        /// `--lb URL` and the judge's thresholds (`--judge` is implied).
        #[command(flatten)]
        judge: judge::JudgeArgs,
        /// Give up after this long (`90s`, `10m`); exits with code 2.
        #[arg(long, default_value = "10m", value_parser = progress::parse_timeout)]
        timeout: Duration,
    },
}

/// Runs an app subcommand; returns the exit code.
pub async fn run(cmd: AppCmd, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let api = &client.marathon();
    match cmd {
        AppCmd::Add { file, wait } => add(api, &file, &wait, json).await,
        AppCmd::List => list(api, json).await,
        AppCmd::Show { id } => {
            let body = api.app_details(&id).await?;
            if json {
                output::print_json(&body);
            } else {
                println!("{}", render::render_app(&body));
            }
            Ok(0)
        }
        AppCmd::Update {
            id,
            file,
            force,
            wait,
        } => {
            let body = read_json(&file)?;
            if !body.is_object() {
                bail!("{file} must hold one app object");
            }
            let r = api.put_app(&id, &body, force).await?;
            finish(
                api,
                &r,
                &format!("app {} updated", absolute_id(&id)),
                &wait,
                json,
            )
            .await
        }
        AppCmd::Scale {
            id,
            instances,
            force,
            wait,
        } => {
            let body = json!({ "instances": instances });
            let r = api.put_app(&id, &body, force).await?;
            let what = format!("app {} scaled to {instances}", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        AppCmd::Restart { id, force, wait } => {
            let r = api.restart_app(&id, force).await?;
            let what = format!("app {} restarting", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        AppCmd::Remove { id, force, wait } => {
            let r = api.delete_app(&id, force).await?;
            let what = format!("app {} removed", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        AppCmd::Versions { id } => versions(api, &id, json).await,
        AppCmd::Rollback {
            id,
            to,
            force,
            wait,
        } => rollback(api, &id, to, force, &wait, json).await,
        AppCmd::Canary(args) => canary(api, args, json).await,
    }
}

/// Reports a mutation's deployment and, with `--wait`, follows it.
async fn finish(
    api: &Marathon<'_>,
    reply: &Reply,
    what: &str,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        output::print_json(&reply.body);
    } else {
        match &reply.deployment_id {
            Some(d) => println!("{what} (deployment {d})"),
            None => println!("{what}"),
        }
    }
    if !wait.wait {
        return Ok(0);
    }
    match &reply.deployment_id {
        Some(d) => progress::wait_deployment(api, d, wait.timeout, json).await,
        None => {
            eprintln!("the master started no deployment; nothing to wait for");
            Ok(0)
        }
    }
}

/// The app objects of an `add` input: one object or an array of them, each with an `id`.
pub fn apps_of(input: Value) -> anyhow::Result<Vec<Value>> {
    let apps = match input {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => bail!("the app file must hold an app object or an array of them"),
    };
    if apps.is_empty() {
        bail!("the app file holds no app");
    }
    for a in &apps {
        if !a.is_object() || output::str_field(a, "id").trim_matches('/').is_empty() {
            bail!("every app needs a non-empty \"id\"");
        }
    }
    Ok(apps)
}

async fn add(api: &Marathon<'_>, file: &str, wait: &WaitArgs, json: bool) -> anyhow::Result<i32> {
    let apps = apps_of(read_json(file)?)?;
    let mut replies = Vec::with_capacity(apps.len());
    for a in &apps {
        let r = api.create_app(a).await?;
        if !json {
            let id = absolute_id(output::str_field(a, "id"));
            match &r.deployment_id {
                Some(d) => println!("app {id} added (deployment {d})"),
                None => println!("app {id} added"),
            }
        }
        replies.push(r);
    }
    if json {
        let bodies: Vec<Value> = replies.iter().map(|r| r.body.clone()).collect();
        match bodies.as_slice() {
            [one] => output::print_json(one),
            _ => output::print_json(&Value::Array(bodies)),
        }
    }
    let mut code = 0;
    if wait.wait {
        for d in replies.iter().filter_map(|r| r.deployment_id.as_deref()) {
            code = code.max(progress::wait_deployment(api, d, wait.timeout, json).await?);
        }
    }
    Ok(code)
}

async fn list(api: &Marathon<'_>, json: bool) -> anyhow::Result<i32> {
    let apps = api.apps().await?;
    if json {
        output::print_json(&apps);
    } else {
        println!("{}", render::render_apps(&apps));
    }
    Ok(0)
}

/// The app's current version and its stored versions, newest first.
async fn version_list(api: &Marathon<'_>, id: &str) -> anyhow::Result<(String, Vec<String>)> {
    let app = api.app(id).await?;
    let current = output::str_field(app.get("app").unwrap_or(&app), "version").to_string();
    let v = api.app_versions(id).await?;
    Ok((current, render::sorted_versions(&v)))
}

async fn versions(api: &Marathon<'_>, id: &str, json: bool) -> anyhow::Result<i32> {
    let (current, versions) = version_list(api, id).await?;
    if json {
        output::print_json(&json!({ "versions": versions }));
    } else {
        println!("{}", render::render_versions(&versions, &current));
    }
    Ok(0)
}

/// The body that restores a stored version: its definition without version and status fields.
pub fn restore_body(mut stored: Value) -> Value {
    if let Some(o) = stored.as_object_mut() {
        // A PUT must not carry the version itself (a body with `version` and other fields is
        // rejected) nor the read-only status fields.
        for k in meseta_api::marathon::READ_ONLY_APP_KEYS {
            o.remove(*k);
        }
    }
    stored
}

async fn rollback(
    api: &Marathon<'_>,
    id: &str,
    to: Option<String>,
    force: bool,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<i32> {
    let target = match to {
        Some(v) => v,
        None => {
            let (current, versions) = version_list(api, id).await?;
            match render::previous_version(&versions, &current) {
                Some(v) => v.to_string(),
                None => bail!(
                    "app {} has no version before the current one ({current})",
                    absolute_id(id)
                ),
            }
        }
    };
    let stored = api.app_version(id, &target).await?;
    let body = restore_body(stored);
    let r = api.put_app(id, &body, force).await?;
    let what = format!("app {} rolling back to {target}", absolute_id(id));
    finish(api, &r, &what, wait, json).await
}

/// The `POST /v2/apps/{id}/canary` body.
pub fn canary_body(app: Value, instances: u32, auto_promote_after: Option<u64>) -> Value {
    let mut body = json!({ "app": app, "instances": instances });
    if let Some(s) = auto_promote_after {
        body["autoPromoteAfterSeconds"] = json!(s);
    }
    body
}

async fn canary(api: &Marathon<'_>, args: CanaryArgs, json: bool) -> anyhow::Result<i32> {
    match args.action {
        Some(CanaryAction::Status { id }) => {
            let Some(c) = api.canary(&id).await? else {
                bail!("app {} has no canary", absolute_id(&id));
            };
            if json {
                output::print_json(&c);
            } else {
                println!("{}", render::render_canary(&c));
            }
            Ok(0)
        }
        Some(CanaryAction::Promote { id, wait }) => {
            let r = api.promote_canary(&id).await?;
            let what = format!("canary of {} promoting", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        Some(CanaryAction::Abort { id, wait }) => {
            let r = api.abort_canary(&id).await?;
            let what = format!("canary of {} aborted", absolute_id(&id));
            finish(api, &r, &what, &wait, json).await
        }
        Some(CanaryAction::Judge { id, judge, timeout }) => {
            judge::judge_canary(api, &absolute_id(&id), &judge, timeout, json).await
        }
        None => {
            let (Some(id), Some(file), Some(instances)) = (args.id, args.file, args.instances)
            else {
                bail!("usage: meseta app canary ID FILE --instances K");
            };
            let app = read_json(&file)?;
            if !app.is_object() {
                bail!("{file} must hold one object of app fields");
            }
            let body = canary_body(app, instances, args.auto_promote_after);
            let r = api
                .start_canary(&id, &body)
                .await
                .context("cannot start the canary")?;
            let abs = absolute_id(&id);
            if json {
                output::print_json(&r.body);
            } else {
                let version = output::str_field(&r.body, "version");
                println!("canary of {abs} started: {instances} instance(s) of version {version}");
            }
            if args.judge.judge == Some(judge::Judge::Lb) {
                return judge::judge_canary(api, &abs, &args.judge, args.wait.timeout, json).await;
            }
            if !args.wait.wait {
                return Ok(0);
            }
            let goal = if args.auto_promote_after.is_some() {
                CanaryGoal::Settled
            } else {
                CanaryGoal::Up
            };
            canary::wait_canary(api, &abs, goal, args.wait.timeout, json).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: AppCmd,
    }

    fn parse(args: &[&str]) -> Result<AppCmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("app").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn canary_takes_a_file_or_a_subcommand() {
        let Ok(AppCmd::Canary(c)) = parse(&["canary", "web", "v2.json", "--instances", "2"]) else {
            panic!("canary start");
        };
        assert!(c.action.is_none());
        assert_eq!((c.id.as_deref(), c.instances), (Some("web"), Some(2)));
        assert!(!c.wait.wait && c.wait.timeout == Duration::from_secs(600));
        let Ok(AppCmd::Canary(c)) = parse(&["canary", "promote", "web", "--wait"]) else {
            panic!("canary promote");
        };
        assert!(
            matches!(c.action, Some(CanaryAction::Promote { ref id, ref wait }) if id == "web" && wait.wait)
        );
        assert!(
            parse(&["canary", "web", "v2.json"]).is_err(),
            "--instances is required"
        );
        assert!(parse(&["canary", "status"]).is_err(), "the id is required");
    }

    #[test]
    fn wait_flags_parse_durations() {
        let Ok(AppCmd::Scale {
            instances, wait, ..
        }) = parse(&["scale", "web", "4", "--wait", "--timeout", "90s"])
        else {
            panic!("scale");
        };
        assert_eq!(instances, 4);
        assert!(wait.wait && wait.timeout == Duration::from_secs(90));
        assert!(parse(&["scale", "web", "4", "--timeout", "soon"]).is_err());
        assert!(parse(&["scale", "web", "-1"]).is_err());
    }

    #[test]
    fn add_takes_an_object_or_an_array_with_ids() {
        assert_eq!(apps_of(json!({"id":"/a","cmd":"x"})).expect("one").len(), 1);
        assert_eq!(
            apps_of(json!([{"id":"a"},{"id":"b"}])).expect("two").len(),
            2
        );
        assert!(apps_of(json!({"cmd":"x"})).is_err());
        assert!(apps_of(json!({"id":"/"})).is_err());
        assert!(apps_of(json!([])).is_err());
        assert!(apps_of(json!([1])).is_err());
        assert!(apps_of(json!("x")).is_err());
    }

    #[test]
    fn restoring_a_version_drops_version_and_status_fields() {
        let stored = json!({"id":"/web","cmd":"run","instances":3,"version":"v1",
            "versionInfo":{"lastScalingAt":"v1"},"tasksRunning":3,"labels":{"a":"b"}});
        assert_eq!(
            restore_body(stored),
            json!({"id":"/web","cmd":"run","instances":3,"labels":{"a":"b"}})
        );
    }

    #[test]
    fn canary_body_has_optional_auto_promotion() {
        let app = json!({"cmd":"v2"});
        assert_eq!(
            canary_body(app.clone(), 2, None),
            json!({"app":{"cmd":"v2"},"instances":2})
        );
        assert_eq!(
            canary_body(app, 1, Some(60)),
            json!({"app":{"cmd":"v2"},"instances":1,"autoPromoteAfterSeconds":60})
        );
    }
}
