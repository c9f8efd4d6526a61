//! `/v2/apps` and everything under an app id: create, list, read, update (PUT merges by
//! default, as marathon-python relies on), delete, restart, tasks, versions, and canaries.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_api::marathon::{App, AppDefinition};
use meseta_services::engine::view::Embed;
use meseta_services::validate::{runs_as_root, validate_app};
use serde_json::{json, Map, Value};

use super::Marathon;
use super::{
    app_id, body_bytes, deployment_result, engine_error, fail, flag, parse_json, refuse_privileged,
    refuse_root, refuse_unoffered_host_ports, shape_error, unavailable, values, Body, Params,
};
use meseta_api::marathon::READ_ONLY_APP_KEYS;

enum Sub {
    App(String),
    Restart(String),
    Tasks(String),
    Task(String, String),
    Versions(String),
    Version(String, String),
    Canary(String),
    CanaryPromote(String),
    CanaryAbort(String),
    GroupApps(String),
}

fn parse_sub(rest: &str) -> Sub {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let n = segs.len();
    let id = |k: usize| app_id(&segs[..n.saturating_sub(k)].join("/"));
    let last = segs.last().copied().unwrap_or("");
    let before = if n >= 2 { segs[n - 2] } else { "" };
    match (before, last) {
        (_, "*") => Sub::GroupApps(id(1)),
        ("tasks", t) if n >= 3 => Sub::Task(id(2), t.to_owned()),
        ("versions", v) if n >= 3 => Sub::Version(id(2), v.to_owned()),
        ("canary", "promote") if n >= 3 => Sub::CanaryPromote(id(2)),
        ("canary", "abort") if n >= 3 => Sub::CanaryAbort(id(2)),
        (_, "tasks") if n >= 2 => Sub::Tasks(id(1)),
        (_, "restart") if n >= 2 => Sub::Restart(id(1)),
        (_, "versions") if n >= 2 => Sub::Versions(id(1)),
        (_, "canary") if n >= 2 => Sub::Canary(id(1)),
        _ => Sub::App(id(0)),
    }
}

/// `embed` values, with or without their `app.`/`apps.`/`group.apps.` prefix.
fn embed(q: &Params, default_tasks: bool) -> Embed {
    let mut e = Embed {
        tasks: default_tasks,
        last_task_failure: default_tasks,
        task_stats: false,
    };
    for v in values(q, "embed") {
        let v = v
            .trim_start_matches("group.")
            .trim_start_matches("apps.")
            .trim_start_matches("app.");
        match v {
            "tasks" => e.tasks = true,
            "lastTaskFailure" => e.last_task_failure = true,
            "failures" => {
                e.tasks = true;
                e.last_task_failure = true;
            }
            "taskStats" => e.task_stats = true,
            _ => {}
        }
    }
    e
}

/// `GET /v2/apps` with `id`, `cmd`, `label` filters.
pub(super) async fn list(State(m): State<Marathon>, Query(q): Query<Params>) -> Response {
    let h = &m.services;
    let e = embed(&q, false);
    let id_f = values(&q, "id").next().map(str::to_lowercase);
    let cmd_f = values(&q, "cmd").next().map(str::to_owned);
    let label_f = values(&q, "label").next().map(str::to_owned);
    let r = h
        .call(move |eng, _| {
            eng.apps()
                .filter(|a| {
                    id_f.as_ref()
                        .is_none_or(|f| a.app.id.to_lowercase().contains(f))
                })
                .filter(|a| {
                    cmd_f
                        .as_ref()
                        .is_none_or(|f| a.app.cmd.as_deref().unwrap_or("").contains(f.as_str()))
                })
                .filter(|a| label_f.as_ref().is_none_or(|f| label_matches(f, &a.app)))
                .map(|a| eng.app_json(a, e))
                .collect::<Vec<_>>()
        })
        .await;
    match r {
        Ok(apps) => Json(json!({"apps": apps})).into_response(),
        Err(_) => unavailable(),
    }
}

/// A label selector: comma-separated `key`, `k==v`, `k!=v` terms, all of which must hold.
fn label_matches(selector: &str, app: &App) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                app.labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = t.split_once("==") {
                app.labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else {
                app.labels.contains_key(t)
            }
        })
}

