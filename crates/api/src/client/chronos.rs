//! The master's Chronos API (`/v1/scheduler/*`, Chronos 3 paths) as methods of
//! [`MasterClient::chronos`]: jobs, their runs and statistics, and the dependency graph.
//!
//! Bodies stay JSON ([`Value`]); errors are [`ApiError`]s naming the request by its path below
//! the prefix (`PUT /job/etl`), with Chronos's `message` and the status with its reason
//! (`400 Bad Request`).
//!
//! [`ApiError`]: super::ApiError

use reqwest::Method;
use serde_json::Value;

use super::{path, Answer, ApiKind, ClientError, MasterClient};

/// The Chronos API of one master; see [`MasterClient::chronos`].
#[derive(Clone, Copy, Debug)]
pub struct Chronos<'a> {
    pub(super) client: &'a MasterClient,
}

impl Chronos<'_> {
    /// A body-less request.
    async fn send(&self, method: Method, path: &str) -> Result<Answer, ClientError> {
        let api = ApiKind::Chronos;
        self.client.api_request(api, method, path, None).await
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path).await?.json()
    }

    /// A body-less request on job `name` at `path` + the name.
    async fn on_job(&self, method: Method, path: &str, name: &str) -> Result<(), ClientError> {
        let path = format!("{path}{}", path::segment(name));
        self.send(method, &path).await.map(drop)
    }

    /// `GET /jobs`: every job's definition.
    pub async fn jobs(&self) -> Result<Value, ClientError> {
        self.get("/jobs").await
    }

    /// `GET /jobs/summary`: every job's last outcome and state.
    pub async fn summary(&self) -> Result<Value, ClientError> {
        self.get("/jobs/summary").await
    }

    /// `GET /job/{name}`.
    pub async fn job(&self, name: &str) -> Result<Value, ClientError> {
        self.get(&format!("/job/{}", path::segment(name))).await
    }

    /// `GET /job/stat/{name}`: the job's recent runs and run-duration histogram.
    pub async fn job_stats(&self, name: &str) -> Result<Value, ClientError> {
        self.get(&format!("/job/stat/{}", path::segment(name)))
            .await
    }

    /// Creates or replaces a job: `POST /dependency` when it has parents, else `/iso8601`.
    pub async fn add_job(&self, job: &Value) -> Result<(), ClientError> {
        let (api, path) = (ApiKind::Chronos, endpoint_of(job));
        let answer = self.client.api_request(api, Method::POST, path, Some(job));
        answer.await.map(drop)
    }

    /// `PUT /job/{name}`: starts a run now.
    pub async fn start_job(&self, name: &str) -> Result<(), ClientError> {
        self.on_job(Method::PUT, "/job/", name).await
    }

    /// `DELETE /task/kill/{name}`: kills the job's active runs.
    pub async fn kill_job_runs(&self, name: &str) -> Result<(), ClientError> {
        self.on_job(Method::DELETE, "/task/kill/", name).await
    }

    /// `PUT /job/enable/{name}`.
    pub async fn enable_job(&self, name: &str) -> Result<(), ClientError> {
        self.on_job(Method::PUT, "/job/enable/", name).await
    }

    /// `PUT /job/disable/{name}`.
    pub async fn disable_job(&self, name: &str) -> Result<(), ClientError> {
        self.on_job(Method::PUT, "/job/disable/", name).await
    }

    /// `DELETE /job/{name}`.
    pub async fn delete_job(&self, name: &str) -> Result<(), ClientError> {
        self.on_job(Method::DELETE, "/job/", name).await
    }

    /// `GET /graph/csv`, or `/graph/dot` (Graphviz) with `dot`: the dependency graph as text.
    pub async fn graph(&self, dot: bool) -> Result<String, ClientError> {
        let path = if dot { "/graph/dot" } else { "/graph/csv" };
        Ok(self.send(Method::GET, path).await?.text)
    }
}

/// The endpoint a job is posted to: `/dependency` when it has parents, else `/iso8601`.
pub fn endpoint_of(job: &Value) -> &'static str {
    let has_parents = job
        .get("parents")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if has_parents {
        "/dependency"
    } else {
        "/iso8601"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_with_parents_go_to_dependency() {
        assert_eq!(
            endpoint_of(&json!({"name":"c","parents":["a"]})),
            "/dependency"
        );
        assert_eq!(
            endpoint_of(&json!({"name":"c","schedule":"R//PT1S"})),
            "/iso8601"
        );
        assert_eq!(endpoint_of(&json!({"name":"c","parents":[]})), "/iso8601");
    }
}
