//! Secret paths: `/team-a/db/password`, segments of letters, digits, `-`, `_` and `.`. One rule
//! for the secret store (`meseta-secrets`) and for the definitions that name secrets (Marathon
//! apps, Metronome jobs).

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

/// [`validate_path`] as a definition's validation reports it: the source a Marathon app or a
/// Metronome job names, with an example of a valid one.
pub fn source_problem(src: &str) -> Result<(), String> {
    validate_path(src).map_err(|_| {
        format!(
            "{src:?} is not a secret path (like /team-a/db/password: '/'-separated letters, \
             digits, '-', '_', '.')"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{source_problem, validate_path};

    #[test]
    fn sources_name_the_rule() {
        assert!(source_problem("/a/b").is_ok());
        assert!(source_problem("a/b").is_err());
        let e = source_problem("/a/../b").expect_err("'..' is refused");
        assert!(e.contains("is not a secret path"), "{e}");
    }

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
