//! The master's Marathon `/v2` API as methods of [`MasterClient::marathon`]: apps and their
//! versions, canaries, pods, deployments, tasks, the launch queue and the `/v2/events` stream.
//!
//! Bodies stay JSON ([`Value`]): the CLI prints them as they come (`--json`) or renders a few
//! fields. A mutation answers a [`Reply`] that carries the deployment it started. Errors are
//! [`ApiError`]s with Marathon's `message` and one line per `details` item.
//!
//! [`ApiError`]: super::ApiError

use reqwest::Method;
use serde_json::Value;

use super::{path, ApiKind, ClientError, MasterClient};

/// The response header naming the deployment a request started.
pub const DEPLOYMENT_ID_HEADER: &str = "Marathon-Deployment-Id";

/// A successful answer to a mutation.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The `Marathon-Deployment-Id` header, else the body's `deploymentId`, else the first of
    /// its `deployments[].id` (the 201 of `POST /v2/apps`).
    pub deployment_id: Option<String>,
}

/// The `/v2` API of one master; see [`MasterClient::marathon`].
#[derive(Clone, Copy, Debug)]
pub struct Marathon<'a> {
    pub(super) client: &'a MasterClient,
}

impl Marathon<'_> {
    /// Sends one request; a non-2xx answer is an [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let answer = self
            .client
            .api_request(ApiKind::Marathon, method, path, body)
            .await?;
        let body = answer.json_or_null()?;
        let deployment_id = answer.deployment_header.or_else(|| deployment_id_of(&body));
        Ok(Reply {
            status: answer.status,
            body,
            deployment_id,
        })
    }

    /// `GET path` → JSON.
    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(Method::GET, path, None).await?.body)
    }

    /// `GET path` → JSON, or `None` on 404.
    async fn get_opt(&self, path: &str) -> Result<Option<Value>, ClientError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/apps`.
    pub async fn apps(&self) -> Result<Value, ClientError> {
        self.get("/v2/apps").await
    }

    /// `POST /v2/apps`: creates one app.
    pub async fn create_app(&self, app: &Value) -> Result<Reply, ClientError> {
        self.send(Method::POST, "/v2/apps", Some(app)).await
    }

    /// `GET /v2/apps/{id}`.
    pub async fn app(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&app_path(id)).await
    }

    /// `GET /v2/apps/{id}`, or `None` when there is no such app.
    pub async fn find_app(&self, id: &str) -> Result<Option<Value>, ClientError> {
        self.get_opt(&app_path(id)).await
    }

    /// `GET /v2/apps/{id}?embed=app.tasks`, or `None` when there is no such app.
    pub async fn app_with_tasks(&self, id: &str) -> Result<Option<Value>, ClientError> {
        self.get_opt(&format!("{}?embed=app.tasks", app_path(id)))
            .await
    }

    /// `GET /v2/apps/{id}` with its tasks and last task failure embedded.
    pub async fn app_details(&self, id: &str) -> Result<Value, ClientError> {
        let path = format!("{}?embed=app.tasks&embed=app.lastTaskFailure", app_path(id));
        self.get(&path).await
    }

    /// `GET /v2/apps/{id}/versions`.
    pub async fn app_versions(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("{}/versions", app_path(id))).await
    }

    /// `GET /v2/apps/{id}/versions/{version}`: the app as stored at `version`.
    pub async fn app_version(&self, id: &str, version: &str) -> Result<Value, ClientError> {
        let path = format!("{}/versions/{}", app_path(id), path::component(version));
        self.get(&path).await
    }

    /// `PUT /v2/apps/{id}?force=`: replaces (or partly updates) the app with `body`.
    pub async fn put_app(&self, id: &str, body: &Value, force: bool) -> Result<Reply, ClientError> {
        let path = format!("{}{}", app_path(id), force_query(force));
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// `POST /v2/apps/{id}/restart?force=`.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<Reply, ClientError> {
        let path = format!("{}/restart{}", app_path(id), force_query(force));
        self.send(Method::POST, &path, None).await
    }

    /// `DELETE /v2/apps/{id}?force=`.
    pub async fn delete_app(&self, id: &str, force: bool) -> Result<Reply, ClientError> {
        let path = format!("{}{}", app_path(id), force_query(force));
        self.send(Method::DELETE, &path, None).await
    }

    /// `GET /v2/apps/{id}/canary`, or `None` when the app has no canary.
    pub async fn canary(&self, id: &str) -> Result<Option<Value>, ClientError> {
        self.get_opt(&format!("{}/canary", app_path(id))).await
    }

    /// `POST /v2/apps/{id}/canary`: starts a canary described by `body`.
    pub async fn start_canary(&self, id: &str, body: &Value) -> Result<Reply, ClientError> {
        let path = format!("{}/canary", app_path(id));
        self.send(Method::POST, &path, Some(body)).await
    }

    /// `POST /v2/apps/{id}/canary/promote`.
    pub async fn promote_canary(&self, id: &str) -> Result<Reply, ClientError> {
        let path = format!("{}/canary/promote", app_path(id));
        self.send(Method::POST, &path, None).await
    }

    /// `POST /v2/apps/{id}/canary/abort`.
    pub async fn abort_canary(&self, id: &str) -> Result<Reply, ClientError> {
        let path = format!("{}/canary/abort", app_path(id));
        self.send(Method::POST, &path, None).await
    }

    /// `GET /v2/pods`.
    pub async fn pods(&self) -> Result<Value, ClientError> {
        self.get("/v2/pods").await
    }

    /// `GET /v2/pods/::status`: the status of every pod.
    pub async fn pod_statuses(&self) -> Result<Value, ClientError> {
        self.get("/v2/pods/::status").await
    }

    /// `POST /v2/pods`: creates one pod.
    pub async fn create_pod(&self, pod: &Value) -> Result<Reply, ClientError> {
        self.send(Method::POST, "/v2/pods", Some(pod)).await
    }

    /// `GET /v2/pods/{id}`.
    pub async fn pod(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&pod_path(id)).await
    }

    /// `GET /v2/pods/{id}::status`.
    pub async fn pod_status(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("{}::status", pod_path(id))).await
    }

    /// `PUT /v2/pods/{id}?force=`: creates or replaces the pod with `body` (a whole pod).
    pub async fn put_pod(&self, id: &str, body: &Value, force: bool) -> Result<Reply, ClientError> {
        let path = format!("{}{}", pod_path(id), force_query(force));
        self.send(Method::PUT, &path, Some(body)).await
    }

    /// `DELETE /v2/pods/{id}?force=`.
    pub async fn delete_pod(&self, id: &str, force: bool) -> Result<Reply, ClientError> {
        let path = format!("{}{}", pod_path(id), force_query(force));
        self.send(Method::DELETE, &path, None).await
    }

    /// `DELETE /v2/pods/{id}::instances/{instance}`: kills one instance (it is replaced).
    pub async fn kill_pod_instance(&self, id: &str, instance: &str) -> Result<Reply, ClientError> {
        let path = format!("{}::instances/{}", pod_path(id), path::component(instance));
        self.send(Method::DELETE, &path, None).await
    }

    /// `GET /v2/deployments`.
    pub async fn deployments(&self) -> Result<Value, ClientError> {
        self.get("/v2/deployments").await
    }

    /// `DELETE /v2/deployments/{id}?force=`: rolls the deployment back in a new one, or with
    /// `force` just stops it.
    pub async fn cancel_deployment(&self, id: &str, force: bool) -> Result<Reply, ClientError> {
        let path = format!(
            "/v2/deployments/{}{}",
            path::component(id),
            force_query(force)
        );
        self.send(Method::DELETE, &path, None).await
    }

    /// `GET /v2/tasks`.
    pub async fn tasks(&self) -> Result<Value, ClientError> {
        self.get("/v2/tasks").await
    }

    /// `GET /v2/queue`.
    pub async fn queue(&self) -> Result<Value, ClientError> {
        self.get("/v2/queue").await
    }

    /// `GET /v2/events?event_type=…`: the server-sent event stream, attached when this returns.
    pub async fn events(&self, event_type: &str) -> Result<SseStream, ClientError> {
        let path = format!("/v2/events?event_type={}", path::segment(event_type));
        self.event_stream(&path).await
    }

    /// `GET /v2/events`: every event, attached when this returns.
    pub async fn all_events(&self) -> Result<SseStream, ClientError> {
        self.event_stream("/v2/events").await
    }

    async fn event_stream(&self, path: &str) -> Result<SseStream, ClientError> {
        let resp = self
            .client
            .api_response(
                &self.client.stream_http,
                ApiKind::Marathon,
                Method::GET,
                path,
                "text/event-stream",
                None,
            )
            .await?;
        Ok(SseStream {
            body: resp,
            buf: Vec::new(),
        })
    }
}

/// A server-sent event stream: yields the payload of each `data:` line.
#[derive(Debug)]
pub struct SseStream {
    body: reqwest::Response,
    buf: Vec<u8>,
}

impl SseStream {
    /// The next `data:` payload; `Ok(None)` once the master closed the stream.
    pub async fn next_data(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    return Ok(Some(data.trim_start().to_string()));
                }
            }
            match self.body.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(ClientError::Stream {
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
}

/// The deployment id in a deploymentResult or an AppInfo body.
pub fn deployment_id_of(body: &Value) -> Option<String> {
    if let Some(id) = body.get("deploymentId").and_then(Value::as_str) {
        return Some(id.to_string());
    }
    body.get("deployments")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An app id in absolute form: `foo` → `/foo`, `//a/b/` → `/a/b`.