/// `POST /v2/apps`.
pub(super) async fn create(
    State(m): State<Marathon>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let app = match parse_json::<AppDefinition>(&body)
        .and_then(|d| canonical(&d))
        .and_then(|a| root_checked(&m, a))
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let h = &m.services;
    let force = flag(&q, "force", false);
    let raw: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let r = h
        .call(move |eng, now| {
            let id = app.id.clone();
            eng.put_app(app, now, force, true).map(|(r, _)| {
                let body = eng.app(&id).map(|st| {
                    let mut v = eng.app_json(st, Embed::default());
                    if let Value::Object(m) = &mut v {
                        m.remove("tasksStaged");
                        m.insert("tasksStaged".into(), json!(0));
                    }
                    v
                });
                (r, id, body)
            })
        })
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok((r, id, body))) => {
            h.publish(
                json!({"eventType": "api_post_event", "timestamp": r.version,
                             "clientIp": "", "uri": format!("/v2/apps{id}"), "appDefinition": raw}),
            );
            let mut resp = (StatusCode::CREATED, Json(body.unwrap_or(Value::Null))).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
                resp.headers_mut().insert("Location", v);
            }
            if let Ok(v) = HeaderValue::from_str(&r.deployment_id) {
                resp.headers_mut().insert("Marathon-Deployment-Id", v);
            }
            resp
        }
    }
}

/// GETs under an app id.
pub(super) async fn get_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    let h = &m.services;
    let e = embed(&q, true);
    let r = h
        .call(move |eng, _| -> Result<Value, Response> {
            let not_found =
                |id: &str| fail(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"));
            match parse_sub(&rest) {
                Sub::App(id) => eng
                    .app(&id)
                    .map(|st| json!({"app": eng.app_json(st, e)}))
                    .ok_or_else(|| not_found(&id)),
                Sub::GroupApps(g) => {
                    let prefix = if g == "/" {
                        "/".to_owned()
                    } else {
                        format!("{g}/")
                    };
                    Ok(
                        json!({"*": eng.apps().filter(|a| a.app.id.starts_with(&prefix))
                        .map(|a| eng.app_json(a, e)).collect::<Vec<_>>()}),
                    )
                }
                Sub::Tasks(id) => {
                    let st = eng.app(&id).ok_or_else(|| not_found(&id))?;
                    let tasks: Vec<Value> = eng
                        .instances_of(&id)
                        .filter(|i| i.active())
                        .map(|i| eng.task_json(st, i))
                        .collect();
                    Ok(json!({"tasks": tasks}))
                }
                Sub::Versions(id) => {
                    let st = eng.app(&id).ok_or_else(|| not_found(&id))?;
                    let mut v: Vec<&String> = st.versions.keys().collect();
                    v.reverse();
                    Ok(json!({"versions": v}))
                }
                Sub::Version(id, ver) => {
                    let st = eng.app(&id).ok_or_else(|| not_found(&id))?;
                    st.versions
                        .get(&ver)
                        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
                        .ok_or_else(|| {
                            fail(
                                StatusCode::NOT_FOUND,
                                format!("App '{id}' does not exist in version {ver}"),
                            )
                        })
                }
                Sub::Canary(id) => eng.canary_json(&id).ok_or_else(|| {
                    fail(StatusCode::NOT_FOUND, format!("App '{id}' has no canary"))
                }),
                Sub::Task(..) | Sub::Restart(_) | Sub::CanaryAbort(_) | Sub::CanaryPromote(_) => {
                    Err(fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"))
                }
            }
        })
        .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(resp)) => resp,
        Err(_) => unavailable(),
    }
}

/// `PUT /v2/apps/{id}`: merge (default) or replace; `{"version": v}` rolls back; creates when absent.
pub(super) async fn put_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let Sub::App(id) = parse_sub(&rest) else {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    };
    let partial = flag(&q, "partialUpdate", true);
    update(m, id, q, body, partial, false).await
}

/// `PATCH /v2/apps/{id}`: merge; the app must exist.
pub(super) async fn patch_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let Sub::App(id) = parse_sub(&rest) else {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    };
    update(m, id, q, body, true, true).await
}

