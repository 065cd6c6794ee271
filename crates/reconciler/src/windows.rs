//! `spec.syncWindows`: when periodic refreshes may happen (ESO v2.9 semantics).
//!
//! A window opens at every firing of its `schedule` (a 5-field cron expression in UTC — minute,
//! hour, day of month, month, day of week, with `*`, `?`, lists, ranges, steps and month/day
//! names — or a descriptor: `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//! `@hourly`, `@every <duration>`) and stays open for `duration`. With `kind: allow` a periodic
//! refresh happens only while at least one window is open; with `kind: deny` never while one is
//! open. As in ESO, the windows gate only the *periodic* refresh: the first sync, a spec change
//! and the repair of a missing or edited Secret are not held back. A schedule that does not parse
//! is treated as a window that is never open (ESO logs and skips it too).
//!
//! Day of month and day of week combine as in cron (and robfig/cron, which ESO uses): when both
//! are restricted a day matches either; when one is `*` (or `?`) both must match.
//!
//! `@every D` in ESO is checked against the previous firing of a schedule without an anchor, so
//! its window is always open when `D <= duration` and never otherwise; this module keeps that.

use std::time::Duration;

use eso_api::{SyncWindowKind, SyncWindows};
use k8s_openapi::jiff::Timestamp;

/// How far back or forward a schedule is searched for a firing (robfig/cron gives up after five
/// years too; a schedule such as `0 0 30 2 *` never fires).
const SEARCH_YEARS: i64 = 5;

/// A parsed window schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression.
    Cron(Cron),
    /// `@every D`.
    Every(Duration),
}

/// A 5-field cron expression as bit sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    /// Day of month or day of week is `*`/`?`: both must match (else either).
    day_and: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Why a schedule does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sync window schedule {schedule:?}: {reason}")]
pub struct ScheduleError {
    schedule: String,
    reason: String,
}

fn value(s: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + base);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number or a name"))?;
    if v < min || v > max {
        return Err(format!("{v} is outside {min}-{max}"));
    }
    Ok(v)
}

/// One field: the bit set and whether it was a bare `*`/`?` (or with step 1).
fn field(expr: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step {s:?}"))?;
                if step == 0 {
                    return Err("step 0".to_string());
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (min, max, step.is_none_or(|s| s == 1))
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, min, max, names, base)?,
                value(b, min, max, names, base)?,
                false,
            )
        } else {
            let a = value(range, min, max, names, base)?;
            // `N/step` means `N-max/step`.
            (a, if step.is_some() { max } else { a }, false)
        };
        if start > end {
            return Err(format!("range {start}-{end} is backwards"));
        }
        star |= is_star;
        let step = step.unwrap_or(1);
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parse a window schedule.
    pub fn parse(s: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            schedule: s.to_string(),
            reason,
        };
        let s_trim = s.trim();
        if let Some(rest) = s_trim.strip_prefix("@every ") {
            let d = eso_api::parse_go_duration(rest.trim())
                .ok_or_else(|| err(format!("{rest:?} is not a Go duration")))?;
            // robfig/cron: at least one second, whole seconds.
            let d = Duration::from_secs(d.as_secs().max(1));
            return Ok(Schedule::Every(d));
        }
        let expanded = match s_trim {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(err(format!("unknown descriptor {other:?}")));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            )));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[], 0).map_err(err)?;
        let (hours, _) = field(fields[1], 0, 23, &[], 0).map_err(err)?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[], 0).map_err(err)?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS, 1).map_err(err)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS, 0).map_err(err)?;
        Ok(Schedule::Cron(Cron {
            minutes,
            hours,
            dom,
            months,
            dow,
            day_and: dom_star || dow_star,
        }))
    }
}

/// Civil date of a day number since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day number of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Cron {
    fn day_matches(&self, days: i64, dom: u32) -> bool {
        let weekday = (days + 4).rem_euclid(7) as u32;
        let d = self.dom & (1 << dom) != 0;
        let w = self.dow & (1 << weekday) != 0;
        if self.day_and { d && w } else { d || w }
    }

    /// The latest firing (in minutes since the epoch) at or before minute `m`, not before `floor`.
    fn prev(&self, mut m: i64, floor: i64) -> Option<i64> {
        while m >= floor {
            let days = m.div_euclid(1440);
            let (y, mon, dom) = civil(days);
            if self.months & (1 << mon) == 0 {
                m = days_from_civil(y, mon, 1) * 1440 - 1;
                continue;
            }
            if !self.day_matches(days, dom) {
                m = days * 1440 - 1;
                continue;
            }
            let hour = m.rem_euclid(1440) / 60;
            if self.hours & (1 << hour) == 0 {
                m = m.div_euclid(60) * 60 - 1;
                continue;
            }
            if self.minutes & (1 << m.rem_euclid(60)) == 0 {
                m -= 1;
                continue;
            }
            return Some(m);
        }
        None
    }

    /// The earliest firing (minutes since the epoch) at or after minute `m`, not after `ceil`.
    fn next(&self, mut m: i64, ceil: i64) -> Option<i64> {
        while m <= ceil {
            let days = m.div_euclid(1440);
            let (y, mon, dom) = civil(days);
            if self.months & (1 << mon) == 0 {
                let (ny, nm) = if mon == 12 { (y + 1, 1) } else { (y, mon + 1) };
                m = days_from_civil(ny, nm, 1) * 1440;
                continue;
            }
            if !self.day_matches(days, dom) {
                m = (days + 1) * 1440;
                continue;
            }
            let hour = m.rem_euclid(1440) / 60;
            if self.hours & (1 << hour) == 0 {
                m = (m.div_euclid(60) + 1) * 60;
                continue;
            }
            if self.minutes & (1 << m.rem_euclid(60)) == 0 {
                m += 1;
                continue;
            }
            return Some(m);
        }
        None
    }
}

