//! `meseta app canary … --judge lb`: promote or roll back a canary on what the load balancer
//! measured. Once the canaries are up, the judge reads the balancer's `/status` every second
//! and compares the canary version's error rate (5xx answers and failed requests) with the
//! stable version's, counted from the moment judging began:
//!
//! ```text
//!  canary ≥ min requests and rate > stable rate + tolerance  → abort (roll back), exit 1
//!  window elapsed, canary ≥ min requests, rate within bounds → promote, exit 0
//!  otherwise                                                  → keep watching (timeout: exit 2)
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use meseta_api::client::Marathon;

use super::canary::{wait_canary, CanaryGoal};
use super::progress::{wait_deployment, EXIT_TIMEOUT};
use crate::{lb, output};

/// Who judges a canary.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// The load balancer's per-version error counts (`--lb URL`).
    Lb,
}

/// The judge's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct JudgeArgs {
    /// Promote or roll back automatically on the canary's measured error rate.
    #[arg(long, value_enum)]
    pub judge: Option<Judge>,
    /// The load balancer's admin URL the judge reads.
    #[arg(
        long = "lb",
        env = "MESETA_LB",
        default_value = "http://127.0.0.1:9090"
    )]
    pub lb: String,
    /// Watch this long (seconds) before promoting.
    #[arg(long, default_value_t = 30)]
    pub judge_window: u64,
    /// Canary requests needed before any verdict.
    #[arg(long, default_value_t = 20)]
    pub judge_min_requests: u64,
    /// How much higher (absolute, 0–1) the canary's error rate may be than the stable one's.
    #[arg(long, default_value_t = 0.05)]
    pub judge_tolerance: f64,
}

/// What the judge decides now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough seen yet.
    Wait,
    /// The canary does as well as the stable version.
    Promote,
    /// The canary fails more.
    Abort,
}

/// Requests and errors of one version since judging began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
}

impl Counts {
    fn rate(self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    fn since(self, base: Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(base.requests),
            errors: self.errors.saturating_sub(base.errors),
        }
    }
}

/// The verdict on `canary` versus `stable` after `elapsed` of judging.
pub fn verdict(canary: Counts, stable: Counts, elapsed: Duration, a: &JudgeArgs) -> Verdict {
    if canary.requests < a.judge_min_requests {
        return Verdict::Wait;
    }
    if canary.rate() > stable.rate() + a.judge_tolerance {
        return Verdict::Abort;
    }
    if elapsed >= Duration::from_secs(a.judge_window) {
        return Verdict::Promote;
    }
    Verdict::Wait
}

fn counts(status: &serde_json::Value, app: &str, version: &str) -> Counts {
    let (requests, errors) = lb::version_counts(status, app, version);
    Counts { requests, errors }
}

/// Waits for the canary of `app` to be up, judges it, and promotes or aborts it.
pub async fn judge_canary(
    api: &Marathon<'_>,
    app: &str,
    args: &JudgeArgs,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + timeout;
    let up = wait_canary(api, app, CanaryGoal::Up, timeout, json).await?;
    if up != 0 {
        return Ok(up);
    }
    let c = api
        .canary(app)
        .await?
        .with_context(|| format!("app {app} has no canary"))?;
    let canary_v = output::str_field(&c, "canaryVersion").to_string();
    let stable_v = output::str_field(&c, "stableVersion").to_string();
    let start = lb::fetch_status(&args.lb).await?;
    let (base_c, base_s) = (
        counts(&start, app, &canary_v),
        counts(&start, app, &stable_v),
    );
    let began = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = lb::fetch_status(&args.lb).await?;
        let cv = counts(&s, app, &canary_v).since(base_c);
        let sv = counts(&s, app, &stable_v).since(base_s);
        let line = format!(
            "canary {app}: {}/{} errors (stable {}/{})",
            cv.errors, cv.requests, sv.errors, sv.requests
        );
        match verdict(cv, sv, began.elapsed(), args) {
            Verdict::Abort => {
                println!("{line}: rolling back");
                api.abort_canary(app).await?;
                return Ok(1);
            }
            Verdict::Promote => {
                println!("{line}: promoting");
                let r = api.promote_canary(app).await?;
                return match r.deployment_id {
                    Some(d) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        wait_deployment(api, &d, left, json).await
                    }
                    None => Ok(0),
                };
            }
            Verdict::Wait => {
                if !json {
                    eprintln!("{line}");
                }
            }
        }
        if Instant::now() >= deadline {
            eprintln!("timed out judging the canary of {app}; left as it is");
            return Ok(EXIT_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> JudgeArgs {
        JudgeArgs {
            judge: Some(Judge::Lb),
            lb: String::new(),
            judge_window: 30,
            judge_min_requests: 20,
            judge_tolerance: 0.05,
        }
    }

    fn c(requests: u64, errors: u64) -> Counts {
        Counts { requests, errors }
    }

    #[test]
    fn the_judge_waits_for_traffic_then_aborts_a_failing_canary_at_once() {
        let a = args();
        let long = Duration::from_secs(100);
        assert_eq!(verdict(c(19, 19), c(100, 0), long, &a), Verdict::Wait);
        assert_eq!(
            verdict(c(20, 10), c(100, 0), Duration::ZERO, &a),
            Verdict::Abort
        );
        assert_eq!(verdict(c(100, 6), c(100, 0), long, &a), Verdict::Abort);
    }

    #[test]
    fn a_canary_as_good_as_stable_is_promoted_after_the_window() {
        let a = args();
        let short = Duration::from_secs(10);
        let long = Duration::from_secs(30);
        assert_eq!(verdict(c(50, 1), c(500, 0), short, &a), Verdict::Wait);
        assert_eq!(verdict(c(50, 1), c(500, 0), long, &a), Verdict::Promote);
        // Both versions failing alike is not the canary's fault.
        assert_eq!(verdict(c(50, 25), c(500, 250), long, &a), Verdict::Promote);
        assert_eq!(c(10, 3).since(c(4, 1)), c(6, 2));
    }
}
