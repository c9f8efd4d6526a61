//! `meseta reservation add|remove` (dynamic reservations) and `meseta node drain|up|maintenance`
//! (maintenance windows, machine down/up), all through the v1 operator API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use meseta_api::client::MasterClient;
use meseta_types::Resources;
use serde_json::{json, Value};

use crate::output;

/// `meseta reservation ...`
#[derive(clap::Subcommand, Debug)]
pub enum ReservationCmd {
    /// Reserve resources of an agent for a role.
    Add(ReservationArgs),
    /// Undo a dynamic reservation.
    Remove(ReservationArgs),
}

/// Which resources of which agent for which role.
#[derive(clap::Args, Debug)]
pub struct ReservationArgs {
    /// The agent id.
    #[arg(long)]
    pub agent: String,
    /// The role the resources are reserved for.
    #[arg(long)]
    pub role: String,
    /// Resources, e.g. `cpus:2;mem:1024`.
    pub resources: String,
}

/// Runs a reservation subcommand; returns the exit code.
pub async fn run_reservation(
    cmd: ReservationCmd,
    client: &MasterClient,
    json: bool,
) -> anyhow::Result<i32> {
    let (kind, a) = match cmd {
        ReservationCmd::Add(a) => ("RESERVE_RESOURCES", a),
        ReservationCmd::Remove(a) => ("UNRESERVE_RESOURCES", a),
    };
    let call = reservation_call(kind, &a)?;
    client
        .operator_call(&call)
        .await
        .with_context(|| format!("{kind} on agent {} refused", a.agent))?;
    if json {
        output::print_json(&call);
    } else {
        let verb = if kind == "RESERVE_RESOURCES" {
            "reserved"
        } else {
            "unreserved"
        };
        println!(
            "{verb} {} for role {} on agent {}",
            a.resources, a.role, a.agent
        );
    }
    Ok(0)
}

/// The v1 call for a reservation change.
pub fn reservation_call(kind: &str, a: &ReservationArgs) -> anyhow::Result<Value> {
    let res = Resources::parse(&a.resources)
        .with_context(|| format!("invalid resources '{}'", a.resources))?;
    if res.roles().iter().any(|r| r != "*") {
        bail!("give the resources without a role; the role comes from --role");
    }
    check_role(&a.role)?;
    let key = kind.to_ascii_lowercase();
    Ok(json!({"type": kind, key: {
        "agent_id": {"value": a.agent}, "resources": res.with_role(&a.role)}}))
}

fn check_role(role: &str) -> anyhow::Result<()> {
    if role.is_empty() || role == "*" {
        bail!("--role must name a role other than '*'");
    }
    Ok(())
}

/// Flags of `meseta node drain`.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// The machine's host name (as its agent reports it).
    pub host: String,
    /// When the window starts, from now (`+0s`, `+10m`).
    #[arg(long, default_value = "+0s")]
    pub start: String,
    /// How long the machine is unavailable (`1h`).
    #[arg(long, default_value = "1h")]
    pub duration: String,
    /// Mark the machine down (its tasks are killed) once the window starts.
    #[arg(long)]
    pub down: bool,
}

/// Parses `+30s`, `10m`, `1h`, `500ms` or plain seconds.
pub fn parse_offset(s: &str) -> anyhow::Result<Duration> {
    let t = s.trim().trim_start_matches('+');
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration '{s}' (e.g. +0s, 10m, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => bail!("invalid unit in '{s}': use ms, s, m, h or d"),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        bail!("duration '{s}' must not be negative");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `schedule` with `host` moved into a window of its own.
pub fn with_window(schedule: &Value, host: &str, start_ns: i64, duration_ns: i64) -> Value {
    let mut windows: Vec<Value> = Vec::new();
    for w in schedule["windows"].as_array().into_iter().flatten() {
        let mut w = w.clone();
        if let Some(ids) = w["machine_ids"].as_array_mut() {
            ids.retain(|m| {
                !m["hostname"]
                    .as_str()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            });
            if ids.is_empty() {
                continue;
            }
        }
        windows.push(w);
    }
    windows.push(json!({"machine_ids": [{"hostname": host}],
        "unavailability": {"start": {"nanoseconds": start_ns}, "duration": {"nanoseconds": duration_ns}}}));
    json!({"windows": windows})
}

async fn schedule(client: &MasterClient) -> anyhow::Result<Value> {
    let v = client
        .operator_call(&json!({"type": "GET_MAINTENANCE_SCHEDULE"}))
        .await
        .context("cannot read the maintenance schedule")?;
    Ok(v["get_maintenance_schedule"]["schedule"].clone())
}

async fn status(client: &MasterClient) -> anyhow::Result<Value> {
    let v = client
        .operator_call(&json!({"type": "GET_MAINTENANCE_STATUS"}))
        .await
        .context("cannot read the maintenance status")?;
    Ok(v["get_maintenance_status"]["status"].clone())
}

/// `meseta node drain HOST`.
pub async fn drain(a: DrainArgs, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let offset = parse_offset(&a.start)?;
    let length = parse_offset(&a.duration)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock")?;
    let start = now + offset;
    let current = schedule(client).await?;
    let new = with_window(
        &current,
        &a.host,
        start.as_nanos() as i64,
        length.as_nanos() as i64,
    );
    client
        .operator_call(&json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
            "update_maintenance_schedule": {"schedule": new}}))
        .await
        .with_context(|| format!("cannot schedule maintenance of {}", a.host))?;
    if !json {
        println!(
            "{} is draining (window starts in {:?}, lasts {:?})",
            a.host, offset, length
        );
    }
    if a.down {
        if !offset.is_zero() && !json {
            println!("waiting for the window to start to mark {} down", a.host);
        }
        tokio::time::sleep(offset).await;
        client
            .operator_call(&json!({"type": "START_MAINTENANCE",
                "start_maintenance": {"machines": [{"hostname": a.host}]}}))
            .await
            .with_context(|| format!("cannot mark {} down", a.host))?;
        if !json {
            println!("{} is down: its tasks were killed", a.host);
        }
    }
    show(client, json).await
}

