//! Job schedules: ISO 8601 repeating intervals (Chronos) and cron expressions (Metronome style).
//!
//! Used by [`crate::job::JobSpec`] (validation) and [`crate::planner::Planner`] (due times).
//! A schedule is immutable once parsed; the planner keeps the next due time, and
//! [`Schedule::to_chronos_string`] renders the Chronos "rewritten" form (start advanced to the
//! next run, repetitions left) that `GET /scheduler/jobs` shows.
//!
//! Occurrence `k` of an ISO schedule is `start + k × period`, computed with calendar arithmetic
//! in the schedule's time zone (so `P1D` keeps the wall-clock hour across DST, unlike `PT24H`).
//! `Rn` has occurrences `0..n`; a bare `R` repeats forever.
//!
//! Every query is answered arithmetically: the occurrence at or after (or at or before) a time
//! is found by estimating its index from the period and correcting with a bracketing binary
//! search, never by stepping through the occurrences in between, so a schedule that started
//! decades ago answers as fast as one starting now. The scheduler's resolution is
//! [`RESOLUTION`] (one second): a period shorter than that is refused when parsed.

use std::fmt;
use std::str::FromStr;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// The scheduler's resolution: the shortest period an ISO schedule may have (cron expressions
/// work in whole seconds anyway).
pub const RESOLUTION: SignedDuration = SignedDuration::from_secs(1);

/// Why a schedule text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The text is neither `R[n]/<start>/<period>` nor a cron expression.
    #[error("cannot parse schedule '{text}': {reason}")]
    Syntax {
        /// The offending schedule text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone name is not an IANA zone.
    #[error("unknown time zone '{0}'")]
    TimeZone(String),
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRepr", into = "ScheduleRepr")]
pub enum Schedule {
    /// `R[n]/<start>/<period>`.
    Iso(IsoSchedule),
    /// A cron expression (5 fields, or 6 with seconds first).
    Cron(CronSchedule),
}

/// An ISO 8601 repeating interval.
#[derive(Debug, Clone)]
pub struct IsoSchedule {
    /// First occurrence.
    pub start: Timestamp,
    /// Period between occurrences (calendar units allowed).
    pub period: Span,
    /// The period as written (`PT10S`).
    pub period_text: String,
    /// `Some(n)` for `Rn`, `None` for `R` (forever).
    pub repetitions: Option<u64>,
    /// Zone for calendar arithmetic and output.
    pub tz: TimeZone,
    /// The zone name as given (`""` when none).
    pub tz_name: String,
}

/// A cron schedule.
#[derive(Clone)]
pub struct CronSchedule {
    /// The expression as written.
    pub expr: String,
    /// Zone the expression is evaluated in.
    pub tz: TimeZone,
    /// The zone name as given (`""` when none, meaning UTC).
    pub tz_name: String,
    cron: Box<Cron>,
}

impl PartialEq for IsoSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start
            && self.period_text == other.period_text
            && self.repetitions == other.repetitions
            && self.tz_name == other.tz_name
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expr", &self.expr)
            .field("tz_name", &self.tz_name)
            .finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz_name == other.tz_name
    }
}

/// Resolves an optional IANA name ("" or `None` = UTC).
pub fn time_zone(tz: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match tz.map(str::trim) {
        None | Some("") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string())),
    }
}

fn syntax(text: &str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Syntax {
        text: text.to_string(),
        reason: reason.into(),
    }
}

