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
//!
//! Also here, the fleet brake ([`brake`]): when many other VMs of the project were reset
//! just now, the cause is shared and one more reset will not fix it. Within one process,
//! checks of the same project take turns from reading the recent resets to Compute Engine
//! accepting theirs (`Service::brake_locks`): a burst of down VMs resets at most the brake's
//! count, not every VM whose check read the list before the first reset landed. Instances do
//! not share the turn: at worst, each resets up to the count. (Whom a check trusts at
//! all, the labelled VM and its own addresses, is `trust.rs`.)

use shared::google::compute::{Instance, InstanceRef, Operation};
use std::collections::BTreeSet;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
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
    /// The VM lost its label since it was first read: never reset.
    NotEnabled(super::trust::NotEnabled),
    /// The VM is not RUNNING: someone stopped it, or it is booting.
    NotRunning { status: String },
    /// Started or reset less than `window` ago, or a reset is still running: the WhatsApp
    /// containers need minutes after a boot, and resetting them again would loop.
    InGrace { cause: GraceCause, window: Duration },
    /// The fleet brake: many other VMs of the project were reset just now.
    Braked(Braked),
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

/// The Compute filter for this instance's reset operations inserted since `since` (by type
/// alone when the instance's id is unknown; [`newest_reset`] narrows it down by name then).
pub fn reset_filter(instance: &Instance, since: OffsetDateTime) -> String {
    let mut filter = resets_since(since);
    if !instance.id.is_empty() {
        filter.push_str(&format!(" AND targetId = \"{}\"", instance.id));
    }
    filter
}

/// `operationType = "reset" AND insertTime > "…"`: resets inserted since `since`, and some
/// hours before it. Compute writes `insertTime` in its own offset (`-08:00`); should a server
/// compare the text rather than the time, a bound half a day early still lets every recent
/// reset through (offsets reach -12:00). Times are read exactly here afterwards.
pub fn resets_since(since: OffsetDateTime) -> String {
    let bound = since - time::Duration::hours(12);
    let bound = bound.format(&Rfc3339).unwrap_or_default();
    format!("operationType = \"reset\" AND insertTime > \"{bound}\"")
}

/// Whether a page of operations, newest first, still reaches into the window that began at
/// `since` (its oldest operation is not older): only then is the next page worth reading.
pub fn page_reaches_into(page: &[Operation], since: OffsetDateTime) -> bool {
    page.last()
        .and_then(operation_time)
        .is_none_or(|t| t >= since)
}

/// When an operation was inserted: `insertTime`, else `startTime`, else `endTime`.
fn operation_time(op: &Operation) -> Option<OffsetDateTime> {
    [&op.insert_time, &op.start_time, &op.end_time]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(compute_time::parse))
}

/// The brake holds: `others` other VMs of the project were reset within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Braked {
    pub others: usize,
    pub window: Duration,
}