/// `meseta node up HOST`.
pub async fn up(host: &str, client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    client
        .operator_call(&json!({"type": "STOP_MAINTENANCE",
            "stop_maintenance": {"machines": [{"hostname": host}]}}))
        .await
        .with_context(|| format!("cannot bring {host} up"))?;
    if !json {
        println!("{host} is up");
    }
    show(client, json).await
}

/// `meseta node maintenance`: the schedule and the status.
pub async fn show(client: &MasterClient, json: bool) -> anyhow::Result<i32> {
    let s = schedule(client).await?;
    let st = status(client).await?;
    if json {
        output::print_json(&json!({"schedule": s, "status": st}));
    } else {
        println!("{}", render(&s, &st));
    }
    Ok(0)
}

fn machine_name(m: &Value) -> String {
    match (m["hostname"].as_str(), m["ip"].as_str()) {
        (Some(h), Some(i)) => format!("{h} ({i})"),
        (Some(h), None) => h.to_string(),
        (None, Some(i)) => i.to_string(),
        (None, None) => "-".to_string(),
    }
}

/// The maintenance table: machine, mode, window, inverse-offer answers.
pub fn render(schedule: &Value, status: &Value) -> String {
    let down: Vec<&Value> = status["down_machines"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut rows = Vec::new();
    for w in schedule["windows"].as_array().into_iter().flatten() {
        let start = w["unavailability"]["start"]["nanoseconds"]
            .as_i64()
            .unwrap_or(0);
        let dur = w["unavailability"]["duration"]["nanoseconds"].as_i64();
        for m in w["machine_ids"].as_array().into_iter().flatten() {
            let mode = if down.contains(&m) {
                "DOWN"
            } else {
                "DRAINING"
            };
            let answers: Vec<String> = status["draining_machines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| &d["id"] == m)
                .flat_map(|d| d["statuses"].as_array().cloned().unwrap_or_default())
                .map(|s| {
                    format!(
                        "{}:{}",
                        s["framework_id"]["value"].as_str().unwrap_or("?"),
                        s["status"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            rows.push(vec![
                machine_name(m),
                mode.to_string(),
                format!("{:.0}", start as f64 / 1e9),
                dur.map_or("-".to_string(), |d| {
                    output::millis(Duration::from_nanos(d.max(0) as u64))
                }),
                if answers.is_empty() {
                    "-".to_string()
                } else {
                    answers.join(",")
                },
            ]);
        }
    }
    output::table(
        &["MACHINE", "MODE", "START (unix s)", "DURATION", "ANSWERS"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+0s").expect("0"), Duration::ZERO);
        assert_eq!(parse_offset("10m").expect("10m"), Duration::from_secs(600));
        assert_eq!(parse_offset("2").expect("2"), Duration::from_secs(2));
        assert!(parse_offset("-1s").is_err());
        assert!(parse_offset("1y").is_err());
    }

    #[test]
    fn drain_moves_the_host_into_its_own_window() {
        let s = json!({"windows": [{"machine_ids": [{"hostname": "a"}, {"hostname": "B"}],
            "unavailability": {"start": {"nanoseconds": 1}}}]});
        let new = with_window(&s, "b", 5, 6);
        assert_eq!(new["windows"][0]["machine_ids"], json!([{"hostname": "a"}]));
        assert_eq!(new["windows"][1]["machine_ids"], json!([{"hostname": "b"}]));
        assert_eq!(
            new["windows"][1]["unavailability"]["duration"]["nanoseconds"],
            6
        );
    }

    #[test]
    fn reservation_calls_carry_the_role() {
        let a = ReservationArgs {
            agent: "s1".into(),
            role: "db".into(),
            resources: "cpus:2;mem:1024".into(),
        };
        let v = reservation_call("RESERVE_RESOURCES", &a).expect("call");
        assert_eq!(v["reserve_resources"]["agent_id"]["value"], "s1");
        assert_eq!(v["reserve_resources"]["resources"][0]["role"], "db");
        let bad = ReservationArgs {
            role: "*".into(),
            ..a
        };
        assert!(reservation_call("RESERVE_RESOURCES", &bad).is_err());
    }

    #[test]
    fn the_table_shows_mode_and_answers() {
        let s = json!({"windows": [{"machine_ids": [{"hostname": "a"}, {"hostname": "b"}],
            "unavailability": {"start": {"nanoseconds": 2_000_000_000i64}}}]});
        let st = json!({"down_machines": [{"hostname": "b"}], "draining_machines": [
            {"id": {"hostname": "a"}, "statuses": [{"framework_id": {"value": "f1"}, "status": "ACCEPT"}]}]});
        let t = render(&s, &st);
        assert!(t.contains("DRAINING") && t.contains("DOWN"), "{t}");
        assert!(t.contains("f1:ACCEPT"), "{t}");
    }
}
