//! What the jobs runtime persists: one record per job (spec + schedule state + history) under
//! `/meseta/jobs/<name>`, and the framework id it subscribes with under [`FRAMEWORK_ID`]
//! (written by the kit, so a restarted master re-subscribes the same framework).

use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::JobState;
use meseta_store::{Op, Store, StoreError};
use serde::{Deserialize, Serialize};

const JOBS: &str = "/meseta/jobs/";
/// Where the framework id is kept (a JSON string).
pub(crate) const FRAMEWORK_ID: &str = "/meseta/jobs-scheduler/framework_id";

/// One job as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredJob {
    pub spec: JobSpec,
    pub state: JobState,
}

/// Every stored job. A record that no longer parses is skipped with a warning.
pub(crate) async fn load(store: &dyn Store) -> Result<Vec<(JobSpec, JobState)>, StoreError> {
    let mut out = Vec::new();
    for kv in store.list(JOBS).await? {
        match serde_json::from_slice::<StoredJob>(&kv.value) {
            Ok(r) => out.push((r.spec, r.state)),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping unreadable job record"),
        }
    }
    Ok(out)
}

/// Write and delete jobs in one transaction (one commit, whatever the number of jobs).
pub(crate) async fn save_all(
    store: &dyn Store,
    save: &[(&JobSpec, &JobState)],
    forget: &[String],
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        spec: &'a JobSpec,
        state: &'a JobState,
    }
    let mut ops = Vec::with_capacity(save.len() + forget.len());
    for name in forget {
        ops.push(Op::Delete { key: key(name) });
    }
    for (spec, state) in save {
        let value = serde_json::to_vec(&Borrowed { spec, state })
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        ops.push(Op::Put {
            key: key(&spec.name),
            value,
            lease: None,
        });
    }
    if ops.is_empty() {
        return Ok(());
    }
    store.txn(vec![], ops, vec![]).await.map(|_| ())
}

fn key(name: &str) -> String {
    format!("{JOBS}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_are_under_the_jobs_prefix_and_framework_id_is_not() {
        assert_eq!(key("etl.daily"), "/meseta/jobs/etl.daily");
        assert!(!FRAMEWORK_ID.starts_with(JOBS));
    }

    #[tokio::test]
    async fn framework_id_round_trips() {
        // The kit keeps the id as a JSON string under the scheduler's key.
        let s = meseta_store::mem::MemStore::new();
        let read = || meseta_store::get_json::<String>(&s, FRAMEWORK_ID);
        assert_eq!(read().await.expect("read"), None);
        meseta_store::put_json(&s, FRAMEWORK_ID, &"fw-1")
            .await
            .expect("write");
        assert_eq!(read().await.expect("read").as_deref(), Some("fw-1"));
    }
}
