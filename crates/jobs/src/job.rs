//! The validated job definition ([`JobSpec`]) and its conversion from and to the Chronos job JSON.
//!
//! Used by the jobs runtime: HTTP input goes through [`JobSpec::from_chronos`], which collects
//! every problem as a [`FieldError`]; GET output comes from [`JobSpec::to_chronos`] together with
//! the planner's [`JobState`].

use jiff::{SignedDuration, Timestamp};
use meseta_api::chronos::{ChronosJob, EnvVar};
use serde::{Deserialize, Serialize};

use crate::planner::types::JobState;
use crate::schedule::{format_chronos_time, Schedule};

/// Default CPUs when the job asks for 0 (`--mesos_task_cpu`).
pub const DEFAULT_CPUS: f64 = 0.1;
/// Default memory (MiB) when the job asks for 0 (`--mesos_task_mem`).
pub const DEFAULT_MEM: f64 = 128.0;
/// Default disk (MiB) when the job asks for 0 (`--mesos_task_disk`).
pub const DEFAULT_DISK: f64 = 256.0;
/// Default epsilon: a run may start up to five minutes late.
pub const DEFAULT_EPSILON: SignedDuration = SignedDuration::from_secs(300);
/// The longest job name accepted, in bytes. The name is a store key and part of every task id
/// of its runs (`ct:<millis>:<attempt>:<name>:`), which must stay within the 255 bytes an agent
/// accepts.
pub const MAX_NAME_LEN: usize = 200;

/// The rules a submitted job is checked against beyond its own fields: which API generation's
/// name rule applies and whether the cluster lets tasks run as `root`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Chronos 2 names (the unprefixed `/scheduler` API): spaces and `#` are allowed besides
    /// letters, digits, `_`, `.` and `-` (Chronos 3, `/v1/scheduler`, refuses them).
    pub legacy_names: bool,
    /// Whether a job may ask to run as `root`.
    pub allow_root: bool,
}

/// One validation problem of a submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The JSON field at fault (`name`, `schedule`, `cpus`, …).
    pub field: String,
    /// What is wrong, naming the input.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A validated job (the stored form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique name (`^[\w.-]+$`).
    pub name: String,
    /// Command line (or executable when `shell` is false).
    pub command: String,
    /// Run through `/bin/sh -c`.
    pub shell: bool,
    /// argv when `shell` is false.
    pub arguments: Vec<String>,
    /// Time-based schedule; `None` for dependent jobs.
    pub schedule: Option<Schedule>,
    /// The schedule as submitted.
    pub schedule_text: Option<String>,
    /// Parents of a dependent job (empty for scheduled jobs).
    pub parents: Vec<String>,
    /// How late a run may start before it is skipped.
    pub epsilon: SignedDuration,
    /// Retries of a failed run.
    pub retries: u32,
    /// CPUs per run.
    pub cpus: f64,
    /// Memory (MiB) per run.
    pub mem: f64,
    /// Disk (MiB) per run.
    pub disk: f64,
    /// Not scheduled while true.
    pub disabled: bool,
    /// Allow overlapping runs.
    pub concurrent: bool,
    /// A final failure still fires the children.
    pub soft_error: bool,
    /// User the run executes as.
    pub user: Option<String>,
    /// Environment of the run.
    pub env: Vec<(String, String)>,
    /// Secret environment variables, by reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<meseta_api::chronos::EnvSecret>,
    /// Container definition (Chronos JSON).
    pub container: Option<serde_json::Value>,
    /// Owner e-mail addresses.
    pub owner: String,
    /// Free text.
    pub description: String,
    /// Seconds after which a run is killed (0 = never).
    pub max_completion_time: u64,
    /// Chronos `async`: the task only starts the work; the job succeeds (and its children run)
    /// when it reports success itself (`PUT /scheduler/job/success/{name}`).
    #[serde(default)]
    pub asynchronous: bool,
}

/// Why a job name is not acceptable under `rules` (None when it is).
pub fn name_problem(name: &str, rules: Rules) -> Option<String> {
    if name.is_empty() {
        return Some("the job's name is empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "the job's name is {} bytes long (at most {MAX_NAME_LEN})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("the job's name '{name}' is reserved"));
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '-')
            || (rules.legacy_names && matches!(c, ' ' | '#'))
    };
    if !name.chars().all(allowed) {
        let what = if rules.legacy_names {
            "letters, digits, spaces, _ . # -"
        } else {
            "letters, digits, _ . -"
        };
        return Some(format!(
            "the job's name '{name}' is invalid (allowed: {what})"
        ));
    }
    if name.trim() != name {
        return Some(format!(
            "the job's name '{name}' starts or ends with a space"
        ));
    }
    None
}