async fn update(
    m: Marathon,
    id: String,
    q: Params,
    body: Body,
    partial: bool,
    must_exist: bool,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let patch: Map<String, Value> = match parse_json(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let h = &m.services;
    let force = flag(&q, "force", false);
    // Rollback: only `version` (and `id`).
    if let Some(v) = patch.get("version").and_then(Value::as_str) {
        if patch.keys().any(|k| k != "version" && k != "id") {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({"message": "Object is not valid", "details": [{"path": "/",
                    "errors": ["The 'version' field may only be combined with the 'id' field."]}]}),
                ),
            )
                .into_response();
        }
        let v = v.to_owned();
        let r = h
            .call(move |eng, now| eng.rollback_app(&id, &v, now, force))
            .await;
        return match r {
            Ok(Ok(r)) => deployment_result(StatusCode::OK, &r),
            Ok(Err(e)) => engine_error(e),
            Err(_) => unavailable(),
        };
    }
    let lookup = id.clone();
    let existing = match h
        .call(move |eng, _| eng.app(&lookup).map(|a| a.app.clone()))
        .await
    {
        Ok(e) => e,
        Err(_) => return unavailable(),
    };
    if must_exist && existing.is_none() {
        return fail(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"));
    }
    let merged = match (&existing, partial) {
        (Some(old), true) => merge(old, patch),
        _ => {
            let mut p = patch;
            for k in READ_ONLY_APP_KEYS {
                p.remove(*k);
            }
            p
        }
    };
    let app = match canonical_merged(&id, merged).and_then(|a| root_checked(&m, a)) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let r = h
        .call(move |eng, now| eng.put_app(app, now, force, false))
        .await;
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok((r, created))) => {
            let mut resp = deployment_result(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &r,
            );
            if created {
                if let Ok(v) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
                    resp.headers_mut().insert("Location", v);
                }
            }
            resp
        }
    }
}

/// The app, unless it asks for root where root tasks are not allowed (422 at `/user`), for a
/// privileged container where those are not allowed (422 at `/container/docker/privileged`),
/// or maps a host port no agent offers (422 at `/container/portMappings(i)/hostPort`).
fn root_checked(m: &Marathon, app: App) -> Result<App, Response> {
    let here = |yes: bool| if yes { vec![String::new()] } else { Vec::new() };
    refuse_root(m, here(runs_as_root(&app)))?;
    refuse_privileged(m, here(meseta_services::validate::runs_privileged(&app)))?;
    refuse_unoffered_host_ports(m, &[(String::new(), &app)])?;
    super::refuse_missing_secrets(m, &[(String::new(), &app)])?;
    Ok(app)
}

/// A definition validated into the canonical app, or the 422 naming every violation.
fn canonical(def: &AppDefinition) -> Result<App, Response> {
    validate_app(def)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, Json(e.marathon_body())).into_response())
}

/// App `id` as the (merged) JSON `def` describes it, validated.
fn canonical_merged(id: &str, mut def: Map<String, Value>) -> Result<App, Response> {
    def.insert("id".into(), json!(id));
    let def: AppDefinition = serde_json::from_value(Value::Object(def)).map_err(shape_error)?;
    canonical(&def)
}

/// The current definition with the patch's keys laid over it. Keys that replace each other
/// (`cmd`/`args`, `ports`/`portDefinitions`, `uris`/`fetch`) drop their counterpart.
fn merge(old: &App, patch: Map<String, Value>) -> Map<String, Value> {
    let mut base = match serde_json::to_value(old) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for k in READ_ONLY_APP_KEYS {
        base.remove(*k);
    }
    for (a, b) in [
        ("cmd", "args"),
        ("args", "cmd"),
        ("ports", "portDefinitions"),
        ("uris", "fetch"),
    ] {
        if patch.get(a).is_some_and(|v| !v.is_null()) {
            base.remove(b);
        }
    }
    for (k, v) in patch {
        if READ_ONLY_APP_KEYS.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        base.insert(k, v);
    }
    base
}

/// DELETEs under an app id: the app, all its tasks, or one task.
pub(super) async fn delete_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
) -> Response {
    let h = &m.services;
    let scale = flag(&q, "scale", false);
    let wipe = flag(&q, "wipe", false);
    if scale && wipe {
        return fail(
            StatusCode::BAD_REQUEST,
            "You cannot use scale and wipe at the same time.",
        );
    }
    let force = flag(&q, "force", false);
    match parse_sub(&rest) {
        Sub::App(id) => {
            let force = flag(&q, "force", true);
            match h
                .call(move |eng, now| eng.delete_app(&id, now, force))
                .await
            {
                Ok(Ok(r)) => deployment_result(StatusCode::OK, &r),
                Ok(Err(e)) => engine_error(e),
                Err(_) => unavailable(),
            }
        }
        Sub::Tasks(id) => {
            let host = values(&q, "host").next().map(str::to_owned);
            let r = h
                .call(move |eng, now| {
                    let Some(st) = eng.app(&id) else {
                        return Err(meseta_services::engine::EngineError::UnknownApp(id));
                    };
                    let picked: Vec<(String, Value)> = eng
                        .instances_of(&id)
                        .filter(|i| i.active())
                        .filter(|i| {
                            host.as_deref()
                                .is_none_or(|h| h == "*" || i.host.as_deref() == Some(h))
                        })
                        .filter_map(|i| Some((i.task_id()?, eng.task_json(st, i))))
                        .collect();
                    let ids: Vec<String> = picked.iter().map(|(t, _)| t.clone()).collect();
                    let (_, dep) = eng.kill_tasks(&ids, scale, now, force)?;
                    Ok((picked.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), dep))
                })
                .await;
            kill_response(r, false)
        }
        Sub::Task(id, task) => {
            let r = h
                .call(move |eng, now| {
                    let st = eng.app(&id).ok_or_else(|| {
                        meseta_services::engine::EngineError::UnknownApp(id.clone())
                    })?;
                    let inst_id = task.split("._app.").next().unwrap_or(&task).to_owned();
                    let inst = eng.instance(&id, &inst_id).ok_or_else(|| {
                        meseta_services::engine::EngineError::UnknownTask(task.clone())
                    })?;
                    let tj = eng.task_json(st, inst);
                    let (_, dep) =
                        eng.kill_tasks(std::slice::from_ref(&task), scale, now, force)?;
                    Ok((vec![tj], dep))
                })
                .await;
            kill_response(r, true)
        }
        _ => fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}

