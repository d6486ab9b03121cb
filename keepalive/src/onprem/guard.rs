//! The reset guard's rules, pure: at most one reset per VM per grace window, across processes.
//!
//! Two things make it hold without any store of our own (`act.rs` does the reading):
//! - before a reset, the VM's reset operations are read from Compute Engine's own record
//!   (`zoneOperations.list`); a recent or running one withholds the reset ([`may_reset`]);
//! - the reset's `requestId` is derived from the state that was read (instance id, last start,
//!   newest reset on record). Two processes that read the same state, because they handle
//!   the same message at once, send the same `requestId`, and Compute Engine carries out only
//!   the first. Once a reset is on record the state differs, and so does the next id.
//!
//! Within one process, checks of the same VM also take turns (`Service::vm_locks`), so a
//! burst of duplicates costs one Compute round trip each, not one reset each.

use shared::google::compute::{Instance, Operation};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

use super::compute_time;

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

/// Why the guard withholds a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The VM is not RUNNING: someone stopped it, or it is booting.
    NotRunning { status: String },
    /// Started or reset less than `window` ago, or a reset is still running: the WhatsApp
    /// containers need minutes after a boot, and resetting them again would loop.
    InGrace { cause: GraceCause, window: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraceCause {
    /// The newest reset on record was `seconds` ago.
    ResetAgo { seconds: i64 },
    /// The newest reset on record has not finished.
    ResetInProgress { operation: String },
    /// The VM started `seconds` ago.
    StartedAgo { seconds: i64 },
}

/// Whether the VM in `vm` may be reset at `now`: only a RUNNING VM that has not been started
/// or reset within `grace`.
pub fn may_reset(vm: &VmState, now: OffsetDateTime, grace: Duration) -> Result<(), Withheld> {
    if vm.status != "RUNNING" {
        return Err(Withheld::NotRunning {
            status: vm.status.clone(),
        });
    }
    let in_grace = |cause| Withheld::InGrace {
        cause,
        window: grace,
    };
    if let Some(r) = vm.last_reset.as_ref().filter(|_| !grace.is_zero()) {
        // A reset with no time on record counts as recent: one check in grace too many is
        // better than a second reset.
        let ago = match r.inserted {
            Some(at) => within(now, at, grace),
            None => Some(0),
        };
        if let Some(seconds) = ago {
            return Err(in_grace(if r.done {
                GraceCause::ResetAgo { seconds }
            } else {
                GraceCause::ResetInProgress {
                    operation: r.operation.clone(),
                }
            }));
        }
    }
    if let Some(seconds) = vm.last_start.and_then(|at| within(now, at, grace)) {
        return Err(in_grace(GraceCause::StartedAgo { seconds }));
    }
    Ok(())
}

/// Seconds since `at` when that is less than `grace` (a time in the future counts as now).
fn within(now: OffsetDateTime, at: OffsetDateTime, grace: Duration) -> Option<i64> {
    let ago = (now - at).whole_seconds().max(0);
    (ago < grace.as_secs() as i64).then_some(ago)
}

/// Namespace of the derived request ids (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_0b52_94a1_4c0e_b3d4_5e8f_a2c7_91d3);

/// The Compute filter for this instance's reset operations (by type alone when the
/// instance's id is unknown; [`newest_reset`] narrows it down by name then).
pub fn reset_filter(instance: &Instance) -> String {
    if instance.id.is_empty() {
        "operationType = \"reset\"".to_string()
    } else {
        format!(
            "operationType = \"reset\" AND targetId = \"{}\"",
            instance.id
        )
    }
}

/// The newest reset of `instance` among `ops`, filtered again here: a filter the server
/// ignored must not make another VM's reset count. An operation that names no target at all
/// is taken as the server's filter left it. Its time is `insertTime`, else `startTime`, else
/// `endTime`; a reset with none of them counts as recent (better one check in grace too many
/// than a second reset).
pub fn newest_reset(instance: &Instance, ops: &[Operation]) -> Option<ResetRecord> {
    let suffix = format!("/instances/{}", instance.name);
    let ours = |op: &&Operation| {
        let by_id = op
            .target_id
            .as_deref()
            .is_some_and(|id| !instance.id.is_empty() && id == instance.id);
        let by_link = op
            .target_link
            .as_deref()
            .is_some_and(|l| l.ends_with(&suffix));
        let anonymous = op.target_id.is_none() && op.target_link.is_none();
        by_id || by_link || anonymous
    };
    ops.iter()
        .filter(|op| {
            op.operation_type.is_empty() || op.operation_type.eq_ignore_ascii_case("reset")
        })
        .filter(ours)
        .map(|op| ResetRecord {
            operation: op.name.clone(),
            inserted: [&op.insert_time, &op.start_time, &op.end_time]
                .into_iter()
                .find_map(|t| t.as_deref().and_then(compute_time::parse)),
            done: op.is_done(),
        })
        // Unknown times sort last, i.e. newest.
        .max_by_key(|r| r.inserted.map_or(i128::MAX, |t| t.unix_timestamp_nanos()))
}

/// The `requestId` for resetting `instance` in the state that was read.
pub fn request_id(
    project: &str,
    zone: &str,
    instance: &Instance,
    newest: Option<&ResetRecord>,
) -> Uuid {
    let key = format!(
        "reset|{project}|{zone}|{}|{}|{}|{}",
        instance.name,
        instance.id,
        instance.last_start_timestamp.as_deref().unwrap_or("-"),
        newest.map(|r| r.operation.as_str()).unwrap_or("-"),
    );
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
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

    /// `None`: the reset may go ahead.
    fn withheld(state: &VmState) -> Option<&'static str> {
        match may_reset(state, NOW, GRACE) {
            Ok(()) => None,
            Err(Withheld::NotRunning { .. }) => Some("not running"),
            Err(Withheld::InGrace { .. }) => Some("grace"),
        }
    }

    #[test]
    fn guard_table() {
        let cases: Vec<(&str, VmState, Option<&str>)> = vec![
            (
                "running, started long ago",
                vm("RUNNING", Some(86_400), None),
                None,
            ),
            ("running, no start time", vm("RUNNING", None, None), None),
            (
                "started 30 s ago",
                vm("RUNNING", Some(30), None),
                Some("grace"),
            ),
            (
                "started 599 s ago",
                vm("RUNNING", Some(599), None),
                Some("grace"),
            ),
            ("started 600 s ago", vm("RUNNING", Some(600), None), None),
            (
                "start time in the future",
                vm("RUNNING", Some(-60), None),
                Some("grace"),
            ),
            (
                "reset 60 s ago",
                vm("RUNNING", Some(86_400), Some((60, true))),
                Some("grace"),
            ),
            (
                "reset long ago",
                vm("RUNNING", Some(86_400), Some((3_600, true))),
                None,
            ),
            (
                "reset in progress",
                vm("RUNNING", Some(86_400), Some((30, false))),
                Some("grace"),
            ),
            (
                "stuck reset record",
                vm("RUNNING", Some(86_400), Some((3_600, false))),
                None,
            ),
            (
                "stopped",
                vm("TERMINATED", Some(86_400), None),
                Some("not running"),
            ),
            ("staging", vm("STAGING", Some(5), None), Some("not running")),
            (
                "provisioning",
                vm("PROVISIONING", None, None),
                Some("not running"),
            ),
            ("stopping", vm("STOPPING", None, None), Some("not running")),
            (
                "suspended",
                vm("SUSPENDED", None, None),
                Some("not running"),
            ),
            (
                "repairing",
                vm("REPAIRING", None, None),
                Some("not running"),
            ),
        ];
        for (name, state, want) in cases {
            assert_eq!(withheld(&state), want, "{name}");
        }
    }

    #[test]
    fn grace_names_its_cause() {
        let cause = |state: VmState| match may_reset(&state, NOW, GRACE) {
            Err(Withheld::InGrace { cause, window }) => {
                assert_eq!(window, GRACE);
                cause
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cause(vm("RUNNING", Some(30), None)),
            GraceCause::StartedAgo { seconds: 30 }
        );
        assert_eq!(
            cause(vm("RUNNING", Some(86_400), Some((60, true)))),
            GraceCause::ResetAgo { seconds: 60 }
        );
        assert_eq!(
            cause(vm("RUNNING", Some(86_400), Some((30, false)))),
            GraceCause::ResetInProgress {
                operation: "operation-1".into()
            }
        );
    }

    #[test]
    fn a_reset_without_a_time_counts_as_recent() {
        let mut state = vm("RUNNING", Some(86_400), Some((0, true)));
        state.last_reset.as_mut().unwrap().inserted = None;
        assert_eq!(withheld(&state), Some("grace"));
    }

    #[test]
    fn zero_grace_always_allows_a_reset_of_a_running_vm() {
        let state = vm("RUNNING", Some(0), Some((0, true)));
        assert_eq!(may_reset(&state, NOW, Duration::ZERO), Ok(()));
    }

    fn instance() -> Instance {
        Instance {
            id: "123".into(),
            name: "wa-1".into(),
            status: "RUNNING".into(),
            last_start_timestamp: Some("2026-11-24T10:00:00.000-08:00".into()),
            self_link: None,
            ..Default::default()
        }
    }

    fn op(name: &str, ty: &str, target: &str, at: &str, status: &str) -> Operation {
        Operation {
            name: name.into(),
            operation_type: ty.into(),
            status: status.into(),
            target_id: Some(target.into()),
            insert_time: Some(at.into()),
            ..Default::default()
        }
    }

    #[test]
    fn same_state_same_id_new_state_new_id() {
        let i = instance();
        let a = request_id("p", "z", &i, None);
        assert_eq!(a, request_id("p", "z", &i, None));
        assert!(!a.is_nil());
        let r = ResetRecord {
            operation: "operation-9".into(),
            inserted: None,
            done: true,
        };
        assert_ne!(a, request_id("p", "z", &i, Some(&r)));
        let mut restarted = i.clone();
        restarted.last_start_timestamp = Some("2026-11-24T11:00:00.000-08:00".into());
        assert_ne!(a, request_id("p", "z", &restarted, None));
        assert_ne!(a, request_id("p", "other-zone", &i, None));
    }

    #[test]
    fn newest_reset_ignores_other_vms_and_operations() {
        let i = instance();
        let ops = vec![
            op("op-old", "reset", "123", "2026-11-24T08:00:00Z", "DONE"),
            op("op-new", "reset", "123", "2026-11-24T09:00:00Z", "DONE"),
            op(
                "op-other-vm",
                "reset",
                "999",
                "2026-11-24T11:00:00Z",
                "DONE",
            ),
            op("op-start", "start", "123", "2026-11-24T11:30:00Z", "DONE"),
        ];
        let r = newest_reset(&i, &ops).unwrap();
        assert_eq!(r.operation, "op-new");
        assert!(newest_reset(&i, &ops[2..]).is_none());
        assert_eq!(
            reset_filter(&i),
            "operationType = \"reset\" AND targetId = \"123\""
        );
    }

    #[test]
    fn reset_times_fall_back_and_unknown_counts_as_newest() {
        let i = instance();
        let mut no_time = op("op-x", "reset", "123", "", "DONE");
        no_time.insert_time = None;
        let mut start_only = op("op-s", "reset", "123", "", "DONE");
        start_only.insert_time = None;
        start_only.start_time = Some("2026-11-24T09:00:00Z".into());
        let r = newest_reset(&i, &[start_only.clone()]).unwrap();
        assert!(r.inserted.is_some());
        let r = newest_reset(&i, &[start_only, no_time]).unwrap();
        assert_eq!(r.operation, "op-x");
        assert!(r.inserted.is_none());
    }

    #[test]
    fn filter_without_an_instance_id() {
        let mut i = instance();
        i.id.clear();
        assert_eq!(reset_filter(&i), "operationType = \"reset\"");
        let mut by_link = op("op-l", "reset", "", "2026-11-24T09:00:00Z", "DONE");
        by_link.target_id = None;
        by_link.target_link = Some("https://compute/projects/p/zones/z/instances/wa-1".into());
        assert_eq!(newest_reset(&i, &[by_link]).unwrap().operation, "op-l");
    }
}
