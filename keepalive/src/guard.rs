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

/// The Compute filter for this instance's reset operations.
pub fn reset_filter(instance: &Instance) -> String {
    format!(
        "operationType = \"reset\" AND targetId = \"{}\"",
        instance.id
    )
}

/// The newest reset of `instance` among `ops` (filtered again here: a filter the server
/// ignored must not make another VM's reset count).
pub fn newest_reset(instance: &Instance, ops: &[Operation]) -> Option<ResetRecord> {
    let suffix = format!("/instances/{}", instance.name);
    ops.iter()
        .filter(|op| op.operation_type == "reset")
        .filter(|op| match (&op.target_id, &op.target_link) {
            (Some(id), _) if !instance.id.is_empty() => *id == instance.id,
            (_, Some(link)) => link.ends_with(&suffix),
            _ => false,
        })
        .map(|op| ResetRecord {
            operation: op.name.clone(),
            inserted: op.insert_time.as_deref().and_then(parse_time),
            done: op.is_done(),
        })
        .max_by_key(|r| r.inserted)
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

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
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
        assert!(parse_time("2026-11-24T10:00:00.123-08:00").is_some());
        assert!(parse_time("2026-11-24T10:00:00Z").is_some());
        assert!(parse_time("yesterday").is_none());
    }
}