type KillResult = Result<
    Result<
        (
            Vec<Value>,
            Option<meseta_services::engine::DeploymentResult>,
        ),
        meseta_services::engine::EngineError,
    >,
    crate::Unavailable,
>;

fn kill_response(r: KillResult, single: bool) -> Response {
    match r {
        Err(_) => unavailable(),
        Ok(Err(e)) => engine_error(e),
        Ok(Ok((_, Some(dep)))) => deployment_result(StatusCode::OK, &dep),
        Ok(Ok((mut tasks, None))) => {
            if single {
                Json(json!({"task": tasks.pop().unwrap_or(Value::Null)})).into_response()
            } else {
                Json(json!({"tasks": tasks})).into_response()
            }
        }
    }
}

/// The body of `POST /v2/apps/{id}/canary`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CanaryRequest {
    #[serde(default)]
    app: Map<String, Value>,
    instances: u32,
    #[serde(default)]
    auto_promote_after_seconds: Option<f64>,
}

/// POSTs under an app id: restart and canaries.
pub(super) async fn post_sub(
    State(m): State<Marathon>,
    Path(rest): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let h = &m.services;
    let force = flag(&q, "force", false);
    let r = match parse_sub(&rest) {
        Sub::Restart(id) => {
            h.call(move |eng, now| eng.restart_app(&id, now, force))
                .await
        }
        Sub::CanaryPromote(id) => h.call(move |eng, now| eng.promote_canary(&id, now)).await,
        Sub::CanaryAbort(id) => h.call(move |eng, now| eng.abort_canary(&id, now)).await,
        Sub::Canary(id) => {
            let req: CanaryRequest = match parse_json(&body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let lookup = id.clone();
            let existing = match h
                .call(move |eng, _| eng.app(&lookup).map(|a| a.app.clone()))
                .await
            {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return fail(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"))
                }
                Err(_) => return unavailable(),
            };
            let app = match canonical_merged(&id, merge(&existing, req.app))
                .and_then(|a| root_checked(&m, a))
            {
                Ok(a) => a,
                Err(r) => return r,
            };
            let (k, auto) = (req.instances, req.auto_promote_after_seconds);
            let r = h
                .call(move |eng, now| eng.start_canary(&id, app, k, auto, now))
                .await;
            return match r {
                Ok(Ok(r)) => deployment_result(StatusCode::CREATED, &r),
                Ok(Err(e)) => engine_error(e),
                Err(_) => unavailable(),
            };
        }
        _ => return fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    };
    match r {
        Ok(Ok(r)) => deployment_result(StatusCode::OK, &r),
        Ok(Err(e)) => engine_error(e),
        Err(_) => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_parse_with_double_slashes_and_groups() {
        assert!(matches!(parse_sub("/test-app"), Sub::App(id) if id == "/test-app"));
        assert!(matches!(parse_sub("prod/web/restart"), Sub::Restart(id) if id == "/prod/web"));
        assert!(matches!(parse_sub("web/tasks"), Sub::Tasks(id) if id == "/web"));
        assert!(
            matches!(parse_sub("web/tasks/web.instance-1._app.1"), Sub::Task(id, t) if id == "/web" && t == "web.instance-1._app.1")
        );
        assert!(
            matches!(parse_sub("web/versions/2021-01-01T00:00:00.000Z"), Sub::Version(id, _) if id == "/web")
        );
        assert!(matches!(parse_sub("web/canary/promote"), Sub::CanaryPromote(id) if id == "/web"));
        assert!(matches!(parse_sub("prod/*"), Sub::GroupApps(g) if g == "/prod"));
    }
}