pub fn absolute_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

/// The URL path of an app: `/v2/apps/<id>` with each segment percent-encoded.
pub fn app_path(id: &str) -> String {
    format!("/v2/apps{}", path::path(&absolute_id(id)))
}

/// The URL path of a pod: `/v2/pods/<id>` with each segment percent-encoded.
pub fn pod_path(id: &str) -> String {
    format!("/v2/pods{}", path::path(&absolute_id(id)))
}

/// `?force=true|false`.
fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        "?force=false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_ids_come_from_results_or_app_info() {
        assert_eq!(
            deployment_id_of(&json!({"version":"v","deploymentId":"d1"})).as_deref(),
            Some("d1")
        );
        assert_eq!(
            deployment_id_of(&json!({"id":"/a","deployments":[{"id":"d2"}]})).as_deref(),
            Some("d2")
        );
        assert_eq!(deployment_id_of(&json!({"id":"/a","deployments":[]})), None);
    }

    #[test]
    fn app_paths_are_absolute_and_encoded() {
        assert_eq!(app_path("foo"), "/v2/apps/foo");
        assert_eq!(app_path("//prod/web/"), "/v2/apps/prod/web");
        assert_eq!(app_path("/a b"), "/v2/apps/a%20b");
        assert_eq!(
            path::component("2021-01-01T00:00:00.000Z"),
            "2021-01-01T00:00:00.000Z"
        );
        assert_eq!(path::component("a/b"), "a%2Fb");
    }
}
