//! Roles, weights and quota (Mesos v0 shapes): `GET /master/roles`, `GET|PUT /master/weights`,
//! `GET|POST /master/quota`, `DELETE /master/quota/{role}`. Changes become one `Command`, checked
//! by the allocator, persisted, and only then answered; a change that cannot be persisted is
//! undone.

use std::collections::BTreeMap;

use super::{error, run_command as run};
use crate::command::Command;
use crate::Master;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meseta_allocator::Quota;
use meseta_types::{Resources, Scalar};
use serde::Deserialize;
use serde_json::{json, Map, Value};

fn scalars(m: &BTreeMap<String, Scalar>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v.as_f64())))
            .collect::<Map<_, _>>(),
    )
}

pub(super) async fn roles(State(m): State<Master>) -> Response {
    let roles: Vec<Value> = m
        .roles()
        .into_iter()
        .map(|r| {
            let q = r.quota.clone().unwrap_or_default();
            json!({
                "name": r.name, "weight": r.weight,
                "quota": {"role": r.name, "guarantee": scalars(&q.guarantees), "limit": scalars(&q.limits),
                          "consumed": scalars(&r.consumed)},
                "resources": scalars(&r.allocated), "allocated": scalars(&r.allocated),
                "offered": {}, "reserved": scalars(&r.reserved),
                "frameworks": r.frameworks.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                "share": r.share,
            })
        })
        .collect();
    Json(json!({ "roles": roles })).into_response()
}

pub(super) async fn weights(State(m): State<Master>) -> Response {
    let list: Vec<Value> = m
        .weights()
        .iter()
        .map(|(r, w)| json!({"role": r, "weight": w}))
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
struct WeightInfo {
    role: String,
    weight: f64,
}

/// `PUT /master/weights` with `[{"role","weight"}]`: all or nothing.
pub(super) async fn update_weights(State(m): State<Master>, body: Bytes) -> Response {
    let infos: Vec<WeightInfo> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expecting [{{\"role\",\"weight\"}}]: {e}"),
            )
        }
    };
    let weights = infos.into_iter().map(|w| (w.role, w.weight)).collect();
    run(&m, Command::Weights(weights), StatusCode::OK).await
}

pub(super) async fn quota(State(m): State<Master>) -> Response {
    let quotas = m.quotas();
    let configs: Vec<Value> = quotas.iter().map(|(r, q)| config_json(r, q)).collect();
    let infos: Vec<Value> = quotas
        .iter()
        .map(|(r, q)| json!({"role": r, "guarantee": guarantee_resources(q)}))
        .collect();
    Json(json!({"infos": infos, "configs": configs})).into_response()
}

/// `{"role","guarantees":{"cpus":{"value":1.0}},"limits":{…}}` (v1 QuotaConfig).
pub(super) fn config_json(role: &str, q: &Quota) -> Value {
    let m = |s: &BTreeMap<String, Scalar>| {
        Value::Object(
            s.iter()
                .map(|(k, v)| (k.clone(), json!({"value": v.as_f64()})))
                .collect::<Map<_, _>>(),
        )
    };
    json!({"role": role, "guarantees": m(&q.guarantees), "limits": m(&q.limits)})
}

fn guarantee_resources(q: &Quota) -> Value {
    let mut r = Resources::new();
    for (name, v) in &q.guarantees {
        let _ = r.push(meseta_types::Resource::new(
            name.clone(),
            "*",
            meseta_types::Value::Scalar(*v),
        ));
    }
    serde_json::to_value(&r).unwrap_or_default()
}

#[derive(Deserialize)]
struct QuotaRequest {
    role: String,
    #[serde(default)]
    guarantee: Resources,
    #[serde(default)]
    force: bool,
}

/// `POST /master/quota` with `{"role","guarantee":[Resource],"force"}`: guarantees (Mesos' v0
/// quota has no limits; the v1 `UPDATE_QUOTA` call sets both).
pub(super) async fn set_quota_v0(State(m): State<Master>, body: Bytes) -> Response {
    let req: QuotaRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid quota request: {e}"),
            )
        }
    };
    let mut guarantees = BTreeMap::new();
    for r in req.guarantee.iter() {
        match &r.value {
            meseta_types::Value::Scalar(s) => {
                guarantees.insert(r.name.to_string(), *s);
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("quota takes scalar resources only, not '{}'", r.name),
                )
            }
        }
    }
    let q = Quota {
        guarantees,
        limits: BTreeMap::new(),
    };
    let cmd = Command::Quota {
        role: req.role,
        quota: Some(q),
        force: req.force,
    };
    run(&m, cmd, StatusCode::OK).await
}

pub(super) async fn remove_quota(State(m): State<Master>, Path(role): Path<String>) -> Response {
    run(&m, Command::RemoveQuota(role), StatusCode::OK).await
}
