//! What to do, as a pure function of what was observed. No I/O here: every rule is in the
//! table of tests below.

use std::time::Duration;
use time::OffsetDateTime;

/// What the health checks found, after all attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    Up(String),
    /// Down on every attempt; the reason of the last.
    Down(String),
    /// The number is not registered: a person must act.
    Unregistered(String),
}

/// What Compute Engine says about the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    pub status: String,
    pub last_start: Option<OffsetDateTime>,
    /// The newest reset operation on this VM, if any is on record.
    pub last_reset: Option<ResetRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRecord {
    pub operation: String,
    pub inserted: Option<OffsetDateTime>,
    pub done: bool,
}

/// The verdicts of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Grace,
    Skipped,
    Reset,
    Alert,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Grace => "grace",
            Verdict::Skipped => "skipped",
            Verdict::Reset => "reset",
            Verdict::Alert => "alert",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Final: no VM action.
    Final(Verdict, String),
    /// The client is down: read the VM, then call [`decide_vm`].
    InspectVm(String),
}

/// First step: from the client's state alone.
pub fn decide_client(client: &ClientState) -> Decision {
    match client {
        ClientState::Up(r) => Decision::Final(Verdict::Healthy, r.clone()),
        ClientState::Unregistered(r) => Decision::Final(
            Verdict::Alert,
            format!("{r}: the number must be registered by a person; a reset does not help"),
        ),
        ClientState::Down(r) => Decision::InspectVm(r.clone()),
    }
}

/// Second step: the client is down (`down`), the VM is `vm`. Reset only a RUNNING VM that
/// has not been started or reset within `grace` of `now`.
pub fn decide_vm(
    down: &str,
    vm: &VmState,
    now: OffsetDateTime,
    grace: Duration,
) -> (Verdict, String) {
    if vm.status != "RUNNING" {
        return (
            Verdict::Skipped,
            format!("{down}; VM status is {}, not RUNNING: no reset", vm.status),
        );
    }
    if let Some(r) = vm.last_reset.as_ref().filter(|_| !grace.is_zero()) {
        // A reset with no time on record counts as recent: one check in grace too many is
        // better than a second reset.
        let ago = match r.inserted {
            Some(at) => within(now, at, grace),
            None => Some(0),
        };
        if let Some(ago) = ago {
            let what = if r.done {
                format!("VM was reset {ago} s ago")
            } else {
                format!("reset {} is still in progress", r.operation)
            };
            return (
                Verdict::Grace,
                format!("{down}; {what} (grace {} s)", grace.as_secs()),
            );
        }
    }
    if let Some(at) = vm.last_start {
        if let Some(ago) = within(now, at, grace) {
            return (
                Verdict::Grace,
                format!(
                    "{down}; VM started {ago} s ago (grace {} s)",
                    grace.as_secs()
                ),
            );
        }
    }
    (Verdict::Reset, down.to_string())
}

/// Seconds since `at` when that is less than `grace` (a time in the future counts as now).
fn within(now: OffsetDateTime, at: OffsetDateTime, grace: Duration) -> Option<i64> {
    let ago = (now - at).whole_seconds().max(0);
    (ago < grace.as_secs() as i64).then_some(ago)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);
    const GRACE: Duration = Duration::from_secs(600);

    fn vm(status: &str, started_s_ago: Option<i64>, reset: Option<(i64, bool)>) -> VmState {
        VmState {
            status: status.into(),
            last_start: started_s_ago.map(|s| NOW - time::Duration::seconds(s)),
            last_reset: reset.map(|(s, done)| ResetRecord {
                operation: "operation-1".into(),
                inserted: Some(NOW - time::Duration::seconds(s)),
                done,
            }),
        }
    }

    #[test]
    fn client_table() {
        assert_eq!(
            decide_client(&ClientState::Up("ok".into())),
            Decision::Final(Verdict::Healthy, "ok".into())
        );
        assert!(matches!(
            decide_client(&ClientState::Unregistered("u".into())),
            Decision::Final(Verdict::Alert, _)
        ));
        assert_eq!(
            decide_client(&ClientState::Down("d".into())),
            Decision::InspectVm("d".into())
        );
    }

    #[test]
    fn vm_table() {
        let cases: Vec<(&str, VmState, Verdict)> = vec![
            (
                "running, started long ago",
                vm("RUNNING", Some(86_400), None),
                Verdict::Reset,
            ),
            (
                "running, no start time",
                vm("RUNNING", None, None),
                Verdict::Reset,
            ),
            (
                "started 30 s ago",
                vm("RUNNING", Some(30), None),
                Verdict::Grace,
            ),
            (
                "started 599 s ago",
                vm("RUNNING", Some(599), None),
                Verdict::Grace,
            ),
            (
                "started 600 s ago",
                vm("RUNNING", Some(600), None),
                Verdict::Reset,
            ),
            (
                "start time in the future",
                vm("RUNNING", Some(-60), None),
                Verdict::Grace,
            ),
            (
                "reset 60 s ago",
                vm("RUNNING", Some(86_400), Some((60, true))),
                Verdict::Grace,
            ),
            (
                "reset long ago",
                vm("RUNNING", Some(86_400), Some((3_600, true))),
                Verdict::Reset,
            ),
            (
                "reset in progress",
                vm("RUNNING", Some(86_400), Some((30, false))),
                Verdict::Grace,
            ),
            (
                "stuck reset record",
                vm("RUNNING", Some(86_400), Some((3_600, false))),
                Verdict::Reset,
            ),
            (
                "stopped",
                vm("TERMINATED", Some(86_400), None),
                Verdict::Skipped,
            ),
            ("staging", vm("STAGING", Some(5), None), Verdict::Skipped),
            (
                "provisioning",
                vm("PROVISIONING", None, None),
                Verdict::Skipped,
            ),
            ("stopping", vm("STOPPING", None, None), Verdict::Skipped),
            ("suspended", vm("SUSPENDED", None, None), Verdict::Skipped),
            ("repairing", vm("REPAIRING", None, None), Verdict::Skipped),
        ];
        for (name, state, want) in cases {
            let (got, reason) = decide_vm("login failed", &state, NOW, GRACE);
            assert_eq!(got, want, "{name}: {reason}");
            assert!(reason.starts_with("login failed"), "{name}: {reason}");
        }
    }

    #[test]
    fn a_reset_without_a_time_counts_as_recent() {
        let mut state = vm("RUNNING", Some(86_400), Some((0, true)));
        state.last_reset.as_mut().unwrap().inserted = None;
        assert_eq!(decide_vm("down", &state, NOW, GRACE).0, Verdict::Grace);
    }

    #[test]
    fn zero_grace_always_resets_a_running_vm() {
        let (v, _) = decide_vm(
            "down",
            &vm("RUNNING", Some(0), Some((0, true))),
            NOW,
            Duration::ZERO,
        );
        assert_eq!(v, Verdict::Reset);
    }
}
