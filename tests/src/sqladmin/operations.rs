//! Operations: created by every change, advanced by polls, and their JSON.

use super::*;

impl SqlState {
    pub(super) fn op_json(&self, op: &Operation) -> Value {
        let mut v = json!({
            "kind": "sql#operation",
            "name": op.name,
            "status": op.status,
            "operationType": op.op_type,
            "targetId": op.instance,
            "targetProject": op.project,
            "targetLink": format!("{SQL_LINK_PREFIX}/projects/{}/instances/{}", op.project, op.instance),
            "selfLink": format!("{SQL_LINK_PREFIX}/projects/{}/operations/{}", op.project, op.name),
            "user": FAKE_CLIENT_EMAIL,
            "insertTime": rfc3339_utc(op.insert_time),
        });
        if let Some(t) = op.start_time {
            v["startTime"] = json!(rfc3339_utc(t));
        }
        if let Some(t) = op.end_time {
            v["endTime"] = json!(rfc3339_utc(t));
        }
        if let Some(Value::Object(extra)) = self.op_extra.get(&op.name) {
            for (k, val) in extra {
                v[k] = val.clone();
            }
        }
        if op.status == "DONE" {
            if let Some((code, message)) = &op.error {
                v["error"] = json!({
                    "kind": "sql#operationErrors",
                    "errors": [{"kind": "sql#operationError", "code": code, "message": message}],
                });
            }
        }
        v
    }

    pub(super) fn new_operation(
        &mut self,
        project: &str,
        instance: &str,
        op_type: &str,
        polls: u32,
        error: Option<(String, String)>,
    ) -> usize {
        let t = now();
        let mut op = Operation {
            name: uuid::Uuid::new_v4().to_string(),
            project: project.into(),
            instance: instance.into(),
            op_type: op_type.into(),
            status: "PENDING".into(),
            insert_time: t,
            start_time: None,
            end_time: None,
            polls_left: polls,
            error,
        };
        if polls == 0 {
            op.status = "DONE".into();
            op.start_time = Some(t);
            op.end_time = Some(t);
        }
        self.operations.push(op);
        let idx = self.operations.len() - 1;
        if polls == 0 {
            self.on_done(idx);
        }
        idx
    }

    /// One poll of an operation.
    pub(super) fn advance(&mut self, idx: usize) {
        let op = &mut self.operations[idx];
        if op.status == "DONE" {
            return;
        }
        op.polls_left = op.polls_left.saturating_sub(1);
        let t = now();
        op.start_time.get_or_insert(t);
        if op.polls_left == 0 {
            op.status = "DONE".into();
            op.end_time = Some(t);
            self.on_done(idx);
        } else {
            op.status = "RUNNING".into();
        }
    }

    /// A create that ends makes the instance RUNNABLE, or removes it when it failed.
    pub(super) fn on_done(&mut self, idx: usize) {
        let op = &self.operations[idx];
        if op.op_type == "DELETE" {
            decommission::finish_delete(self, idx);
            return;
        }
        if op.op_type != "CREATE" {
            return;
        }
        let key = (op.project.clone(), op.instance.clone());
        if op.error.is_some() {
            self.instances.remove(&key);
        } else if let Some(inst) = self.instances.get_mut(&key) {
            if inst.state == "PENDING_CREATE" {
                inst.state = "RUNNABLE".into();
            }
        }
    }

    /// Pending CREATE operations (`creates`), or the others, get at most `n` polls left.
    pub(super) fn cap_pending(&mut self, creates: bool, n: u32) {
        for idx in 0..self.operations.len() {
            let op = &mut self.operations[idx];
            if op.status == "DONE" || (op.op_type == "CREATE") != creates {
                continue;
            }
            op.polls_left = op.polls_left.min(n);
            if op.polls_left == 0 {
                let t = now();
                op.status = "DONE".into();
                op.start_time.get_or_insert(t);
                op.end_time = Some(t);
                self.on_done(idx);
            }
        }
    }

    pub(super) fn pending_op(&self, project: &str, instance: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|o| o.project == project && o.instance == instance && o.status != "DONE")
    }

    pub(super) fn pending_create(&self, project: &str, instance: &str) -> Option<usize> {
        self.operations.iter().position(|o| {
            o.project == project
                && o.instance == instance
                && o.op_type == "CREATE"
                && o.status != "DONE"
        })
    }

    pub(super) fn find_instance_by_name(&mut self, name: &str) -> Option<&mut Instance> {
        self.instances
            .iter_mut()
            .find(|((_, n), _)| n == name)
            .map(|(_, i)| i)
    }
}