const YEAR_MINUTES: i64 = 366 * 1440;

fn secs(t: Timestamp) -> i64 {
    t.as_second()
}

fn duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// One window: a schedule and how long it stays open.
#[derive(Clone, Debug)]
struct Window {
    schedule: Schedule,
    open_for: i64,
}

impl Window {
    /// When the occurrence open at `now` closes (seconds), or `None` if no occurrence is open.
    fn open_until(&self, now: i64) -> Option<i64> {
        match &self.schedule {
            Schedule::Every(d) => {
                (duration_secs(*d) <= self.open_for.saturating_add(1)).then_some(i64::MAX)
            }
            Schedule::Cron(c) => {
                let at = now.div_euclid(60);
                let back = (self.open_for / 60 + 1).min(SEARCH_YEARS * YEAR_MINUTES);
                let start = c.prev(at, at - back)? * 60;
                let end = start.saturating_add(self.open_for);
                (start <= now && now <= end).then_some(end)
            }
        }
    }

    /// The next opening strictly after `now` (seconds).
    fn next_open(&self, now: i64) -> Option<i64> {
        match &self.schedule {
            Schedule::Every(_) => None,
            Schedule::Cron(c) => {
                let from = now.div_euclid(60) + 1;
                c.next(from, from + SEARCH_YEARS * YEAR_MINUTES)
                    .map(|m| m * 60)
            }
        }
    }
}

fn parsed(sw: &SyncWindows) -> Vec<Window> {
    sw.windows
        .iter()
        .filter_map(|w| {
            let schedule = Schedule::parse(&w.schedule).ok()?;
            let open_for = eso_api::parse_go_duration(&w.duration)?;
            Some(Window {
                schedule,
                open_for: duration_secs(open_for),
            })
        })
        .collect()
}

/// Whether the windows let a periodic refresh happen at `now` (no windows: always).
pub fn allows(sw: Option<&SyncWindows>, now: Timestamp) -> bool {
    let Some(sw) = sw.filter(|s| !s.windows.is_empty()) else {
        return true;
    };
    let now = secs(now);
    let any_open = parsed(sw).iter().any(|w| w.open_until(now).is_some());
    match sw.kind {
        SyncWindowKind::Allow => any_open,
        SyncWindowKind::Deny => !any_open,
    }
}

