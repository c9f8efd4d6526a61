//! Validation of `meseta execute` arguments and the "can any agent ever fit this" check, both
//! done before anything is sent to the master.

use anyhow::{anyhow, bail, Context};
use meseta_api::scheduler::EnvVariable;
use meseta_types::{Ranges, Resource, Resources, Scalar, Set, Value as RValue};
use serde_json::Value;
use std::time::Duration;

/// `meseta execute` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecuteArgs {
    /// Task name (the task id is `<name>.<random>`).
    #[arg(long)]
    pub name: String,
    /// Shell command to run.
    #[arg(long)]
    pub command: String,
    /// Resources, e.g. "cpus:0.5;mem:128".
    #[arg(long)]
    pub resources: String,
    /// User to run the command as (default: the framework's user, i.e. you).
    #[arg(long)]
    pub user: Option<String>,
    /// Environment variable K=V (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Kill the task this many seconds after it started running.
    #[arg(long, value_name = "SECS")]
    pub kill_after: Option<f64>,
    /// Run the command in a Docker container of this image (`sh -c COMMAND` inside it, host
    /// network); only agents with a Docker engine take it.
    #[arg(long, value_name = "IMAGE")]
    pub docker_image: Option<String>,
}

/// Validated `execute` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Task name.
    pub name: String,
    /// Task id, `<name>.<8 hex>`.
    pub task_id: String,
    /// Shell command.
    pub command: String,
    /// Task resources.
    pub resources: Resources,
    /// `--user`, if given.
    pub user: Option<String>,
    /// Environment variables.
    pub env: Vec<EnvVariable>,
    /// Kill delay after TASK_RUNNING.
    pub kill_after: Option<Duration>,
    /// `--docker-image`, if given.
    pub docker_image: Option<String>,
}

