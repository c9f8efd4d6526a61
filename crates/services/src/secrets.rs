//! An app's secrets as Mesos sees them: `env: {"X": {"secret": name}}` becomes a `SECRET`
//! variable and `container.volumes: [{"containerPath", "secret": name}]` a `SECRET` volume, each
//! a REFERENCE to the path the app's `secrets: {name: {"source": path}}` gives. Values never
//! pass through here: the master resolves the references when it launches the task.

use meseta_api::container::Volume;
use meseta_api::marathon::App;
use meseta_api::scheduler::SecretEnv;
use serde_json::Value;

/// A relative path of plain segments (no `..`, not absolute, not empty).
pub fn sandbox_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The source path of the secret `name` of `app`.
fn source<'a>(app: &'a App, name: &str) -> Option<&'a str> {
    app.secrets.get(name)?.get("source")?.as_str()
}

/// Every secret path the app names, with the JSON path naming it.
pub fn sources(app: &App) -> Vec<(String, String)> {
    app.secrets
        .iter()
        .filter_map(|(n, v)| {
            let s = v.get("source")?.as_str()?;
            Some((format!("/secrets({n})/source"), s.to_string()))
        })
        .collect()
}

/// The app's secret environment variables.
pub fn env(app: &App) -> Vec<SecretEnv> {
    app.env
        .iter()
        .filter_map(|(k, v)| {
            let name = v.get("secret")?.as_str()?;
            Some(SecretEnv {
                name: k.clone(),
                reference: source(app, name)?.to_string(),
            })
        })
        .collect()
}

/// The app's secret volumes, as Mesos volumes of `source.type: SECRET`.
pub fn volumes(app: &App) -> Vec<Volume> {
    app.container
        .as_ref()
        .and_then(|c| c.get("volumes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v.get("secret")?.as_str()?;
            let path = v.get("containerPath")?.as_str()?;
            Some(Volume::secret(path, source(app, name)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_volumes_are_references() {
        let def: meseta_api::marathon::AppDefinition = serde_json::from_value(serde_json::json!({
            "id": "/a", "cmd": "sleep 1",
            "secrets": {"s0": {"source": "/team-a/db"}},
            "env": {"DB": {"secret": "s0"}, "PLAIN": "1"},
            "container": {"type": "MESOS",
                "volumes": [{"containerPath": "creds/pw", "secret": "s0"}]}
        }))
        .expect("definition");
        let app = crate::validate::validate_app(&def).expect("valid");
        assert_eq!(
            env(&app),
            vec![SecretEnv {
                name: "DB".into(),
                reference: "/team-a/db".into()
            }]
        );
        let v = volumes(&app);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].secret_reference(), Some("/team-a/db"));
        assert_eq!(v[0].container_path, "creds/pw");
        assert_eq!(
            sources(&app),
            vec![("/secrets(s0)/source".into(), "/team-a/db".into())]
        );
    }
}
