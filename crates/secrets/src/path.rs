//! Secret paths: `/team-a/db/password`, segments of letters, digits, `-`, `_` and `.`.

/// Why a path is not a valid secret path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret path {path:?}: {why}")]
pub struct PathError {
    /// The path given.
    pub path: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Longest path accepted.
const MAX_LEN: usize = 256;

/// Checks a secret path: absolute, at most 256 characters, segments of `[A-Za-z0-9_.-]`
/// other than `.` and `..`, no empty segment, no trailing `/`.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    let bad = |why| {
        Err(PathError {
            path: path.to_string(),
            why,
        })
    };
    if !path.starts_with('/') {
        return bad("it must start with '/'");
    }
    if path.len() > MAX_LEN {
        return bad("it is longer than 256 characters");
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return bad("it has an empty segment or ends with '/'");
        }
        if seg == "." || seg == ".." {
            return bad("'.' and '..' are not allowed as segments");
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("segments may hold only letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_path;

    #[test]
    fn paths() {
        assert!(validate_path("/team-a/db/password").is_ok());
        assert!(validate_path("/x").is_ok());
        for bad in [
            "", "/", "x", "/a//b", "/a/", "/a/../b", "/a b", "/a/./b", "/é",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        assert!(validate_path(&format!("/{}", "a".repeat(300))).is_err());
    }
}