impl Schedule {
    /// "R/2026-11-23T10:00:00Z/PT10S", "R5/…", "R//PT1S" (empty start = now), or a cron expression
    /// ("*/5 * * * *", 6 fields = with seconds) — `tz` is an IANA name ("UTC" default).
    pub fn parse(s: &str, tz: Option<&str>, now: Timestamp) -> Result<Schedule, ScheduleError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(syntax(s, "empty schedule"));
        }
        let zone = time_zone(tz)?;
        let tz_name = tz.map(str::trim).unwrap_or("").to_string();
        if looks_iso(text) {
            let iso = IsoSchedule::parse(text, zone, tz_name, now)?;
            iso.check_resolution(text)?;
            Ok(Schedule::Iso(iso))
        } else {
            CronSchedule::parse(text, zone, tz_name).map(Schedule::Cron)
        }
    }

    /// The first occurrence at or after `t` (None when repetitions are exhausted).
    pub fn next_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Iso(iso) => iso.next_index(t).and_then(|k| iso.occurrence(k)),
            Schedule::Cron(cron) => cron.next_at_or_after(t),
        }
    }

    /// The last occurrence at or before `t` (None when there is none: `t` is before the start,
    /// or the schedule has no occurrence at all).
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Iso(iso) => iso.last_index(t).and_then(|k| iso.occurrence(k)),
            Schedule::Cron(cron) => cron.last_at_or_before(t),
        }
    }

    /// False for a schedule whose period is below [`RESOLUTION`] (only a record written before
    /// the limit existed can hold one: parsing refuses them).
    pub fn within_resolution(&self) -> bool {
        match self {
            Schedule::Iso(iso) => iso.step().is_some_and(|d| d >= RESOLUTION),
            Schedule::Cron(_) => true,
        }
    }

    /// True for a cron expression (false for an ISO 8601 repeating interval).
    pub fn is_cron(&self) -> bool {
        matches!(self, Schedule::Cron(_))
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let later = t.checked_add(SignedDuration::from_nanos(1)).ok()?;
        self.next_at_or_after(later)
    }

    /// The Chronos text form with the start advanced to `next` and the repetitions left (what GET shows).
    ///
    /// For `Rn` the repetitions left are counted from `next`'s place on the grid; with no
    /// `next` (exhausted) the text is `R0/…`. `runs_done` is used only when `next` is not on
    /// the grid (it is then the number of occurrences already consumed). Cron schedules are
    /// returned as written.
    pub fn to_chronos_string(&self, next: Option<Timestamp>, runs_done: u64) -> String {
        match self {
            Schedule::Cron(c) => c.expr.clone(),
            Schedule::Iso(iso) => iso.to_chronos_string(next, runs_done),
        }
    }

    /// The zone name as given (`""` when none).
    pub fn tz_name(&self) -> &str {
        match self {
            Schedule::Iso(i) => &i.tz_name,
            Schedule::Cron(c) => &c.tz_name,
        }
    }
}

/// True when `text` has the ISO 8601 repeating-interval form `R[n]/…` (as opposed to cron).
pub fn looks_iso(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('R') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    rest[digits..].starts_with('/')
}

/// Formats a timestamp the way Chronos does: millisecond precision, `Z` for UTC.
pub fn format_chronos_time(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
    }
}

