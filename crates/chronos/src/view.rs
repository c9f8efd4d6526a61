//! Read-only JSON views of jobs shared by the Chronos and Metronome edges: run history entries,
//! `job/stat/{name}` and `stats/{percentile}`. Pure functions of a [`JobView`].

use jiff::Timestamp;
use meseta_jobs::planner::{RunOutcome, RunRecord};
use meseta_jobs::stats::Stats;
use serde_json::{json, Value};

use crate::JobView;

/// Chronos' `MM/dd/yy HH:mm:ss` (UTC), or `N/A`.
fn chronos_time(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%m/%d/%y %H:%M:%S").to_string())
        .unwrap_or_else(|| "N/A".to_string())
}

/// `1d2h3m4s`-style duration of whole seconds.
pub(crate) fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}

/// The lower-case name of an outcome.
pub(crate) fn outcome_name(o: &RunOutcome) -> &'static str {
    match o {
        RunOutcome::Pending => "pending",
        RunOutcome::Running => "running",
        RunOutcome::Succeeded => "success",
        RunOutcome::Failed => "failure",
        RunOutcome::Killed => "killed",
        RunOutcome::Skipped { .. } => "skipped",
    }
}

/// Duration of a finished run in milliseconds.
pub(crate) fn duration_ms(r: &RunRecord) -> Option<i64> {
    let (s, f) = (r.started_at?, r.finished_at?);
    Some(f.duration_since(s).as_millis() as i64)
}

/// One `taskStatHistory` entry (Chronos fields plus meseta's exact ones).
pub(crate) fn history_entry(job: &str, r: &RunRecord) -> Value {
    let mut v = json!({
        "taskId": r.task_id.clone().unwrap_or_else(|| r.run_id.0.clone()),
        "jobName": job,
        "slaveId": "",
        "startTime": chronos_time(r.started_at),
        "endTime": chronos_time(r.finished_at),
        "status": outcome_name(&r.outcome),
        "attempt": r.attempt,
        "scheduledFor": r.scheduled_for.to_string(),
        "startedAt": r.started_at.map(|t| t.to_string()),
        "finishedAt": r.finished_at.map(|t| t.to_string()),
        "exitCode": r.exit_code,
    });
    if let Some(ms) = duration_ms(r) {
        v["duration"] = json!(human_duration(ms));
        v["durationMs"] = json!(ms);
    }
    if let RunOutcome::Skipped { reason } = &r.outcome {
        v["reason"] = json!(reason);
    }
    v
}

fn histogram(s: Option<&Stats>) -> Value {
    let s = s.cloned().unwrap_or(Stats {
        count: 0,
        median: 0.0,
        p75: 0.0,
        p95: 0.0,
        p98: 0.0,
        p99: 0.0,
        mean: 0.0,
    });
    json!({
        "75thPercentile": s.p75, "95thPercentile": s.p95, "98thPercentile": s.p98,
        "99thPercentile": s.p99, "median": s.median, "mean": s.mean, "count": s.count,
    })
}

/// `GET /scheduler/job/stat/{name}`: the duration histogram (ms) and the run history, newest first.
pub(crate) fn job_stat(j: &JobView) -> Value {
    let history: Vec<Value> = j
        .state
        .history
        .iter()
        .rev()
        .map(|r| history_entry(&j.spec.name, r))
        .collect();
    json!({"histogram": histogram(j.stats.as_ref()), "taskStatHistory": history})
}

/// `GET /scheduler/stats/{percentile}`: `[{jobNameLabel, time (s)}]` for every job (0.0 for one
/// that never ran), slowest first; `None` for an unknown statistic name.
pub(crate) fn percentile_stats(jobs: &[JobView], which: &str) -> Option<Vec<Value>> {
    let pick: fn(&Stats) -> f64 = match which {
        "99thPercentile" => |s| s.p99,
        "98thPercentile" => |s| s.p98,
        "95thPercentile" => |s| s.p95,
        "75thPercentile" => |s| s.p75,
        "median" => |s| s.median,
        "mean" => |s| s.mean,
        _ => return None,
    };
    // Every job is listed, as Chronos does; one that never ran has time 0.
    let mut rows: Vec<(String, f64)> = jobs
        .iter()
        .map(|j| {
            let time = j.stats.as_ref().map_or(0.0, |s| pick(s) / 1000.0);
            (j.spec.name.clone(), time)
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(
        rows.into_iter()
            .map(|(n, t)| json!({"jobNameLabel": n, "time": t}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_chronos() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(4_500), "4s");
        assert_eq!(human_duration(3_723_000), "1h2m3s");
        assert_eq!(human_duration(90_061_000), "1d1h1m1s");
    }

    #[test]
    fn chronos_time_is_month_first_or_na() {
        let t: Timestamp = "2026-11-23T10:00:05Z".parse().expect("timestamp");
        assert_eq!(chronos_time(Some(t)), "11/23/26 10:00:05");
        assert_eq!(chronos_time(None), "N/A");
    }

    fn view(name: &str, stats: Option<Stats>) -> JobView {
        let j: meseta_api::chronos::ChronosJob = serde_json::from_value(json!({
            "name": name, "command": "true", "schedule": "R/2014-01-01T00:00:00Z/PT60M"
        }))
        .expect("chronos json");
        let spec = meseta_jobs::JobSpec::from_chronos(&j, Timestamp::now()).expect("valid");
        let state = meseta_jobs::JobState::default();
        JobView {
            chronos: spec.to_chronos(&state),
            spec,
            state,
            stats,
            queued: 0,
        }
    }

    #[test]
    fn stats_list_every_job_with_zero_for_those_that_never_ran() {
        let ran = Stats::from_samples(vec![2000.0, 4000.0]);
        let jobs = [
            view("fresh", Some(Stats::default())),
            view("ran", Some(ran)),
            view("unknown", None),
        ];
        for which in [
            "99thPercentile",
            "98thPercentile",
            "95thPercentile",
            "75thPercentile",
            "median",
            "mean",
        ] {
            let rows = percentile_stats(&jobs, which).expect("known statistic");
            assert_eq!(rows.len(), 3, "{which}: {rows:?}");
            assert_eq!(rows[0]["jobNameLabel"], "ran", "{which}: slowest first");
            assert_eq!(rows[1], json!({"jobNameLabel": "fresh", "time": 0.0}));
            assert_eq!(rows[2], json!({"jobNameLabel": "unknown", "time": 0.0}));
        }
    }

    #[test]
    fn a_job_that_never_ran_has_an_all_zero_histogram() {
        let v = job_stat(&view("fresh", Some(Stats::default())));
        assert_eq!(
            v,
            json!({"histogram": {"median": 0.0, "98thPercentile": 0.0, "75thPercentile": 0.0,
                    "95thPercentile": 0.0, "99thPercentile": 0.0, "count": 0, "mean": 0.0},
                   "taskStatHistory": []})
        );
    }

    #[test]
    fn unknown_statistic_is_none() {
        assert!(percentile_stats(&[], "p42").is_none());
        assert_eq!(percentile_stats(&[], "median"), Some(vec![]));
    }
}
