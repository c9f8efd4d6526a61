//! Filtering of the server-sent event stream (`/v2/events`): each event is passed on only when
//! its JSON data names an app the token may read (events naming no app need read on all).

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use meseta_acl::{route, Access, Grants, Kind, Resource};

/// The fields of an event that name its app, borrowed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe<'a> {
    #[serde(borrow, default)]
    app_id: Option<&'a str>,
    #[serde(borrow, default)]
    app_definition: Option<IdOnly<'a>>,
}

#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
}

/// `resp` with its SSE body filtered for `g`.
pub(crate) fn filter(resp: Response, kind: Kind, g: Grants) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut pending: Vec<u8> = Vec::new();
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        pending.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(end) = find_blank_line(&pending) {
            let block: Vec<u8> = pending.drain(..end).collect();
            if let Some(kept) = keep(&block, kind, &g) {
                out.extend_from_slice(&kept);
            }
        }
        Ok::<_, axum::Error>(Bytes::from(out))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The end (exclusive) of the first complete event in `buf`.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// One SSE block (lines up to a blank line) as the token may see it, or `None` to drop it:
/// comments and events without JSON data pass; app events are redacted
/// ([`route::redact_event`]).
fn keep(block: &[u8], kind: Kind, g: &Grants) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(block);
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    if data.is_empty() {
        return Some(block.to_vec());
    }
    // Most events name their app directly: decide from a borrowed probe, pass the bytes on.
    if kind == Kind::Apps {
        if let Ok(p) = serde_json::from_str::<Probe<'_>>(&data) {
            if let Some(id) = p.app_id.or(p.app_definition.and_then(|d| d.id)) {
                let ok = g.management || g.allows(Access::Read, Resource::new(kind, id)).is_ok();
                return ok.then(|| block.to_vec());
            }
        }
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&data) else {
        return Some(block.to_vec());
    };
    let visible = match kind {
        Kind::Apps => route::redact_event(g, &mut v),
        _ => route::visible(kind, g, &v),
    };
    if !visible {
        return None;
    }
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with("data:") && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("data: {v}\n\n"));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meseta_acl::Rule;

    #[test]
    fn events_for_other_teams_are_dropped() {
        let g = Grants {
            management: false,
            rules: vec![Rule {
                resource: Kind::Apps,
                prefix: "/team-a/".into(),
                access: Access::Read,
            }],
        };
        let a = b"event: x\ndata: {\"appId\":\"/team-a/w\"}\n\n";
        assert_eq!(keep(a, Kind::Apps, &g).as_deref(), Some(&a[..]));
        assert!(keep(
            b"event: x\ndata: {\"appId\":\"/team-b/w\"}\n\n",
            Kind::Apps,
            &g
        )
        .is_none());
        assert!(keep(b": keep-alive\n\n", Kind::Apps, &g).is_some());
        assert_eq!(find_blank_line(b"a\n\nb"), Some(3));
    }
}