/// Validates `args` (nothing is sent to the master).
pub fn plan(args: &ExecuteArgs) -> anyhow::Result<Plan> {
    if args.name.trim().is_empty() || args.name.contains('/') {
        bail!(
            "invalid task name {:?}: must be non-empty without '/'",
            args.name
        );
    }
    if args.command.trim().is_empty() {
        bail!("the command must not be empty");
    }
    let resources = Resources::parse(&args.resources)
        .with_context(|| format!("invalid --resources {:?}", args.resources))?;
    if resources.is_empty() {
        bail!("invalid --resources {:?}: no resources", args.resources);
    }
    let env = args
        .env
        .iter()
        .map(|e| parse_env(e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kill_after = match args.kill_after {
        Some(s) if !s.is_finite() || s < 0.0 => bail!("invalid --kill-after {s}: not a duration"),
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    if let Some(image) = &args.docker_image {
        meseta_api::container::validate_image(image)
            .map_err(|why| anyhow!("invalid --docker-image {image:?}: {why}"))?;
    }
    let short = uuid::Uuid::new_v4().simple().to_string();
    Ok(Plan {
        task_id: format!("{}.{}", args.name, &short[..8]),
        name: args.name.clone(),
        command: args.command.clone(),
        resources,
        user: args.user.clone(),
        env,
        kill_after,
        docker_image: args.docker_image.clone(),
    })
}

/// Parses one `--env K=V`.
pub fn parse_env(s: &str) -> anyhow::Result<EnvVariable> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => Ok(EnvVariable {
            name: k.to_string(),
            value: v.to_string(),
        }),
        _ => Err(anyhow!("invalid --env {s:?}: expected NAME=VALUE")),
    }
}

/// An agent's total resources from its v0 summary (`{"cpus":4.0,"ports":"[31000-32000]",..}`).
pub fn summary_resources(summary: &Value) -> Resources {
    let mut out = Resources::new();
    for (name, v) in summary.as_object().into_iter().flatten() {
        let value = match v {
            Value::Number(n) => n
                .as_f64()
                .and_then(|f| Scalar::from_f64(f).ok())
                .map(RValue::Scalar),
            Value::String(s) if s.starts_with('[') => Ranges::parse(s).ok().map(RValue::Ranges),
            Value::String(s) if s.starts_with('{') => {
                let items = s.trim_matches(|c| c == '{' || c == '}').split(',');
                let items = items.map(str::trim).filter(|i| !i.is_empty());
                Some(RValue::Set(Set::new(items)))
            }
            _ => None,
        };
        if let Some(value) = value {
            // Kinds are consistent within one summary; a mismatch only drops the entry.
            let _ = out.push(Resource::new(name.as_str(), "*", value));
        }
    }
    out
}

/// Errors unless some agent in `/master/slaves` has a total that can ever hold `want`.
pub fn check_fit(slaves: &Value, want: &Resources) -> anyhow::Result<()> {
    let want_any_role = want.with_role("*");
    let totals: Vec<Resources> = slaves
        .get("slaves")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| summary_resources(s.get("resources").unwrap_or(&Value::Null)))
        .collect();
    if totals.iter().any(|t| t.contains(&want_any_role)) {
        return Ok(());
    }
    let largest = totals
        .iter()
        .max_by(|a, b| {
            a.cpus()
                .total_cmp(&b.cpus())
                .then(a.mem().total_cmp(&b.mem()))
        })
        .map_or_else(|| "no agent registered".to_string(), ToString::to_string);
    bail!("no agent can ever fit {want} (largest: {largest})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(resources: &str) -> ExecuteArgs {
        ExecuteArgs {
            name: "web".into(),
            command: "echo hi".into(),
            resources: resources.into(),
            user: None,
            env: vec!["A=b=c".into()],
            kill_after: None,
            docker_image: None,
        }
    }

    #[test]
    fn docker_image_is_checked() {
        let mut a = args("cpus:0.5;mem:64");
        a.docker_image = Some("meseta-test/busybox:latest".into());
        let p = plan(&a).expect("valid image");
        assert_eq!(
            p.docker_image.as_deref(),
            Some("meseta-test/busybox:latest")
        );
        a.docker_image = Some("Not An Image".into());
        let e = plan(&a).expect_err("invalid image").to_string();
        assert!(e.contains("--docker-image"), "{e}");
    }

    #[test]
    fn plan_validates_arguments() {
        let p = plan(&args("cpus:0.5;mem:64")).expect("valid");
        assert!(p.task_id.starts_with("web.") && p.task_id.len() == "web.".len() + 8);
        assert_eq!(
            p.env,
            vec![EnvVariable {
                name: "A".into(),
                value: "b=c".into()
            }]
        );
        assert!(plan(&args("cpus:abc")).is_err());
        assert!(plan(&args("cpus:-1")).is_err());
        assert!(plan(&args("")).is_err());
        let mut a = args("cpus:1");
        a.env = vec!["NOEQUALS".into()];
        assert!(plan(&a).is_err());
        let mut a = args("cpus:1");
        a.kill_after = Some(-1.0);
        assert!(plan(&a).is_err());
    }

    #[test]
    fn fit_check_uses_agent_totals() {
        let slaves = json!({"slaves":[
            {"resources":{"cpus":2.0,"mem":1024.0,"gpus":0.0,"disk":0.0,"ports":"[31000-32000]"}},
            {"resources":{"cpus":8.0,"mem":512.0,"gpus":0.0,"disk":0.0}}]});
        let r = |s| Resources::parse(s).expect("valid");
        assert!(check_fit(&slaves, &r("cpus:2;mem:1000;ports:[31000-31005]")).is_ok());
        assert!(check_fit(&slaves, &r("cpus(web):8")).is_ok());
        let err = check_fit(&slaves, &r("cpus:8;mem:1024"))
            .expect_err("too big")
            .to_string();
        assert!(
            err.contains("no agent can ever fit") && err.contains("largest: cpus:8"),
            "{err}"
        );
        let err = check_fit(&json!({"slaves":[]}), &r("cpus:1"))
            .expect_err("none")
            .to_string();
        assert!(err.contains("no agent registered"), "{err}");
    }
}
