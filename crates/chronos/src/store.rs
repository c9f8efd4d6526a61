//! What the jobs runtime persists: one record per job (spec + schedule state + history) under
//! `/meseta/jobs/<name>`, and the framework id it subscribes with under [`FRAMEWORK_ID`]
//! (written by the kit, so a restarted master re-subscribes the same framework).

use meseta_jobs::job::JobSpec;
use meseta_jobs::planner::JobState;
use meseta_store::{Op, Store, StoreError, MAX_TXN_BYTES, MAX_TXN_OPS};
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

/// The writes and deletions of jobs, serialized now (so that [`write_ops`] needs nothing of
/// the planner): written in one transaction when they fit in [`MAX_TXN_OPS`] writes and
/// [`MAX_TXN_BYTES`] (etcd refuses more), else in several. Splitting is safe for each record:
/// a job's record is the whole job and no write needs a compare, so a crash between two
/// transactions leaves every record whole, from this flush or the previous one, and a failed
/// flush is retried whole (puts and deletes are idempotent). Across records, fan-in counters
/// live in the dependent job, so dependents are written before their parents: a crash in
/// between can at worst run a dependent again, never lose the run a parent's success owes it.
pub(crate) fn encode(
    save: &[(&JobSpec, &JobState)],
    forget: &[String],
) -> Result<Vec<Op>, StoreError> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        spec: &'a JobSpec,
        state: &'a JobState,
    }
    let saved: std::collections::HashSet<&str> =
        save.iter().map(|(spec, _)| spec.name.as_str()).collect();
    let mut ops = Vec::with_capacity(save.len() + forget.len());
    // A job deleted and created again since the last flush is only put: etcd refuses a
    // transaction that deletes and puts one key.
    for name in forget.iter().filter(|n| !saved.contains(n.as_str())) {
        ops.push(Op::Delete { key: key(name) });
    }
    for (spec, state) in dependents_first(save) {
        let value = serde_json::to_vec(&Borrowed { spec, state })
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        ops.push(Op::Put {
            key: key(&spec.name),
            value,
            lease: None,
        });
    }
    Ok(ops)
}

/// Writes [`encode`]'s operations in order, in transactions [`chunks`] bounds.
pub(crate) async fn write_ops(store: &dyn Store, ops: Vec<Op>) -> Result<(), StoreError> {
    for chunk in chunks(ops) {
        store.txn(vec![], chunk, vec![]).await?;
    }
    Ok(())
}

/// `save` ordered so that every job comes before the saved jobs it depends on (jobs in a cycle,
/// which the planner refuses, keep their given order at the end).
fn dependents_first<'a>(save: &[(&'a JobSpec, &'a JobState)]) -> Vec<(&'a JobSpec, &'a JobState)> {
    let index: std::collections::HashMap<&str, usize> = save
        .iter()
        .enumerate()
        .map(|(i, (spec, _))| (spec.name.as_str(), i))
        .collect();
    let parents_of = |i: usize| {
        let parents = save[i].0.parents.iter();
        parents.filter_map(|p| index.get(p.as_str()).copied())
    };
    // For each job, how many saved jobs naming it as a parent are not written yet.
    let mut waiting = vec![0usize; save.len()];
    (0..save.len())
        .flat_map(parents_of)
        .for_each(|j| waiting[j] += 1);
    let mut ready: std::collections::VecDeque<usize> =
        (0..save.len()).filter(|&i| waiting[i] == 0).collect();
    let mut placed = vec![false; save.len()];
    let mut out = Vec::with_capacity(save.len());
    while let Some(i) = ready.pop_front() {
        placed[i] = true;
        out.push(save[i]);
        for j in parents_of(i) {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    out.extend((0..save.len()).filter(|&i| !placed[i]).map(|i| save[i]));
    out
}

/// Splits `ops` into transactions of at most [`MAX_TXN_OPS`] writes and about
/// [`MAX_TXN_BYTES`] (a single bigger write still goes alone).
fn chunks(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let size = match &op {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key } | Op::DeletePrefix { prefix: key } => key.len(),
        };
        let full = out
            .last()
            .is_none_or(|c| c.len() >= MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(c) = out.last_mut() {
            c.push(op);
        }
    }
    out
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

    fn spec(name: &str, parents: &[&str]) -> JobSpec {
        JobSpec {
            name: name.into(),
            command: "true".into(),
            shell: true,
            arguments: vec![],
            schedule: None,
            schedule_text: None,
            parents: parents.iter().map(|p| p.to_string()).collect(),
            epsilon: meseta_jobs::job::DEFAULT_EPSILON,
            retries: 0,
            cpus: 0.1,
            mem: 32.0,
            disk: 0.0,
            disabled: false,
            concurrent: false,
            soft_error: false,
            user: None,
            env: vec![],
            secret_env: vec![],
            container: None,
            owner: String::new(),
            description: String::new(),
            max_completion_time: 0,
            asynchronous: false,
        }
    }

    #[tokio::test]
    async fn many_jobs_go_out_in_bounded_transactions_dependents_first() {
        let s = meseta_store::mem::MemStore::new();
        let state = JobState::default();
        let mut specs: Vec<JobSpec> = (0..230).map(|i| spec(&format!("j{i}"), &[])).collect();
        specs.push(spec("child", &["j0"]));
        specs.push(spec("grandchild", &["child"]));
        let save: Vec<(&JobSpec, &JobState)> = specs.iter().map(|j| (j, &state)).collect();
        let forget = vec!["j5".to_string(), "gone".to_string()];
        let start = s.revision().await.expect("revision");
        write_ops(&s, encode(&save, &forget).expect("encode"))
            .await
            .expect("save");
        let end = s.revision().await.expect("revision");
        // 1 delete (j5 is saved again, so only put) + 232 puts = 233 writes: 100 + 100 + 33.
        assert_eq!(end - start, 3);
        let mod_rev = |name: &'static str| {
            let s = &s;
            async move {
                let kv = s.get(&key(name)).await.expect("get").expect("stored");
                kv.mod_revision
            }
        };
        assert!(mod_rev("grandchild").await <= mod_rev("child").await);
        assert!(mod_rev("child").await <= mod_rev("j0").await);
        assert_eq!(load(&s).await.expect("load").len(), 232);
    }

    #[test]
    fn chunks_respect_ops_and_bytes() {
        let put = |n: usize| Op::Put {
            key: "k".into(),
            value: vec![0; n],
            lease: None,
        };
        let sizes = |ops: Vec<Op>| chunks(ops).iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes((0..250).map(|_| put(1)).collect()), [100, 100, 50]);
        let third = MAX_TXN_BYTES / 3;
        assert_eq!(sizes((0..3).map(|_| put(third)).collect()), [2, 1]);
        assert_eq!(sizes(vec![put(2 * MAX_TXN_BYTES)]), [1]);
        assert!(chunks(vec![]).is_empty());
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
