//! Rendering shared by the CLI verbs: plain tables (comfy-table), JSON, and number formatting of
//! the v0 resource summaries found in `/master/state` and `/master/slaves`.

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

/// A borderless table with a header row, like `kubectl get`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(String::as_str));
    }
    let rendered = t.to_string();
    // The preset pads every cell with one space on each side; drop the left margin.
    let lines: Vec<&str> = rendered
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect();
    lines.join("\n")
}

/// Pretty JSON of `v`, for `--json`.
pub fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Prints `v` as pretty JSON on stdout.
pub fn print_json(v: &Value) {
    println!("{}", json(v));
}

/// Shortest decimal form of a resource amount: `4`, `0.5`, `1.125`.
pub fn num(v: f64) -> String {
    let rounded = (v * 1000.0).round() / 1000.0;
    let s = format!("{rounded:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A scalar from a v0 summary map (`{"cpus":4.0,..}`), 0 when absent.
pub fn summary_scalar(summary: &Value, name: &str) -> f64 {
    summary.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

/// `used/total` of one scalar from two v0 summaries.
pub fn used_of_total(used: &Value, total: &Value, name: &str) -> String {
    format!(
        "{}/{}",
        num(summary_scalar(used, name)),
        num(summary_scalar(total, name))
    )
}

/// A string field of a JSON object, or `""`.
pub fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Milliseconds with two decimals.
pub fn millis(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_shortest() {
        assert_eq!(num(4.0), "4");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(1.125), "1.125");
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(65536.0), "65536");
    }

    #[test]
    fn used_of_total_reads_summaries() {
        let used = json!({"cpus":0.5,"mem":128.0});
        let total = json!({"cpus":4.0,"mem":1024.0,"gpus":0.0});
        assert_eq!(used_of_total(&used, &total, "cpus"), "0.5/4");
        assert_eq!(used_of_total(&used, &total, "mem"), "128/1024");
        assert_eq!(used_of_total(&json!({}), &total, "disk"), "0/0");
    }

    #[test]
    fn table_has_header_and_rows() {
        let out = table(
            &["ID", "STATE"],
            &[vec!["t1".into(), "TASK_RUNNING".into()]],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("ID") && lines[0].contains("STATE"));
        assert!(lines[1].contains("t1") && lines[1].contains("TASK_RUNNING"));
        assert!(
            lines.iter().all(|l| l == &l.trim()),
            "no outer margins: {out:?}"
        );
    }
}