/// A resource amount: finite, non-negative and within what the fixed-point resource type holds
/// (0 means the default).
fn resource(errors: &mut Vec<FieldError>, field: &str, value: f64, default: f64) -> f64 {
    if !value.is_finite() || value < 0.0 {
        errors.push(FieldError::new(
            field,
            format!("{field} must be a finite non-negative number, got {value}"),
        ));
        default
    } else if let Err(e) = meseta_types::Scalar::from_f64(value) {
        errors.push(FieldError::new(field, format!("{field} {value}: {e}")));
        default
    } else if value == 0.0 {
        default
    } else {
        value
    }
}

fn parse_epsilon(errors: &mut Vec<FieldError>, text: Option<&str>) -> SignedDuration {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return DEFAULT_EPSILON;
    };
    match text.parse::<SignedDuration>() {
        Ok(d) if !d.is_negative() => d,
        Ok(_) => {
            errors.push(FieldError::new(
                "epsilon",
                format!("epsilon '{text}' is negative"),
            ));
            DEFAULT_EPSILON
        }
        Err(e) => {
            errors.push(FieldError::new(
                "epsilon",
                format!("cannot parse epsilon '{text}' as an ISO 8601 duration: {e}"),
            ));
            DEFAULT_EPSILON
        }
    }
}

/// Validates the schedule/parents pair; returns (schedule, schedule text, parents).
fn schedule_or_parents(
    errors: &mut Vec<FieldError>,
    j: &ChronosJob,
    now: Timestamp,
    rules: Rules,
) -> (Option<Schedule>, Option<String>, Vec<String>) {
    if j.schedule.as_deref().is_some_and(|s| s.trim().is_empty()) {
        errors.push(FieldError::new(
            "schedule",
            "the schedule is empty (leave it out to run the job once now)",
        ));
    }
    let text = j
        .schedule
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let parents = j.parents.clone().unwrap_or_default();
    if text.is_some() && !parents.is_empty() {
        errors.push(FieldError::new(
            "schedule",
            "a job has either a schedule or parents, not both",
        ));
    }
    for p in &parents {
        if name_problem(p, rules).is_some() {
            errors.push(FieldError::new(
                "parents",
                format!("parent name '{p}' is invalid"),
            ));
        }
    }
    if text.is_none() && !parents.is_empty() {
        return (None, None, parents);
    }
    if text.is_none() && j.parents.is_some() {
        errors.push(FieldError::new(
            "parents",
            "a dependent job needs at least one parent",
        ));
        return (None, None, parents);
    }
    // Chronos 3: no schedule and no parents means "run once, now".
    let text = text.unwrap_or("R1//PT24H").to_string();
    let tz = j.schedule_time_zone.as_deref();
    // A schedule in the past with no repetitions left is accepted, as Chronos does: the job
    // never runs (the planner disables it) but is listed, searchable and in the graph.
    match Schedule::parse(&text, tz, now) {
        Ok(s) => (Some(s), Some(text), Vec::new()),
        Err(e) => {
            let field = match e {
                crate::schedule::ScheduleError::TimeZone(_) => "scheduleTimeZone",
                _ => "schedule",
            };
            errors.push(FieldError::new(field, e.to_string()));
            (None, Some(text), Vec::new())
        }
    }
}

/// True for a user name that means the superuser (`root` or uid `0`).
pub fn is_root(user: &str) -> bool {
    matches!(user.trim(), "root" | "0")
}

impl JobSpec {
    /// Validates a submitted Chronos job under the default [`Rules`] (Chronos 3 names, no
    /// `root`); returns every problem found.
    pub fn from_chronos(j: &ChronosJob, now: Timestamp) -> Result<JobSpec, Vec<FieldError>> {
        JobSpec::from_chronos_with(j, now, Rules::default())
    }

