//! The answer to a fleet message (`cloud-api-contract.md`, "Fleet messages"): the worst
//! verdict of the entries that were checked, the counts, and one outcome per entry (as for a
//! single number, or `unknown` with the `error` that kept it from being checked).

use serde::Serialize;

use super::outcome::Outcome;
use crate::verdict::Verdict;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetOutcome {
    /// The worst of the checked entries: `alert`, `repaired`, `warning`, `healthy`.
    pub verdict: Verdict,
    /// One line: how many numbers, and how many of each verdict.
    pub reason: String,
    pub counts: Counts,
    /// One per entry of `numbers`, in order.
    pub outcomes: Vec<EntryOutcome>,
    /// When the fleet's check started (RFC 3339, UTC).
    pub checked_at: String,
    /// How long the fleet's check took, mails and events not included.
    pub duration_ms: u64,
}

/// How many entries ended in each verdict (every key, zeros included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub healthy: usize,
    pub warning: usize,
    pub repaired: usize,
    pub alert: usize,
    pub unknown: usize,
}

/// One entry's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EntryOutcome {
    Checked(Outcome),
    Unknown(Unknown),
}

/// An entry that could not be checked: its reads still failed after the retries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unknown {
    pub phone_number_id: String,
    pub waba_id: String,
    pub name: String,
    /// Always `unknown`.
    pub verdict: &'static str,
    pub error: String,
    pub checked_at: String,
}

impl FleetOutcome {
    /// `None` when no entry could be checked (the message is answered 503).
    pub fn new(outcomes: Vec<EntryOutcome>, checked_at: String, duration_ms: u64) -> Option<Self> {
        let mut counts = Counts::default();
        let mut worst: Option<Verdict> = None;
        for o in &outcomes {
            let v = match o {
                EntryOutcome::Unknown(_) => {
                    counts.unknown += 1;
                    continue;
                }
                EntryOutcome::Checked(o) => o.verdict,
            };
            match v {
                Verdict::Alert => counts.alert += 1,
                Verdict::Repaired => counts.repaired += 1,
                Verdict::Warning => counts.warning += 1,
                _ => counts.healthy += 1,
            }
            if worst.is_none_or(|w| rank(v) > rank(w)) {
                worst = Some(v);
            }
        }
        let verdict = worst?;
        let c = counts;
        let reason = format!(
            "{} numbers: {} alert, {} repaired, {} warning, {} healthy, {} unknown",
            outcomes.len(),
            c.alert,
            c.repaired,
            c.warning,
            c.healthy,
            c.unknown
        );
        Some(FleetOutcome {
            verdict,
            reason,
            counts,
            outcomes,
            checked_at,
            duration_ms,
        })
    }

    /// `check` exits 1 unless every checked entry is healthy.
    pub fn wants_attention(&self) -> bool {
        self.verdict != Verdict::Healthy
    }
}

/// The order of severity of the contract: alert > repaired > warning > healthy.
fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Alert => 3,
        Verdict::Repaired => 2,
        Verdict::Warning => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Conclusion, Details};

    fn checked(v: Verdict) -> EntryOutcome {
        let details = crate::cloud::Details {
            phone_number_id: "1".into(),
            waba_id: "9".into(),
            name: "n".into(),
            findings: vec![],
            repairs: vec![],
            display_phone_number: None,
            quality_rating: None,
            platform_type: None,
            dry_run: false,
        };
        let c = Conclusion {
            verdict: v,
            reason: "r".into(),
            details: Details::Cloud(details),
        };
        EntryOutcome::Checked(Outcome::new(c, Default::default(), "t".into(), 1))
    }

    fn unknown() -> EntryOutcome {
        EntryOutcome::Unknown(Unknown {
            phone_number_id: "2".into(),
            waba_id: "9".into(),
            name: "m".into(),
            verdict: "unknown",
            error: "still failing".into(),
            checked_at: "t".into(),
        })
    }

    #[test]
    fn the_worst_checked_verdict_wins_and_unknown_only_counts() {
        use Verdict::*;
        let cases: Vec<(Vec<EntryOutcome>, Option<Verdict>)> = vec![
            (vec![checked(Healthy), unknown()], Some(Healthy)),
            (vec![checked(Warning), checked(Healthy)], Some(Warning)),
            (vec![checked(Warning), checked(Repaired)], Some(Repaired)),
            (
                vec![checked(Repaired), checked(Alert), unknown()],
                Some(Alert),
            ),
            (vec![unknown(), unknown()], None),
        ];
        for (outcomes, want) in cases {
            let f = FleetOutcome::new(outcomes, "t".into(), 1);
            assert_eq!(f.as_ref().map(|f| f.verdict), want);
        }
        let f = FleetOutcome::new(
            vec![checked(Alert), unknown(), checked(Healthy)],
            "t".into(),
            1,
        )
        .unwrap();
        assert_eq!(
            f.counts,
            Counts {
                healthy: 1,
                warning: 0,
                repaired: 0,
                alert: 1,
                unknown: 1
            }
        );
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["outcomes"][1]["verdict"], "unknown");
        assert_eq!(v["outcomes"][1]["error"], "still failing");
        assert_eq!(v["counts"]["unknown"], 1);
        assert!(f.wants_attention());
    }
}
