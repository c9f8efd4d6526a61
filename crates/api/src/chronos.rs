//! The Chronos job JSON (reference §7.2), both as accepted on input and as written on output.
//!
//! Used by the jobs runtime (`/scheduler/*` and `/v1/scheduler/*` endpoints), the CLI and
//! `meseta-jobs` (`JobSpec::from_chronos` / `JobSpec::to_chronos`). Input accepts missing
//! fields (with the Chronos defaults), `null` for any list or text field, and ignores unknown
//! fields; output carries every field, except `schedule`/`scheduleTimeZone` for dependent jobs and
//! `parents` for scheduled ones (chronos-python picks the endpoint by the presence of `parents`).

use serde::{Deserialize, Deserializer, Serialize};

/// One environment variable of a job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvVar {
    /// Variable name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Variable value.
    #[serde(deserialize_with = "nullable")]
    pub value: String,
}

/// An environment variable whose value is a secret (Metronome's `run.env: {"X": {"secret":
/// name}}` with `run.secrets: {name: {"source": path}}`); Chronos 3.0 has no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvSecret {
    /// Variable name.
    pub name: String,
    /// The secret's name in the job's `run.secrets`.
    pub secret: String,
    /// The secret's path in the master's store.
    pub source: String,
}

/// A Chronos job as sent to `POST /scheduler/iso8601` / `/scheduler/dependency` and returned by
/// `GET /scheduler/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChronosJob {
    /// Job name, the primary key (`^[\w.-]+$`).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// The command (run with `/bin/sh -c` when `shell`).
    #[serde(deserialize_with = "nullable")]
    pub command: String,
    /// Run `command` through the shell (default true).
    #[serde(deserialize_with = "nullable_true")]
    pub shell: bool,
    /// Arguments when `shell` is false.
    #[serde(deserialize_with = "nullable")]
    pub arguments: Vec<String>,
    /// ISO 8601 repeating interval `R[n]/<start>/<period>` (or a cron expression in meseta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA zone the schedule's wall-clock fields are read in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_time_zone: Option<String>,
    /// Parent jobs of a dependent job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<String>>,
    /// ISO 8601 duration a run may start late before it is skipped (default `PT5M`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<String>,
    /// Chronos 2 `async`: the job reports its own success (`PUT job/success/{name}`); only then
    /// do its children run.
    #[serde(deserialize_with = "nullable")]
    pub r#async: bool,
    /// How many times a failed run is retried (default 2).
    #[serde(deserialize_with = "nullable_two")]
    pub retries: u32,
    /// Comma-separated e-mail addresses of the owners.
    #[serde(deserialize_with = "nullable")]
    pub owner: String,
    /// Owner's display name.
    #[serde(deserialize_with = "nullable")]
    pub owner_name: String,
    /// Free text.
    #[serde(deserialize_with = "nullable")]
    pub description: String,
    /// CPUs per run (0 = default 0.1).
    #[serde(deserialize_with = "nullable")]
    pub cpus: f64,
    /// Memory in MiB per run (0 = default 128).
    #[serde(deserialize_with = "nullable")]
    pub mem: f64,
    /// Disk in MiB per run (0 = default 256).
    #[serde(deserialize_with = "nullable")]
    pub disk: f64,
    /// A disabled job is not scheduled.
    #[serde(deserialize_with = "nullable")]
    pub disabled: bool,
    /// A final failure still fires the children.
    #[serde(deserialize_with = "nullable")]
    pub soft_error: bool,
    /// Allow overlapping runs.
    #[serde(deserialize_with = "nullable")]
    pub concurrent: bool,
    /// Seconds after which a run is killed (0 = never).
    #[serde(deserialize_with = "nullable")]
    pub max_completion_time: u64,
    /// Chronos priority-queue flag (kept, not acted upon).
    #[serde(deserialize_with = "nullable")]
    pub high_priority: bool,
    /// User the run executes as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<String>,
    /// Environment of the run.
    #[serde(deserialize_with = "nullable")]
    pub environment_variables: Vec<EnvVar>,
    /// Secret environment variables of a Metronome job (references, never values). Not part of
    /// Chronos' JSON: the Chronos API neither shows nor accepts them (its ACL check and the
    /// existence check of a secret run on Metronome's `run.secrets`).
    #[serde(skip)]
    pub secret_environment_variables: Vec<EnvSecret>,
    /// URIs to fetch (deprecated form of `fetch`).
    #[serde(deserialize_with = "nullable")]
    pub uris: Vec<String>,
    /// Fetch entries `{uri, executable, cache, extract, output_file}`.
    #[serde(deserialize_with = "nullable")]
    pub fetch: Vec<serde_json::Value>,
    /// Placement constraints `[attr, op, value]`.
    #[serde(deserialize_with = "nullable")]
    pub constraints: Vec<Vec<String>>,
    /// Container definition (kept as JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<serde_json::Value>,
    /// Output only: successful runs.
    #[serde(deserialize_with = "nullable")]
    pub success_count: u64,
    /// Output only: failed runs.
    #[serde(deserialize_with = "nullable")]
    pub error_count: u64,
    /// Output only: failed runs since the last success.
    #[serde(deserialize_with = "nullable")]
    pub errors_since_last_success: u64,
    /// Output only: time of the last success, `""` when never.
    #[serde(deserialize_with = "nullable")]
    pub last_success: String,
    /// Output only: time of the last error, `""` when never.
    #[serde(deserialize_with = "nullable")]
    pub last_error: String,
}