    /// Validates a submitted Chronos job under `rules`; returns every problem found.
    pub fn from_chronos_with(
        j: &ChronosJob,
        now: Timestamp,
        rules: Rules,
    ) -> Result<JobSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(problem) = name_problem(&j.name, rules) {
            errors.push(FieldError::new("name", problem));
        }
        if j.command.trim().is_empty() && j.container.as_ref().is_none_or(|c| c.is_null()) {
            errors.push(FieldError::new(
                "command",
                "a job needs a command (only a container job may leave it out)",
            ));
        }
        let user = j.run_as_user.clone().filter(|u| !u.trim().is_empty());
        if let Some(u) = user.as_deref().filter(|u| is_root(u)) {
            if !rules.allow_root {
                errors.push(FieldError::new(
                    "runAsUser",
                    format!(
                        "runAsUser '{u}': running jobs as root is not allowed on this cluster \
                         (start the master with --allow-root to permit it)"
                    ),
                ));
            }
        }
        let epsilon = parse_epsilon(&mut errors, j.epsilon.as_deref());
        let (schedule, schedule_text, parents) = schedule_or_parents(&mut errors, j, now, rules);
        let cpus = resource(&mut errors, "cpus", j.cpus, DEFAULT_CPUS);
        let mem = resource(&mut errors, "mem", j.mem, DEFAULT_MEM);
        let disk = resource(&mut errors, "disk", j.disk, DEFAULT_DISK);
        for (i, e) in j.environment_variables.iter().enumerate() {
            if e.name.is_empty() {
                errors.push(FieldError::new(
                    "environmentVariables",
                    format!("environment variable #{i} has an empty name"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(JobSpec {
            name: j.name.clone(),
            command: j.command.clone(),
            shell: j.shell,
            arguments: j.arguments.clone(),
            schedule,
            schedule_text,
            parents,
            epsilon,
            retries: j.retries,
            cpus,
            mem,
            disk,
            disabled: j.disabled,
            concurrent: j.concurrent,
            soft_error: j.soft_error,
            user,
            env: j
                .environment_variables
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            secret_env: j.secret_environment_variables.clone(),
            container: j.container.clone().filter(|c| !c.is_null()),
            owner: j.owner.clone(),
            description: j.description.clone(),
            max_completion_time: j.max_completion_time,
            asynchronous: j.r#async,
        })
    }

    /// The Chronos JSON of this job with its counters and next run (what GET shows).
    pub fn to_chronos(&self, state: &JobState) -> ChronosJob {
        let time = |t: Option<Timestamp>| {
            t.map(|t| format_chronos_time(t, &jiff::tz::TimeZone::UTC))
                .unwrap_or_default()
        };
        let (schedule, tz) = match &self.schedule {
            Some(s) => (
                Some(s.to_chronos_string(state.next_due, state.runs_started)),
                Some(s.tz_name().to_string()),
            ),
            None => (None, None),
        };
        ChronosJob {
            name: self.name.clone(),
            command: self.command.clone(),
            shell: self.shell,
            arguments: self.arguments.clone(),
            schedule,
            schedule_time_zone: tz,
            parents: self.schedule.is_none().then(|| self.parents.clone()),
            epsilon: Some(self.epsilon.to_string()),
            r#async: self.asynchronous,
            retries: self.retries,
            owner: self.owner.clone(),
            owner_name: String::new(),
            description: self.description.clone(),
            cpus: self.cpus,
            mem: self.mem,
            disk: self.disk,
            disabled: self.disabled,
            soft_error: self.soft_error,
            concurrent: self.concurrent,
            max_completion_time: self.max_completion_time,
            high_priority: false,
            run_as_user: self.user.clone(),
            environment_variables: self
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            secret_environment_variables: self.secret_env.clone(),
            uris: Vec::new(),
            fetch: Vec::new(),
            constraints: Vec::new(),
            container: self.container.clone(),
            success_count: state.success_count,
            error_count: state.error_count,
            errors_since_last_success: state.errors_since_last_success,
            last_success: time(state.last_success),
            last_error: time(state.last_error),
        }
    }

    /// True for a job triggered by its parents rather than by time.
    pub fn is_dependent(&self) -> bool {
        self.schedule.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    fn job(name: &str, schedule: Option<&str>, parents: Option<&[&str]>) -> ChronosJob {
        ChronosJob {
            name: name.into(),
            command: "true".into(),
            schedule: schedule.map(Into::into),
            parents: parents.map(|p| p.iter().map(|s| s.to_string()).collect()),
            ..ChronosJob::default()
        }
    }

    fn fields(errs: Vec<FieldError>) -> Vec<String> {
        errs.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_applied() {
        let s = JobSpec::from_chronos(
            &job("a.b-c_1", Some("R/2026-01-02T00:00:00Z/PT1H"), None),
            now(),
        )
        .expect("valid");
        assert_eq!((s.cpus, s.mem, s.disk), (0.1, 128.0, 256.0));
        assert_eq!(s.epsilon, SignedDuration::from_mins(5));
        assert_eq!(s.retries, 2);
        assert!(s.parents.is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut j = job("bad name!", Some("R/garbage/PT1S"), None);
        j.cpus = -1.0;
        j.mem = f64::NAN;
        j.epsilon = Some("5 minutes please".into());
        let errs = JobSpec::from_chronos(&j, now()).expect_err("invalid");
        assert_eq!(fields(errs), ["name", "epsilon", "schedule", "cpus", "mem"]);
    }

    #[test]
    fn both_schedule_and_parents_is_rejected() {
        let j = job("a", Some("R/2026-01-02T00:00:00Z/PT1H"), Some(&["b"]));
        assert_eq!(
            fields(JobSpec::from_chronos(&j, now()).expect_err("x")),
            ["schedule"]
        );
    }

    #[test]
    fn exhausted_past_schedule_is_accepted_like_chronos() {
        for text in [
            "R2/2020-01-01T00:00:00Z/PT1H",
            "R0/2014-01-01T00:00:00Z/PT60M",
        ] {
            let j = job("a", Some(text), None);
            let spec = JobSpec::from_chronos(&j, now()).expect("accepted");
            let sched = spec.schedule.expect("schedule");
            assert_eq!(sched.next_at_or_after(now()), None, "{text} never runs");
        }
        // An infinite schedule in the past is fine too; a start before 1970 is not.
        let j = job("a", Some("R/2020-01-01T00:00:00Z/PT1H"), None);
        assert!(JobSpec::from_chronos(&j, now()).is_ok());
        let j = job("a", Some("R0/1969-01-01T00:00:00Z/PT1H"), None);
        assert_eq!(
            fields(JobSpec::from_chronos(&j, now()).expect_err("x")),
            ["schedule"]
        );
    }

    #[test]
    fn reserved_empty_and_long_names_are_refused() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for name in [".", "..", "", " ", long.as_str(), "a/b", "a\nb"] {
            let j = job(name, Some("R/2026-01-02T00:00:00Z/PT1H"), None);
            let errs = JobSpec::from_chronos(&j, now()).expect_err(name);
            assert_eq!(fields(errs), ["name"], "{name:?}");
        }
        let ok = "a".repeat(MAX_NAME_LEN);
        assert!(JobSpec::from_chronos(&job(&ok, Some("R//PT1H"), None), now()).is_ok());
    }

    #[test]
    fn spaces_in_names_only_under_the_chronos_2_rules() {
        let j = job(
            "job with spaces",
            Some("R/2014-01-01T00:00:00Z/PT60M"),
            None,
        );
        let errs = JobSpec::from_chronos(&j, now()).expect_err("chronos 3 refuses");
        assert_eq!(fields(errs), ["name"]);
        let legacy = Rules {
            legacy_names: true,
            ..Rules::default()
        };
        let spec = JobSpec::from_chronos_with(&j, now(), legacy).expect("chronos 2 accepts");
        assert_eq!(spec.name, "job with spaces");
        // Still not a leading/trailing space, a slash or a control character.
        for bad in [" a", "a ", "a/b", "a\tb"] {
            let j = job(bad, Some("R//PT1H"), None);
            assert!(
                JobSpec::from_chronos_with(&j, now(), legacy).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_job_needs_a_command_unless_it_has_a_container() {
        let mut j = job("a", Some("R//PT1H"), None);
        j.command = "  ".into();
        assert_eq!(
            fields(JobSpec::from_chronos(&j, now()).expect_err("x")),
            ["command"]
        );
        j.container = Some(serde_json::json!({"type": "DOCKER", "image": "busybox"}));
        assert!(JobSpec::from_chronos(&j, now()).is_ok());
    }

    #[test]
    fn an_empty_schedule_is_refused() {
        for text in ["", "   "] {
            let j = job("a", Some(text), None);
            assert_eq!(
                fields(JobSpec::from_chronos(&j, now()).expect_err("x")),
                ["schedule"],
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_period_below_the_resolution_is_refused_naming_schedule() {
        for text in [
            "R//PT0.000001S",
            "R/2026-01-02T00:00:00Z/PT0.5S",
            "R5//PT0.999S",
        ] {
            let errs = JobSpec::from_chronos(&job("a", Some(text), None), now()).expect_err(text);
            assert_eq!(errs[0].field, "schedule", "{text}");
            assert!(errs[0].message.contains("resolution"), "{errs:?}");
        }
        assert!(JobSpec::from_chronos(&job("a", Some("R//PT1S"), None), now()).is_ok());
    }

    #[test]
    fn resources_beyond_the_fixed_point_range_are_refused() {
        for (field, v) in [("cpus", 1e16), ("mem", 1e308), ("disk", 9.3e15)] {
            let mut j = job("a", Some("R//PT1H"), None);
            match field {
                "cpus" => j.cpus = v,
                "mem" => j.mem = v,
                _ => j.disk = v,
            }
            let errs = JobSpec::from_chronos(&j, now()).expect_err(field);
            assert_eq!(fields(errs), [field], "{field}={v}");
        }
        let mut j = job("a", Some("R//PT1H"), None);
        j.mem = 1e6;
        assert_eq!(JobSpec::from_chronos(&j, now()).expect("ok").mem, 1e6);
    }

    #[test]
    fn root_is_refused_unless_allowed_and_no_user_stays_none() {
        let mut j = job("a", Some("R//PT1H"), None);
        assert_eq!(JobSpec::from_chronos(&j, now()).expect("ok").user, None);
        for root in ["root", " root ", "0"] {
            j.run_as_user = Some(root.into());
            let errs = JobSpec::from_chronos(&j, now()).expect_err(root);
            assert_eq!(errs[0].field, "runAsUser");
            assert!(errs[0].message.contains("root"), "{errs:?}");
        }
        let allow = Rules {
            allow_root: true,
            ..Rules::default()
        };
        j.run_as_user = Some("root".into());
        let spec = JobSpec::from_chronos_with(&j, now(), allow).expect("allowed");
        assert_eq!(spec.user.as_deref(), Some("root"));
        j.run_as_user = Some("nobody".into());
        assert!(JobSpec::from_chronos(&j, now()).is_ok());
    }

    #[test]
    fn neither_schedule_nor_parents_runs_once_now() {
        let s = JobSpec::from_chronos(&job("a", None, None), now()).expect("valid");
        let sched = s.schedule.expect("schedule");
        assert_eq!(sched.next_at_or_after(now()), Some(now()));
        assert_eq!(sched.next_after(now()), None);
    }

    #[test]
    fn empty_parents_list_is_rejected() {
        let j = job("a", None, Some(&[]));
        assert_eq!(
            fields(JobSpec::from_chronos(&j, now()).expect_err("x")),
            ["parents"]
        );
    }

    #[test]
    fn bad_time_zone_names_its_field() {
        let mut j = job("a", Some("0 * * * *"), None);
        j.schedule_time_zone = Some("Mars/Olympus".into());
        let errs = JobSpec::from_chronos(&j, now()).expect_err("x");
        assert_eq!(errs[0].field, "scheduleTimeZone");
        assert!(errs[0].message.contains("Mars/Olympus"));
    }

    #[test]
    fn to_chronos_shows_next_run_and_counters() {
        let spec =
            JobSpec::from_chronos(&job("a", Some("R5/2026-01-01T00:00:00Z/PT1H"), None), now())
                .expect("valid");
        let state = JobState {
            next_due: Some("2026-01-01T02:00:00Z".parse().expect("ts")),
            success_count: 2,
            last_success: Some(now()),
            ..JobState::default()
        };
        let c = spec.to_chronos(&state);
        assert_eq!(
            c.schedule.as_deref(),
            Some("R3/2026-01-01T02:00:00.000Z/PT1H")
        );
        assert_eq!(c.success_count, 2);
        assert_eq!(c.last_success, "2026-01-01T00:00:00.000Z");
        assert_eq!(c.last_error, "");
        assert_eq!(c.parents, None);
        assert_eq!(c.epsilon.as_deref(), Some("PT5M"));
        // Round trip: the output is valid input again.
        assert!(JobSpec::from_chronos(&c, now()).is_ok());
    }
}
