//! Percent-encoding of the ids the client puts into URL paths and queries (task, framework, app,
//! deployment and job ids, version timestamps).

/// Percent-encodes every byte but the unreserved characters (`A-Z a-z 0-9 - . _ ~`) and those in
/// `keep`.
pub fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One path segment or query value: everything but unreserved characters is escaped.
pub fn segment(s: &str) -> String {
    encode(s, b"")
}

/// A path of segments: like [`segment`], but `/` and `:` (legal in a path segment, and part of
/// every version timestamp) stay.
pub fn path(p: &str) -> String {
    encode(p, b"/:")
}

/// One path segment that may hold a version timestamp: like [`path`], but `/` is escaped too.
pub fn component(p: &str) -> String {
    encode(p, b":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("web.1-a_b~"), "web.1-a_b~");
        assert_eq!(segment("etl.daily-1_x"), "etl.daily-1_x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("a:b"), "a%3Ab");
    }

    #[test]
    fn paths_keep_slashes_and_colons() {
        assert_eq!(path("/prod/web 1"), "/prod/web%201");
        assert_eq!(
            component("2021-01-01T00:00:00.000Z"),
            "2021-01-01T00:00:00.000Z"
        );
        assert_eq!(component("a/b"), "a%2Fb");
    }
}
