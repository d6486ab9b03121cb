//! The list filters the fake understands: exactly those the keepalive sends
//! (`keepalive/src/onprem/guard.rs`, `resets_since` and `reset_filter`):
//!
//! - `operationType = "reset" AND insertTime > "<RFC 3339 time>"` (the project's resets, in
//!   `aggregated/operations`, for the fleet brake);
//! - the same `AND targetId = "<instance id>"` (one VM's resets, in a zone's list).
//!
//! Any other filter is answered 400 `invalid`, as the real API answers one it cannot parse:
//! a change to what the product sends then fails a test instead of passing unfiltered.

use time::OffsetDateTime;

use super::operations::Operation;
use crate::server::parse_rfc3339;

/// A parsed reset filter.
#[derive(Debug, PartialEq)]
pub(super) struct ResetFilter {
    since: OffsetDateTime,
    target_id: Option<String>,
}

impl ResetFilter {
    /// The filter, if it is one the keepalive sends.
    pub(super) fn parse(filter: &str) -> Option<ResetFilter> {
        let rest = filter.strip_prefix(r#"operationType = "reset" AND insertTime > ""#)?;
        let (since, rest) = rest.split_once('"')?;
        let since = parse_rfc3339(since)?;
        let target_id = match rest {
            "" => None,
            _ => {
                let id = rest
                    .strip_prefix(r#" AND targetId = ""#)?
                    .strip_suffix('"')?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(id.to_owned())
            }
        };
        Some(ResetFilter { since, target_id })
    }

    /// Whether `op` is a reset inserted after the bound (compared as times, not as text), of
    /// the instance when one is named.
    pub(super) fn matches(&self, op: &Operation) -> bool {
        op.op_type == "reset"
            && op.insert_time > self.since
            && self
                .target_id
                .as_ref()
                .is_none_or(|id| *id == op.target_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keepalives_filters_parse() {
        let since = parse_rfc3339("2026-11-24T00:00:00Z").unwrap();
        assert_eq!(
            ResetFilter::parse(
                r#"operationType = "reset" AND insertTime > "2026-11-24T00:00:00Z""#
            ),
            Some(ResetFilter {
                since,
                target_id: None
            })
        );
        assert_eq!(
            ResetFilter::parse(
                r#"operationType = "reset" AND insertTime > "2026-11-24T00:00:00Z" AND targetId = "123""#
            ),
            Some(ResetFilter {
                since,
                target_id: Some("123".into())
            })
        );
        for other in [
            "",
            r#"operationType = "reset""#,
            r#"operationType = "reset" AND targetId = "123""#,
            r#"operationType = "stop" AND insertTime > "2026-11-24T00:00:00Z""#,
            r#"operationType="reset" AND insertTime > "2026-11-24T00:00:00Z""#,
            r#"operationType = "reset" AND insertTime > "yesterday""#,
            r#"operationType = "reset" AND insertTime > "2026-11-24T00:00:00Z" AND targetId = """#,
            r#"operationType = "reset" AND insertTime > "2026-11-24T00:00:00Z" AND targetId = "12" OR true"#,
            r#"operationType = "reset" AND insertTime > "2026-11-24T00:00:00Z" AND status = "DONE""#,
        ] {
            assert_eq!(ResetFilter::parse(other), None, "{other}");
        }
    }
}
