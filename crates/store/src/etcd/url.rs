//! Parsing of etcd store URLs: `etcd://h1:2379,h2:2379[/namespace]`, or the same with
//! `http://` endpoints (`http://h1:2379,http://h2:2379`).

use crate::StoreError;

/// Endpoints (`http://host:port`) and the key namespace (empty, or ending in `/`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub endpoints: Vec<String>,
    pub namespace: String,
}

fn bad(url: &str, why: &str) -> StoreError {
    StoreError::Backend(format!("invalid etcd url {url:?}: {why}"))
}

/// Parses a store URL. The optional path becomes the namespace: `etcd://h:2379/meseta` keeps
/// every key under `/meseta/`.
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let mut endpoints = Vec::new();
    let mut namespace = String::new();
    for part in url.split(',') {
        let part = part.trim();
        let rest = if let Some(rest) = part.strip_prefix("etcd://") {
            rest
        } else if let Some(rest) = part.strip_prefix("http://") {
            rest
        } else if part.starts_with("https://") || part.starts_with("etcds://") {
            return Err(bad(url, "TLS endpoints are not supported"));
        } else if part.contains("://") {
            return Err(bad(url, "the scheme must be etcd:// or http://"));
        } else {
            part
        };
        let (host, path) = match rest.split_once('/') {
            Some((host, path)) => (host, path.trim_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(bad(url, "an endpoint has no host"));
        }
        if !path.is_empty() {
            let ns = format!("/{path}/");
            if !namespace.is_empty() && namespace != ns {
                return Err(bad(url, "endpoints give different namespaces"));
            }
            namespace = ns;
        }
        let host = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:2379")
        };
        endpoints.push(format!("http://{host}"));
    }
    Ok(Target {
        endpoints,
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_and_http_urls() {
        let t = parse("etcd://h1:2379,h2:2380").expect("parse");
        assert_eq!(t.endpoints, ["http://h1:2379", "http://h2:2380"]);
        assert_eq!(t.namespace, "");
        let t = parse("etcd://h1,h2:1/meseta/prod/").expect("parse");
        assert_eq!(t.endpoints, ["http://h1:2379", "http://h2:1"]);
        assert_eq!(t.namespace, "/meseta/prod/");
        let t = parse("http://127.0.0.1:5,http://127.0.0.1:6").expect("parse");
        assert_eq!(t.endpoints, ["http://127.0.0.1:5", "http://127.0.0.1:6"]);
        let t = parse("http://a:1/x,http://b:2/x").expect("parse");
        assert_eq!(t.namespace, "/x/");
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        assert!(parse("https://h:2379").is_err());
        assert!(parse("etcd://").is_err());
        assert!(parse("etcd://a:1,").is_err());
        assert!(parse("redb:///tmp/x").is_err());
        assert!(parse("http://a:1/x,http://b:2/y").is_err());
    }
}
