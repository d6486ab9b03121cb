//! Compute Engine's timestamps (an instance's last start, an operation's times) as times.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 as Compute Engine writes it; also the forms hand-written tools produce: no
/// offset (read as UTC), a space for the `T`, or seconds (or milliseconds) since the epoch.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let with_t = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&with_t, &Rfc3339) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(&format!("{with_t}Z"), &Rfc3339) {
        return Some(t);
    }
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .and_then(|n| {
            let secs = if n > 1e12 { n / 1000.0 } else { n };
            OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_timestamps_parse() {
        let want = parse("2026-11-24T18:00:00Z").unwrap();
        for s in [
            "2026-11-24T10:00:00.000-08:00",
            "2026-11-24T18:00:00Z",
            "2026-11-24T18:00:00",
            "2026-11-24 18:00:00",
            "2026-11-24T18:00:00.000000",
            "1795543200",
            "1795543200000",
        ] {
            assert_eq!(parse(s), Some(want), "{s}");
        }
        assert!(parse("yesterday").is_none());
        assert!(parse("").is_none());
    }
}
