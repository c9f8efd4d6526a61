//! Mesos-DNS naming: how task, framework and agent names become DNS labels. Pure.
//!
//! A label is RFC 1123: lower-case ASCII letters, digits and `-`, neither first nor last, at most
//! 63 bytes. Every other character becomes `-` (so `my_job` is `my-job` and a Mesos task name
//! `web.prod` is `web-prod`), runs of `-` are kept as they are (Mesos-DNS does the same), and a
//! name longer than 63 bytes is cut. Labels that take a `_` prefix in SRV names are cut to 62 so
//! that the prefixed label still fits (the limit Mesos-DNS itself once overlooked).
//!
//! Marathon apps: the built-in services framework names its tasks after the app id with `/`
//! replaced by `_` (`/prod/web` → `prod_web`; `_` is not allowed in Marathon ids, so the split is
//! exact). Mesos-DNS flattens groups the other way round, innermost first (`web-prod`), as
//! Marathon's own task names (`web.prod`) turn out under Mesos-DNS; [`task_label`] does that for
//! tasks of the `marathon` framework.

/// The longest DNS label.
pub const MAX_LABEL: usize = 63;

/// The name of the framework whose task names are flattened Marathon app ids.
pub const MARATHON: &str = "marathon";

/// `s` as an RFC 1123 label cut to `max` bytes, or `None` when nothing of it is left.
pub fn label_max(s: &str, max: usize) -> Option<String> {
    let mapped: String = s
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(max)];
    let cut = cut.trim_end_matches('-');
    (!cut.is_empty()).then(|| cut.to_string())
}

/// `s` as an RFC 1123 label of at most 63 bytes.
pub fn label(s: &str) -> Option<String> {
    label_max(s, MAX_LABEL)
}

/// The label of a task named `task_name` of framework `framework_name`: Marathon's flattened
/// app ids (`prod_web`) read innermost group first (`web-prod`); every other name as it is.
/// Cut to 62 bytes so that `_<label>` (SRV) fits too.
pub fn task_label(framework_name: &str, task_name: &str) -> Option<String> {
    if framework_name == MARATHON && task_name.contains('_') {
        let flat: Vec<&str> = task_name
            .trim_matches('_')
            .split('_')
            .filter(|s| !s.is_empty())
            .rev()
            .collect();
        label_max(&flat.join("-"), MAX_LABEL - 1)
    } else {
        label_max(task_name, MAX_LABEL - 1)
    }
}

/// A short, stable tag of a task id (5 base-36 characters of its FNV-1a hash), as Mesos-DNS
/// uses to give each task a name of its own (`web-7x3kq.marathon.meseta`).
pub fn task_tag(task_id: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in task_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        let d = (h % 36) as u8;
        out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
        h /= 36;
    }
    out
}

/// The label of a task of its own: `<task label cut to 56>-<tag>`.
pub fn task_instance_label(task: &str, task_id: &str) -> String {
    let base = &task[..task.len().min(MAX_LABEL - 7)];
    format!("{}-{}", base.trim_end_matches('-'), task_tag(task_id))
}

/// A configured domain (`meseta`, `mesos`, `dc1.example.com`) as lower-case labels joined by
/// `.`, without the root dot; `None` when a label is invalid.
pub fn domain(s: &str) -> Option<String> {
    let s = s.trim_end_matches('.');
    if s.is_empty() || s.len() > 200 {
        return None;
    }
    let labels: Option<Vec<String>> = s
        .split('.')
        .map(|l| {
            let ok = label(l)?;
            (ok == l.to_ascii_lowercase()).then_some(ok)
        })
        .collect();
    Some(labels?.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_groups_flatten_innermost_first() {
        assert_eq!(
            task_label("marathon", "prod_web").as_deref(),
            Some("web-prod")
        );
        assert_eq!(
            task_label("marathon", "a_b_c").as_deref(),
            Some("c-b-a"),
            "deeper groups"
        );
        assert_eq!(task_label("marathon", "web").as_deref(), Some("web"));
        // Marathon's own task names (`web.prod`) come out the same way.
        assert_eq!(task_label("other", "web.prod").as_deref(), Some("web-prod"));
        // Only the marathon framework's names are flattened.
        assert_eq!(task_label("chronos", "my_job").as_deref(), Some("my-job"));
    }

    #[test]
    fn invalid_characters_become_hyphens_and_ends_are_trimmed() {
        assert_eq!(label("Web Server!").as_deref(), Some("web-server"));
        assert_eq!(label("_x_").as_deref(), Some("x"));
        assert_eq!(label("ünï").as_deref(), Some("n"));
        assert_eq!(label("---"), None);
        assert_eq!(label(""), None);
        assert_eq!(label("a..b").as_deref(), Some("a--b"));
    }

    #[test]
    fn long_names_are_cut_to_fit_a_label_and_an_srv_prefix() {
        let long = "a".repeat(100);
        assert_eq!(label(&long).map(|l| l.len()), Some(63));
        let t = task_label("marathon", &long).expect("label");
        assert_eq!(t.len(), 62, "room for the `_` of SRV names");
        // A cut never leaves a trailing hyphen.
        let s = format!("{}-{}", "b".repeat(61), "c".repeat(10));
        assert_eq!(label_max(&s, 62).as_deref(), Some("b".repeat(61).as_str()));
        let inst = task_instance_label(&t, "id-1");
        assert!(inst.len() <= MAX_LABEL, "{inst}");
    }

    #[test]
    fn task_tags_are_stable_and_distinct() {
        assert_eq!(task_tag("web.1"), task_tag("web.1"));
        assert_ne!(task_tag("web.1"), task_tag("web.2"));
        assert_eq!(task_tag("x").len(), 5);
        assert!(task_tag("x").chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn domains_are_checked_label_by_label() {
        assert_eq!(domain("meseta").as_deref(), Some("meseta"));
        assert_eq!(
            domain("DC1.Example.com.").as_deref(),
            Some("dc1.example.com")
        );
        assert_eq!(domain("bad_label.com"), None);
        assert_eq!(domain(""), None);
        assert_eq!(domain("a..b"), None);
    }
}
