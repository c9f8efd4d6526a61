//! SVG line charts of history series: one polyline per series over a shared time axis, with a
//! text legend and a `<title>`/`<desc>` for screen readers. No script needed.

use maud::{html, Markup};
use meseta_history::{Entity, History, Series};

use super::num;

const W: f64 = 640.0;
const H: f64 = 180.0;
const PAD_L: f64 = 48.0;
const PAD_B: f64 = 20.0;

/// One line of a chart.
pub(crate) struct Line<'a> {
    pub label: &'a str,
    pub class: &'a str,
    pub points: Vec<(i64, f64)>,
}

/// The lines of `series` of `entity` over the last `range` seconds.
pub(crate) fn lines<'a>(
    h: &History,
    entity: &Entity,
    wanted: &[(Series, &'a str, &'a str)],
    now: i64,
    range: i64,
) -> Vec<Line<'a>> {
    let step = (range / 160).max(10);
    wanted
        .iter()
        .map(|(s, label, class)| Line {
            label,
            class,
            points: h.range(entity, *s, now - range, now, step),
        })
        .collect()
}

/// A chart titled `title` of `lines` between `start` and `end` (unix seconds).
pub(crate) fn chart(title: &str, unit: &str, lines: &[Line<'_>], start: i64, end: i64) -> Markup {
    // A history younger than the range is drawn over the time it covers (at least a minute).
    let first = lines
        .iter()
        .filter_map(|l| l.points.first().map(|p| p.0))
        .min();
    let start = match first {
        Some(t) if t > start => (t - 10).min(end - 60).max(start),
        _ => start,
    };
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let top = nice_ceiling(max);
    let span = (end - start).max(1) as f64;
    let x = |t: i64| PAD_L + (t - start) as f64 / span * (W - PAD_L - 4.0);
    let y = |v: f64| (H - PAD_B) - v / top * (H - PAD_B - 8.0);
    let empty = lines.iter().all(|l| l.points.is_empty());
    let desc = lines
        .iter()
        .map(|l| match l.points.last() {
            Some((_, v)) => format!("{}: {} {unit} now", l.label, num(*v)),
            None => format!("{}: no samples", l.label),
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" {
                title { (title) }
                desc { (desc) }
                line.axis x1=(PAD_L) y1=(H - PAD_B) x2=(W) y2=(H - PAD_B) {}
                line.axis x1=(PAD_L) y1="4" x2=(PAD_L) y2=(H - PAD_B) {}
                text.tick x=(PAD_L - 4.0) y=(y(top) + 4.0) text-anchor="end" { (num(top)) }
                text.tick x=(PAD_L - 4.0) y=(y(top / 2.0) + 4.0) text-anchor="end" { (num(top / 2.0)) }
                text.tick x=(PAD_L - 4.0) y=(H - PAD_B) text-anchor="end" { "0" }
                text.tick x=(PAD_L) y=(H - 4.0) { (ago(end - start)) }
                text.tick x=(W - 4.0) y=(H - 4.0) text-anchor="end" { "now" }
                @for l in lines {
                    @if l.points.len() == 1 {
                        @let (t, v) = l.points[0];
                        circle class=(format!("dot {}", l.class)) cx=(format!("{:.1}", x(t))) cy=(format!("{:.1}", y(v))) r="3" {}
                    }
                    @if l.points.len() > 1 {
                        polyline class=(format!("line {}", l.class)) points=(
                            l.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect::<Vec<_>>().join(" ")
                        ) {}
                    }
                }
                @if empty {
                    text.tick x=(W / 2.0) y=(H / 2.0) text-anchor="middle" { "no samples yet" }
                }
            }
            figcaption {
                strong { (title) }
                @for l in lines {
                    " " span class=(format!("key {}", l.class)) { "■" } " " (l.label)
                    @if let Some((_, v)) = l.points.last() { " " (num(*v)) }
                }
                " (" (unit) ")"
            }
        }
    }
}

/// A round number ≥ `v` for the top of the axis.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn ago(secs: i64) -> String {
    if secs >= 86400 {
        format!("{} d ago", secs / 86400)
    } else if secs >= 3600 {
        format!("{} h ago", secs / 3600)
    } else {
        format!("{} min ago", (secs / 60).max(1))
    }
}

/// The ranges the charts offer: (query value, seconds, label).
pub(crate) const RANGES: [(&str, i64, &str); 5] = [
    ("15m", 900, "15 min"),
    ("1h", 3600, "1 hour"),
    ("6h", 21600, "6 hours"),
    ("1d", 86400, "1 day"),
    ("14d", 14 * 86400, "14 days"),
];

/// The seconds of a `range` query value (1 hour when absent or unknown).
pub(crate) fn range_secs(q: Option<&str>) -> i64 {
    RANGES
        .iter()
        .find(|r| Some(r.0) == q)
        .map(|r| r.1)
        .unwrap_or(3600)
}

/// Links to the other ranges of the current page.
pub(crate) fn range_links(path: &str, current: i64) -> Markup {
    html! {
        nav.ranges aria-label="Time range" {
            "Range: "
            @for (q, secs, label) in RANGES {
                @if secs == current { strong aria-current="true" { (label) } } @else {
                    a href=(format!("{path}?range={q}")) { (label) }
                }
                " "
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_top_is_a_round_number_above_the_data() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.9), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
    }

    #[test]
    fn a_chart_describes_its_lines_in_text() {
        let lines = [Line {
            label: "used",
            class: "used",
            points: vec![(0, 1.0), (10, 2.0)],
        }];
        let svg = chart("CPU", "cpus", &lines, 0, 10).into_string();
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("used: 2 cpus now"));
    }
}