impl Default for ChronosJob {
    fn default() -> Self {
        ChronosJob {
            name: String::new(),
            command: String::new(),
            shell: true,
            arguments: Vec::new(),
            schedule: None,
            schedule_time_zone: None,
            parents: None,
            epsilon: None,
            r#async: false,
            retries: 2,
            owner: String::new(),
            owner_name: String::new(),
            description: String::new(),
            cpus: 0.0,
            mem: 0.0,
            disk: 0.0,
            disabled: false,
            soft_error: false,
            concurrent: false,
            max_completion_time: 0,
            high_priority: false,
            run_as_user: None,
            environment_variables: Vec::new(),
            secret_environment_variables: Vec::new(),
            uris: Vec::new(),
            fetch: Vec::new(),
            constraints: Vec::new(),
            container: None,
            success_count: 0,
            error_count: 0,
            errors_since_last_success: 0,
            last_success: String::new(),
            last_error: String::new(),
        }
    }
}

/// Reads `null` as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads `null` as `true` (the `shell` default).
fn nullable_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// Reads `null` as 2 (the `retries` default).
fn nullable_two<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.unwrap_or(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_get_chronos_defaults() {
        let j: ChronosJob = serde_json::from_str(
            r#"{"name":"a","command":"true","schedule":"R/2030-01-01T00:00:00Z/PT1S"}"#,
        )
        .expect("parse");
        assert!(j.shell);
        assert_eq!(j.retries, 2);
        assert_eq!(j.cpus, 0.0);
        assert!(j.parents.is_none());
        assert_eq!(j.last_success, "");
    }

    #[test]
    fn unknown_fields_and_nulls_are_accepted() {
        let j: ChronosJob = serde_json::from_str(
            r#"{"name":"a","command":null,"shell":null,"retries":null,"arguments":null,
                "executor":"","taskInfoData":"x","dataProcessingJobType":false,
                "parents":["b"],"async":true,"environmentVariables":[{"name":"K","value":"v"}]}"#,
        )
        .expect("parse");
        assert_eq!(j.command, "");
        assert!(j.shell);
        assert_eq!(j.retries, 2);
        assert!(j.r#async);
        assert_eq!(j.parents, Some(vec!["b".to_string()]));
        assert_eq!(j.environment_variables[0].value, "v");
    }

    #[test]
    fn output_is_camel_case_and_omits_the_other_kind() {
        let j = ChronosJob {
            name: "a".into(),
            schedule: Some("R/2030-01-01T00:00:00.000Z/PT1S".into()),
            ..ChronosJob::default()
        };
        let v = serde_json::to_value(&j).expect("serialize");
        assert_eq!(v["lastSuccess"], "");
        assert_eq!(v["errorsSinceLastSuccess"], 0);
        assert_eq!(v["async"], false);
        assert_eq!(v["softError"], false);
        assert!(v.get("parents").is_none());
        assert!(v.get("schedule").is_some());
        let back: ChronosJob = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, j);
    }
}