/// The fleet brake: `threshold` (not 0) or more other VMs than `vm` with a reset operation
/// inserted within `window` before `now`, whoever issued it. A reset with no time on record
/// counts as recent.
pub fn brake(
    vm: &InstanceRef,
    instance: &Instance,
    ops: &[Operation],
    now: OffsetDateTime,
    window: Duration,
    threshold: u32,
) -> Result<(), Braked> {
    if threshold == 0 {
        return Ok(());
    }
    let since = now - window;
    let own_link = format!("/zones/{}/instances/{}", vm.zone, vm.name);
    let others: BTreeSet<String> = ops
        .iter()
        .filter(|op| op.operation_type.eq_ignore_ascii_case("reset"))
        .filter(|op| operation_time(op).is_none_or(|t| t >= since))
        .filter_map(|op| {
            let link = op
                .target_link
                .as_deref()
                .map(|l| l.find("/projects/").map_or(l, |i| &l[i..]).to_string());
            let ours = link.as_deref().is_some_and(|l| l.ends_with(&own_link))
                || (!instance.id.is_empty() && op.target_id.as_deref() == Some(&instance.id));
            if ours {
                None
            } else {
                link.or_else(|| op.target_id.clone())
            }
        })
        .collect();
    if others.len() >= threshold as usize {
        Err(Braked {
            others: others.len(),
            window,
        })
    } else {
        Ok(())
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
            inserted: operation_time(op),
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
            Err(other) => panic!("{other:?}"),
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
            reset_filter(&i, NOW),
            "operationType = \"reset\" AND insertTime > \"2026-11-24T00:00:00Z\" AND targetId = \"123\""
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
        assert_eq!(
            reset_filter(&i, NOW),
            "operationType = \"reset\" AND insertTime > \"2026-11-24T00:00:00Z\""
        );
        let mut by_link = op("op-l", "reset", "", "2026-11-24T09:00:00Z", "DONE");
        by_link.target_id = None;
        by_link.target_link = Some("https://compute/projects/p/zones/z/instances/wa-1".into());
        assert_eq!(newest_reset(&i, &[by_link]).unwrap().operation, "op-l");
    }

    fn reset_of(vm: &str, zone: &str, id: &str, seconds_ago: i64) -> Operation {
        let at = NOW - time::Duration::seconds(seconds_ago);
        Operation {
            name: format!("op-{vm}-{seconds_ago}"),
            operation_type: "reset".into(),
            status: "DONE".into(),
            target_id: Some(id.into()),
            target_link: Some(format!(
                "https://www.googleapis.com/compute/v1/projects/p/zones/{zone}/instances/{vm}"
            )),
            insert_time: Some(at.format(&Rfc3339).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn brake_table() {
        let me = InstanceRef {
            project: "p".into(),
            zone: "z".into(),
            name: "wa-1".into(),
        };
        let i = instance();
        const W: Duration = Duration::from_secs(600);
        let five_others: Vec<Operation> = (0..5)
            .map(|n| reset_of(&format!("wa-{}", n + 2), "z", &format!("{}", 200 + n), 60))
            .collect();
        let mut same_vm_twice = five_others[..4].to_vec();
        same_vm_twice.push(reset_of("wa-2", "z", "200", 120));
        let mut own_resets = five_others[..4].to_vec();
        own_resets.extend((0..3).map(|n| reset_of("wa-1", "z", "123", 30 + n)));
        let mut one_too_old = five_others[..4].to_vec();
        one_too_old.push(reset_of("wa-9", "z", "299", 601));
        let mut other_zone_same_name = five_others[..4].to_vec();
        other_zone_same_name.push(reset_of("wa-1", "y", "555", 60));
        let mut not_resets = five_others.clone();
        for op in &mut not_resets[..2] {
            op.operation_type = "stop".into();
        }
        let mut no_time = five_others[..4].to_vec();
        let mut unknown = reset_of("wa-8", "z", "288", 0);
        unknown.insert_time = None;
        no_time.push(unknown);
        let cases: Vec<(&str, &[Operation], u32, Option<usize>)> = vec![
            ("five others", &five_others, 5, Some(5)),
            ("five others, threshold six", &five_others, 6, None),
            ("brake off", &five_others, 0, None),
            ("four others", &five_others[..4], 5, None),
            ("one VM reset twice counts once", &same_vm_twice, 5, None),
            ("its own resets do not count", &own_resets, 5, None),
            ("older than the window", &one_too_old, 5, None),
            ("same name, other zone", &other_zone_same_name, 5, Some(5)),
            ("other operations", &not_resets, 5, None),
            ("a reset without a time counts", &no_time, 5, Some(5)),
            ("nothing on record", &[], 1, None),
        ];
        for (name, ops, threshold, want) in cases {
            let got = brake(&me, &i, ops, NOW, W, threshold)
                .err()
                .map(|b| b.others);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn pages_are_read_while_they_reach_into_the_window() {
        let since = NOW - time::Duration::seconds(600);
        let page = |ages: &[i64]| -> Vec<Operation> {
            ages.iter()
                .map(|a| reset_of("wa-1", "z", "123", *a))
                .collect()
        };
        assert!(page_reaches_into(&page(&[10, 300, 599]), since));
        assert!(!page_reaches_into(&page(&[10, 300, 601]), since));
        assert!(page_reaches_into(&[], since));
        let mut unknown = page(&[10]);
        unknown[0].insert_time = None;
        assert!(page_reaches_into(&unknown, since));
    }
}
