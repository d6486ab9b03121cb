//! The reset guard: at most one reset per VM per grace window, across processes.
//!
//! Two things make it hold without any store of our own:
//! - before a reset, the VM's reset operations are read from Compute Engine's own record
//!   (`zoneOperations.list`); a recent or running one means grace (see `decide`);
//! - the reset's `requestId` is derived from the state that was read (instance id, last start,
//!   newest reset on record). Two processes that read the same state, because they handle
//!   the same message at once, send the same `requestId`, and Compute Engine carries out only
//!   the first. Once a reset is on record the state differs, and so does the next id.
//!
//! Within one process, checks of the same VM also take turns (a lock per VM), so a burst of
//! duplicates costs one Compute round trip each, not one reset each.

use shared::google::compute::{Instance, Operation};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decide::ResetRecord;

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
                .find_map(|t| t.as_deref().and_then(parse_time)),
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

/// RFC 3339 as Compute Engine writes it; also the forms hand-written tools produce: no
/// offset (read as UTC), a space for the `T`, or seconds since the epoch.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
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

/// One async lock per VM, so checks of the same VM in this process take turns.
#[derive(Default)]
pub struct VmLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl VmLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn compute_timestamps_parse() {
        let want = parse_time("2026-11-24T18:00:00Z").unwrap();
        for s in [
            "2026-11-24T10:00:00.000-08:00",
            "2026-11-24T18:00:00Z",
            "2026-11-24T18:00:00",
            "2026-11-24 18:00:00",
            "2026-11-24T18:00:00.000000",
            "1795543200",
            "1795543200000",
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
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