impl IsoSchedule {
    fn parse(
        text: &str,
        tz: TimeZone,
        tz_name: String,
        now: Timestamp,
    ) -> Result<Self, ScheduleError> {
        let mut parts = text.splitn(3, '/');
        let (Some(rep), Some(start), Some(period_text)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax(text, "expected R[n]/<start>/<period>"));
        };
        let repetitions = match &rep[1..] {
            "" => None,
            n => Some(
                n.parse::<u64>()
                    .map_err(|_| syntax(text, "bad repetition count"))?,
            ),
        };
        let start = if start.is_empty() {
            now
        } else {
            parse_start(start, &tz, !tz_name.is_empty()).map_err(|r| syntax(text, r))?
        };
        if start < Timestamp::UNIX_EPOCH {
            return Err(syntax(text, "start is before 1970"));
        }
        let period =
            Span::from_str(period_text).map_err(|e| syntax(text, format!("bad period: {e}")))?;
        if period.is_zero() || period.is_negative() || !period_text.starts_with('P') {
            return Err(syntax(text, "period must be a positive ISO 8601 duration"));
        }
        let iso = IsoSchedule {
            start,
            period,
            period_text: period_text.to_string(),
            repetitions,
            tz,
            tz_name,
        };
        match iso.occurrence(1) {
            Some(t) if t > start => Ok(iso),
            _ => Err(syntax(text, "period does not advance time")),
        }
    }

    /// Occurrence `k` (ignoring the repetition limit); None on overflow.
    pub fn occurrence(&self, k: u64) -> Option<Timestamp> {
        if k == 0 {
            return Some(self.start);
        }
        let k = i64::try_from(k).ok()?;
        let span = self.period.checked_mul(k).ok()?;
        let zoned: Zoned = self.start.to_zoned(self.tz.clone());
        zoned.checked_add(span).ok().map(|z| z.timestamp())
    }

    /// The gap between the first two occurrences (None on overflow).
    fn step(&self) -> Option<SignedDuration> {
        Some(self.occurrence(1)?.duration_since(self.start))
    }

    /// Refuses a period below the scheduler's [`RESOLUTION`].
    fn check_resolution(&self, text: &str) -> Result<(), ScheduleError> {
        match self.step() {
            Some(d) if d >= RESOLUTION => Ok(()),
            _ => Err(syntax(
                text,
                format!(
                    "the period '{}' is shorter than the scheduler's resolution of {}s",
                    self.period_text,
                    RESOLUTION.as_secs()
                ),
            )),
        }
    }

    /// Index of the first occurrence at or after `t`, within the repetition limit.
    fn next_index(&self, t: Timestamp) -> Option<u64> {
        let k = if t <= self.start {
            0
        } else {
            self.first_index_reaching(t)
        };
        self.occurrence(k)?;
        match self.repetitions {
            Some(n) if k >= n => None,
            _ => Some(k),
        }
    }

    /// Index of the last occurrence at or before `t`, within the repetition limit.
    fn last_index(&self, t: Timestamp) -> Option<u64> {
        if t < self.start {
            return None;
        }
        let after = t.checked_add(SignedDuration::from_nanos(1)).ok()?;
        // Occurrence 0 is the start, which is at or before `t`: the first one past `t` is ≥ 1.
        let mut k = self.first_index_reaching(after).checked_sub(1)?;
        if let Some(n) = self.repetitions {
            k = k.min(n.checked_sub(1)?);
        }
        self.occurrence(k).map(|_| k)
    }

    /// Is occurrence `k` at or after `t`? An occurrence past the representable range counts as
    /// being after everything, so the answer is monotonic in `k`.
    fn reaches(&self, k: u64, t: Timestamp) -> bool {
        self.occurrence(k).is_none_or(|o| o >= t)
    }

    /// The smallest `k` whose occurrence is at or after `t` (`t` > start), or the smallest `k`
    /// past the representable range. An estimate from the first period, then an exponential
    /// bracket and a binary search: O(log) occurrence evaluations whatever the distance.
    fn first_index_reaching(&self, t: Timestamp) -> u64 {
        let first = self
            .step()
            .map_or(1, |d| d.as_nanos().max(1))
            .unsigned_abs();
        let gap = t
            .duration_since(self.start)
            .as_nanos()
            .max(0)
            .unsigned_abs();
        let estimate = u64::try_from(gap / first).unwrap_or(u64::MAX).max(1);
        // Invariant: !reaches(lo) and reaches(hi).
        let (mut lo, mut hi);
        if self.reaches(estimate, t) {
            hi = estimate;
            let mut width = 1u64;
            loop {
                let candidate = hi.saturating_sub(width);
                if candidate == 0 || !self.reaches(candidate, t) {
                    lo = candidate;
                    break;
                }
                hi = candidate;
                width = width.saturating_mul(2);
            }
        } else {
            lo = estimate;
            let mut width = 1u64;
            loop {
                let candidate = lo.saturating_add(width);
                if self.reaches(candidate, t) {
                    hi = candidate;
                    break;
                }
                lo = candidate;
                width = width.saturating_mul(2);
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.reaches(mid, t) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    fn to_chronos_string(&self, next: Option<Timestamp>, runs_done: u64) -> String {
        let rep = |left: Option<u64>| match left {
            None => "R".to_string(),
            Some(n) => format!("R{n}"),
        };
        let Some(next) = next else {
            let start = format_chronos_time(self.start, &self.tz);
            return format!(
                "{}/{start}/{}",
                rep(self.repetitions.map(|_| 0)),
                self.period_text
            );
        };
        let left = self.repetitions.map(|n| match self.next_index(next) {
            Some(k) if self.occurrence(k) == Some(next) => n - k,
            _ => n.saturating_sub(runs_done),
        });
        let start = format_chronos_time(next, &self.tz);
        format!("{}/{start}/{}", rep(left), self.period_text)
    }
}

/// Parses the start of an ISO schedule. With an explicit zone, the wall-clock fields are read in
/// that zone (Chronos `withZoneRetainFields`); otherwise the written offset (or UTC) applies.
fn parse_start(s: &str, tz: &TimeZone, zone_given: bool) -> Result<Timestamp, String> {
    let pieces = Pieces::parse(s).map_err(|e| format!("bad start '{s}': {e}"))?;
    let time = pieces.time().unwrap_or(jiff::civil::Time::midnight());
    let civil = pieces.date().to_datetime(time);
    let result = match (zone_given, pieces.offset()) {
        (false, Some(PiecesOffset::Zulu)) | (false, None) => TimeZone::UTC.to_timestamp(civil),
        (false, Some(PiecesOffset::Numeric(n))) => n.offset().to_timestamp(civil),
        (false, Some(_)) => TimeZone::UTC.to_timestamp(civil),
        (true, _) => tz.to_timestamp(civil),
    };
    result.map_err(|e| format!("bad start '{s}': {e}"))
}

impl CronSchedule {
    fn parse(text: &str, tz: TimeZone, tz_name: String) -> Result<Self, ScheduleError> {
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && !(5..=7).contains(&fields) {
            return Err(syntax(
                text,
                "a cron expression has 5 fields (6 with seconds first)",
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .build();
        let cron = parser
            .parse(text)
            .map_err(|e| syntax(text, e.to_string()))?;
        let sched = CronSchedule {
            expr: text.to_string(),
            tz,
            tz_name,
            cron: Box::new(cron),
        };
        if sched.next_at_or_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(syntax(text, "the expression never matches"));
        }
        Ok(sched)
    }

    fn next_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        // Cron works in whole seconds: round a fractional `t` up.
        let secs = if t.subsec_nanosecond() > 0 {
            t.as_second().checked_add(1)?
        } else {
            t.as_second()
        };
        let whole = Timestamp::from_second(secs).ok()?;
        let zoned = whole.to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&zoned, true).ok()?;
        Some(next.timestamp())
    }

    fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        // Cron works in whole seconds: round a fractional `t` down.
        let whole = Timestamp::from_second(t.as_second()).ok()?;
        let whole = if whole > t {
            whole.checked_sub(SignedDuration::from_secs(1)).ok()?
        } else {
            whole
        };
        let zoned = whole.to_zoned(self.tz.clone());
        let prev = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        Some(prev.timestamp())
    }
}

/// Serialized form of a [`Schedule`] (the resolved start, so re-reading never needs a clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ScheduleRepr {
    Iso {
        start: Timestamp,
        period: String,
        repetitions: Option<u64>,
        tz: String,
    },
    Cron {
        expr: String,
        tz: String,
    },
}