/// While the windows hold refreshes back at `now`: how long until that may change (a window
/// opens for `allow`, the open windows close for `deny`). `None`: refreshes are allowed now, or
/// no change is ever coming (the caller then waits its normal interval).
pub fn blocked_for(sw: Option<&SyncWindows>, now: Timestamp) -> Option<Duration> {
    if allows(sw, now) {
        return None;
    }
    let sw = sw?;
    let n = secs(now);
    let windows = parsed(sw);
    let change = match sw.kind {
        SyncWindowKind::Allow => windows.iter().filter_map(|w| w.next_open(n)).min(),
        SyncWindowKind::Deny => windows
            .iter()
            .filter_map(|w| w.open_until(n))
            .max()
            .filter(|t| *t != i64::MAX)
            .map(|t| t + 1),
    }?;
    let after = u64::try_from(change.saturating_sub(n)).ok()?;
    Some(Duration::from_secs(after.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eso_api::SyncWindow;

    fn at(date: &str) -> Timestamp {
        date.parse().unwrap()
    }

    fn sw(kind: SyncWindowKind, windows: &[(&str, &str)]) -> SyncWindows {
        SyncWindows {
            kind,
            windows: windows
                .iter()
                .map(|(s, d)| SyncWindow {
                    schedule: s.to_string(),
                    duration: d.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn civil_round_trips() {
        for d in [-1000, 0, 59, 60, 365, 11_016, 20_000, 25_000] {
            let (y, m, dd) = civil(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn parses_what_the_crd_pattern_admits() {
        for ok in [
            "0 22 * * 1-5",
            "*/15 * * * *",
            "0 0 1 jan,JUL ?",
            "5/10 8-17 * * MON-FRI",
            "@daily",
            "@hourly",
            "@every 1h30m",
            "0 0 1,15 * 0",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "@often",
            "@every soon",
            "*/0 * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekday_evening_allow_window() {
        // Every weekday 22:00 UTC for 8 hours.
        let w = sw(SyncWindowKind::Allow, &[("0 22 * * 1-5", "8h")]);
        // Wednesday 2026-12-02
        assert!(!allows(Some(&w), at("2026-12-02T21:59:59Z")));
        assert!(allows(Some(&w), at("2026-12-02T22:00:00Z")));
        assert!(allows(Some(&w), at("2026-12-03T05:59:00Z")));
        assert!(allows(Some(&w), at("2026-12-03T06:00:00Z")));
        assert!(!allows(Some(&w), at("2026-12-03T06:00:01Z")));
        // Friday night's window runs into Saturday; none opens on Saturday.
        assert!(allows(Some(&w), at("2026-12-05T03:00:00Z")));
        assert!(!allows(Some(&w), at("2026-12-05T23:00:00Z")));
        // Blocked at 12:00 Wednesday: opens in 10 hours.
        assert_eq!(
            blocked_for(Some(&w), at("2026-12-02T12:00:00Z")),
            Some(Duration::from_secs(10 * 3600))
        );
        // Saturday 12:00: next opening Monday 22:00.
        assert_eq!(
            blocked_for(Some(&w), at("2026-12-05T12:00:00Z")),
            Some(Duration::from_secs((2 * 24 + 10) * 3600))
        );
        assert_eq!(blocked_for(Some(&w), at("2026-12-02T23:00:00Z")), None);
    }

    #[test]
    fn deny_window_and_its_end() {
        let w = sw(
            SyncWindowKind::Deny,
            &[("@daily", "1h"), ("30 0 * * *", "1h")],
        );
        assert!(allows(Some(&w), at("2026-12-02T23:59:00Z")));
        assert!(!allows(Some(&w), at("2026-12-02T00:10:00Z")));
        // Both windows open at 00:40: the later end (01:30) counts.
        assert_eq!(
            blocked_for(Some(&w), at("2026-12-02T00:40:00Z")),
            Some(Duration::from_secs(50 * 60 + 1))
        );
        assert!(!allows(Some(&w), at("2026-12-02T01:30:00Z")));
        assert!(allows(Some(&w), at("2026-12-02T01:30:01Z")));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: the 1st OR a Sunday.
        let w = sw(SyncWindowKind::Allow, &[("0 0 1 * 0", "1h")]);
        assert!(allows(Some(&w), at("2026-12-01T00:30:00Z"))); // Tuesday the 1st
        assert!(allows(Some(&w), at("2026-12-06T00:30:00Z"))); // Sunday
        assert!(!allows(Some(&w), at("2026-12-02T00:30:00Z")));
        // Day of week `*`: only the 1st.
        let w = sw(SyncWindowKind::Allow, &[("0 0 1 * *", "1h")]);
        assert!(!allows(Some(&w), at("2026-12-06T00:30:00Z")));
    }

    #[test]
    fn every_and_unparseable() {
        let open = sw(SyncWindowKind::Allow, &[("@every 1h", "2h")]);
        assert!(allows(Some(&open), at("2026-12-02T12:34:56Z")));
        let closed = sw(SyncWindowKind::Allow, &[("@every 3h", "2h")]);
        assert!(!allows(Some(&closed), at("2026-12-02T12:34:56Z")));
        assert_eq!(blocked_for(Some(&closed), at("2026-12-02T12:00:00Z")), None);
        // Unparseable schedules are never open: allow blocks, deny allows.
        assert!(!allows(
            Some(&sw(SyncWindowKind::Allow, &[("nonsense", "1h")])),
            at("2026-12-02T12:00:00Z")
        ));
        assert!(allows(
            Some(&sw(SyncWindowKind::Deny, &[("nonsense", "1h")])),
            at("2026-12-02T12:00:00Z")
        ));
        assert!(allows(None, at("2026-12-02T12:00:00Z")));
    }

    #[test]
    fn never_firing_schedule_terminates() {
        let w = sw(SyncWindowKind::Allow, &[("0 0 30 2 *", "1h")]);
        assert!(!allows(Some(&w), at("2026-12-02T12:00:00Z")));
        assert_eq!(blocked_for(Some(&w), at("2026-12-02T12:00:00Z")), None);
        let long = sw(SyncWindowKind::Allow, &[("0 0 30 2 *", "100000h")]);
        assert!(!allows(Some(&long), at("2026-12-02T12:00:00Z")));
    }
}
