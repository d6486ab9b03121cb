//! The 5-field unix-cron expressions of a job's `schedule`: parsed, and the next minute
//! they match.

use time::{Duration, OffsetDateTime};

/// A parsed unix-cron expression: the allowed values of each field as bit masks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month / day-of-week field starts with `*` (then a day must match
    /// both fields; otherwise either, as in Vixie cron).
    days_star: bool,
    weekdays_star: bool,
}

pub(super) const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
pub(super) const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One cron field: `*`, `n`, `a-b`, with an optional `/step`, comma-separated; `names`
/// (three letters, case-insensitive) stand for `first_name..`.
pub(super) fn parse_cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Option<u64> {
    let value = |s: &str| -> Option<u32> {
        if let Ok(n) = s.parse::<u32>() {
            return Some(n);
        }
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + first_name)
    };
    let mut mask = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|&s| s > 0)?)),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        };
        if lo > hi || lo < min || hi > max {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            mask |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Some(mask)
}

pub(super) fn parse_cron(schedule: &str) -> Option<Cron> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return None;
    };
    let mut weekdays = parse_cron_field(weekday, 0, 7, &WEEKDAYS, 0)?;
    if weekdays & (1 << 7) != 0 {
        weekdays |= 1;
    }
    Some(Cron {
        minutes: parse_cron_field(minute, 0, 59, &[], 0)?,
        hours: parse_cron_field(hour, 0, 23, &[], 0)?,
        days: parse_cron_field(day, 1, 31, &[], 0)?,
        months: parse_cron_field(month, 1, 12, &MONTHS, 1)?,
        weekdays,
        days_star: day.starts_with('*'),
        weekdays_star: weekday.starts_with('*'),
    })
}

impl Cron {
    pub(super) fn matches(&self, t: OffsetDateTime) -> bool {
        let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
        let day = bit(self.days, u32::from(t.day()));
        let weekday = bit(
            self.weekdays,
            u32::from(t.weekday().number_days_from_sunday()),
        );
        let day_ok = if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        };
        bit(self.minutes, u32::from(t.minute()))
            && bit(self.hours, u32::from(t.hour()))
            && bit(self.months, u32::from(u8::from(t.month())))
            && day_ok
    }

    /// The first matching minute after `from` (within about four years), in UTC.
    pub(super) fn next_after(&self, from: OffsetDateTime) -> Option<OffsetDateTime> {
        let from = from.to_offset(time::UtcOffset::UTC);
        let mut t = from.replace_nanosecond(0).ok()?.replace_second(0).ok()? + Duration::MINUTE;
        let end = t + Duration::days(4 * 366 + 1);
        while t < end {
            if !self.matches(t) {
                // Skip whole hours or days that cannot match.
                let day_may = {
                    let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
                    bit(self.months, u32::from(u8::from(t.month())))
                        && (bit(self.days, u32::from(t.day()))
                            || bit(
                                self.weekdays,
                                u32::from(t.weekday().number_days_from_sunday()),
                            ))
                };
                if !day_may {
                    t = t.replace_time(time::Time::MIDNIGHT) + Duration::DAY;
                } else if self.hours & (1 << t.hour()) == 0 {
                    t = t.replace_minute(0).ok()? + Duration::HOUR;
                } else {
                    t += Duration::MINUTE;
                }
                continue;
            }
            return Some(t);
        }
        None
    }
}