impl From<Schedule> for ScheduleRepr {
    fn from(s: Schedule) -> Self {
        match s {
            Schedule::Iso(i) => ScheduleRepr::Iso {
                start: i.start,
                period: i.period_text,
                repetitions: i.repetitions,
                tz: i.tz_name,
            },
            Schedule::Cron(c) => ScheduleRepr::Cron {
                expr: c.expr,
                tz: c.tz_name,
            },
        }
    }
}

impl TryFrom<ScheduleRepr> for Schedule {
    type Error = ScheduleError;
    fn try_from(r: ScheduleRepr) -> Result<Self, Self::Error> {
        match r {
            ScheduleRepr::Iso {
                start,
                period,
                repetitions,
                tz,
            } => {
                let text = match repetitions {
                    Some(n) => format!("R{n}/{start}/{period}"),
                    None => format!("R/{start}/{period}"),
                };
                // The stored start is a UTC instant; parse it without the zone override.
                let mut iso = IsoSchedule::parse(&text, TimeZone::UTC, String::new(), start)?;
                iso.tz = time_zone(Some(&tz))?;
                iso.tz_name = tz;
                Ok(Schedule::Iso(iso))
            }
            ScheduleRepr::Cron { expr, tz } => {
                Schedule::parse(&expr, Some(&tz), Timestamp::UNIX_EPOCH)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn parse(s: &str, tz: Option<&str>) -> Schedule {
        Schedule::parse(s, tz, ts("2026-01-01T00:00:00Z")).expect("schedule")
    }

    #[test]
    fn iso_occurrences_on_the_grid() {
        let s = parse("R/2026-11-23T10:00:00Z/PT10S", None);
        assert_eq!(
            s.next_at_or_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2026-11-23T10:00:00Z")),
            Some(ts("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2026-11-23T10:00:00.001Z")),
            Some(ts("2026-11-23T10:00:10Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-11-23T10:00:10Z")),
            Some(ts("2026-11-23T10:00:20Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2027-11-23T10:00:05Z")),
            Some(ts("2027-11-23T10:00:10Z"))
        );
    }

    #[test]
    fn repetitions_run_out() {
        let s = parse("R3/2026-01-01T00:00:00Z/PT1H", None);
        assert_eq!(
            s.next_at_or_after(ts("2026-01-01T02:00:00Z")),
            Some(ts("2026-01-01T02:00:00Z"))
        );
        assert_eq!(s.next_after(ts("2026-01-01T02:00:00Z")), None);
        assert_eq!(
            parse("R0/2026-01-01T00:00:00Z/PT1H", None).next_at_or_after(Timestamp::UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn empty_start_is_now() {
        let now = ts("2026-05-05T05:05:05.5Z");
        let s = Schedule::parse("R//PT1S", None, now).expect("schedule");
        assert_eq!(s.next_at_or_after(now), Some(now));
    }

    #[test]
    fn chronos_string_advances_start_and_counts_down() {
        let s = parse("R5/2026-01-01T00:00:00Z/PT1H", None);
        let next = Some(ts("2026-01-01T03:00:00Z"));
        assert_eq!(
            s.to_chronos_string(next, 3),
            "R2/2026-01-01T03:00:00.000Z/PT1H"
        );
        assert_eq!(
            s.to_chronos_string(None, 5),
            "R0/2026-01-01T00:00:00.000Z/PT1H"
        );
        let forever = parse("R/2026-01-01T00:00:00Z/P1D", None);
        assert_eq!(
            forever.to_chronos_string(next, 0),
            "R/2026-01-01T03:00:00.000Z/P1D"
        );
        let berlin = parse("R/2026-01-01T10:00:00Z/P1D", Some("Europe/Berlin"));
        assert_eq!(
            berlin.to_chronos_string(Some(ts("2026-01-02T09:00:00Z")), 0),
            "R/2026-01-02T10:00:00.000+01:00/P1D"
        );
    }

    #[test]
    fn time_zone_reinterprets_wall_clock_and_days_follow_dst() {
        // 10:00 Berlin wall clock, whatever offset was written.
        let s = parse("R/2026-03-27T10:00:00Z/P1D", Some("Europe/Berlin"));
        assert_eq!(
            s.next_at_or_after(Timestamp::UNIX_EPOCH),
            Some(ts("2026-03-27T09:00:00Z"))
        );
        // DST starts on 2026-03-29: P1D keeps 10:00 local, so 08:00Z.
        assert_eq!(
            s.next_after(ts("2026-03-28T09:00:00Z")),
            Some(ts("2026-03-29T08:00:00Z"))
        );
        let fixed = parse("R/2026-03-27T10:00:00Z/PT24H", Some("Europe/Berlin"));
        assert_eq!(
            fixed.next_after(ts("2026-03-28T09:00:00Z")),
            Some(ts("2026-03-29T09:00:00Z"))
        );
    }

    #[test]
    fn offsets_and_months() {
        let s = parse("R/2026-01-31T00:00:00+02:00/P1M", None);
        assert_eq!(
            s.next_at_or_after(Timestamp::UNIX_EPOCH),
            Some(ts("2026-01-30T22:00:00Z"))
        );
        let s = parse("R/2026-01-31T00:00:00Z/P1M", None);
        assert_eq!(
            s.next_after(ts("2026-01-31T00:00:00Z")),
            Some(ts("2026-02-28T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-02-28T00:00:00Z")),
            Some(ts("2026-03-31T00:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2030-06-01T00:00:00Z")),
            Some(ts("2030-06-30T00:00:00Z"))
        );
    }

    #[test]
    fn cron_in_utc_and_with_seconds() {
        let s = parse("*/5 * * * *", None);
        assert_eq!(
            s.next_at_or_after(ts("2026-01-01T00:01:00Z")),
            Some(ts("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2026-01-01T00:05:00Z")),
            Some(ts("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T00:05:00Z")),
            Some(ts("2026-01-01T00:10:00Z"))
        );
        let secs = parse("*/10 * * * * *", None);
        assert_eq!(
            secs.next_at_or_after(ts("2026-01-01T00:00:00.5Z")),
            Some(ts("2026-01-01T00:00:10Z"))
        );
        assert_eq!(secs.to_chronos_string(None, 0), "*/10 * * * * *");
    }

    #[test]
    fn cron_with_time_zone() {
        let s = parse("0 9 * * *", Some("America/New_York"));
        assert_eq!(
            s.next_at_or_after(ts("2026-01-10T00:00:00Z")),
            Some(ts("2026-01-10T14:00:00Z"))
        );
        assert_eq!(
            s.next_at_or_after(ts("2026-07-10T00:00:00Z")),
            Some(ts("2026-07-10T13:00:00Z"))
        );
    }

    #[test]
    fn garbage_is_rejected() {
        let now = Timestamp::UNIX_EPOCH;
        for bad in [
            "",
            "R/x/PT1S",
            "R/2026-01-01T00:00:00Z/1S",
            "R/2026-01-01T00:00:00Z/PT0S",
            "Rx/2026-01-01T00:00:00Z/PT1S",
            "R/1960-01-01T00:00:00Z/PT1S",
            "* * *",
            "61 * * * *",
            "every day",
        ] {
            assert!(Schedule::parse(bad, None, now).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Schedule::parse("* * * * *", Some("Nowhere/Land"), now),
            Err(ScheduleError::TimeZone("Nowhere/Land".into()))
        );
    }

    #[test]
    fn serde_round_trip() {
        for s in [
            parse("R5/2026-01-01T10:00:00Z/PT90S", Some("Europe/Berlin")),
            parse("0 9 * * 1-5", Some("Asia/Tokyo")),
        ] {
            let json = serde_json::to_string(&s).expect("serialize");
            let back: Schedule = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, s);
            let t = ts("2026-06-01T00:00:00Z");
            assert_eq!(back.next_at_or_after(t), s.next_at_or_after(t));
        }
    }
}
