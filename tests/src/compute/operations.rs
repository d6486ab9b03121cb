//! Operations: what every change answers (`kind: "compute#operation"`), zonal, regional or
//! global; `GET` advances one towards `DONE`, `POST .../wait` (zonal, what the keepalive
//! calls) finishes it. A `requestId` seen before answers its first operation instead of
//! changing anything again.

use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::errors::{check_name, compute_error, not_found, parse_body};
use super::names::{instance_link, operation_name, random_id, Scope};
use super::{ComputeState, FakeCompute};
use crate::server::{compute_timestamp, json_response, lock, now};
use crate::token::FAKE_CLIENT_EMAIL;

pub(super) struct Operation {
    /// Order of creation (ties of `insert_time` in lists).
    pub(super) seq: u64,
    id: u64,
    pub(super) name: String,
    pub(super) project: String,
    pub(super) scope: Scope,
    pub(super) op_type: String,
    target_link: String,
    pub(super) target_id: u64,
    status: String,
    pub(super) insert_time: OffsetDateTime,
    start_time: Option<OffsetDateTime>,
    end_time: Option<OffsetDateTime>,
    /// GETs left before DONE; `None`: does not advance on GET (seeded operations).
    polls_left: Option<u32>,
    request_id: Option<String>,
}

impl Operation {
    fn advance_on_get(&mut self) {
        if self.status == "DONE" {
            return;
        }
        let Some(left) = self.polls_left.as_mut() else {
            return;
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.finish();
        } else {
            self.status = "RUNNING".into();
            self.start_time.get_or_insert_with(now);
        }
    }

    fn finish(&mut self) {
        if self.status != "DONE" {
            let t = now();
            self.status = "DONE".into();
            self.start_time.get_or_insert(t);
            self.end_time = Some(t);
        }
    }

    /// The operation as the API shows it.
    pub(super) fn json(&self) -> Value {
        let scope_link = self.scope.link(&self.project);
        let mut v = json!({
            "kind": "compute#operation",
            "id": self.id.to_string(),
            "name": self.name,
            "operationType": self.op_type,
            "targetLink": self.target_link,
            "targetId": self.target_id.to_string(),
            "status": self.status,
            "user": FAKE_CLIENT_EMAIL,
            "progress": if self.status == "DONE" { 100 } else { 0 },
            "insertTime": compute_timestamp(self.insert_time),
            "creationTimestamp": compute_timestamp(self.insert_time),
            "selfLink": format!("{scope_link}/operations/{}", self.name),
        });
        match &self.scope {
            Scope::Zone(_) => v["zone"] = json!(scope_link),
            Scope::Region(_) => v["region"] = json!(scope_link),
            Scope::Global => {}
        }
        if let Some(t) = self.start_time {
            v["startTime"] = json!(compute_timestamp(t));
        }
        if let Some(t) = self.end_time {
            v["endTime"] = json!(compute_timestamp(t));
        }
        if let Some(rid) = &self.request_id {
            v["clientOperationId"] = json!(rid);
        }
        v
    }
}

impl ComputeState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records the operation of an accepted change and answers it (PENDING, or DONE when
    /// operations need no polls).
    pub(super) fn operation_answer(
        &mut self,
        project: &str,
        scope: Scope,
        target_link: String,
        target_id: u64,
        op_type: &str,
        request_id: Option<String>,
    ) -> Response {
        let seq = self.next_seq();
        let t = now();
        let polls = self.polls_to_done;
        let mut op = Operation {
            seq,
            id: random_id(),
            name: operation_name(t),
            project: project.into(),
            scope,
            op_type: op_type.into(),
            target_link,
            target_id,
            status: "PENDING".into(),
            insert_time: t,
            start_time: None,
            end_time: None,
            polls_left: Some(polls),
            request_id: request_id.clone(),
        };
        if polls == 0 {
            op.finish();
        }
        if let Some(rid) = request_id {
            self.request_ids
                .insert((project.to_owned(), rid), op.name.clone());
        }
        let answer = json_response(200, &op.json());
        self.operations.push(op);
        answer
    }

    /// What every insert checks first, in the real API's order: the body is a JSON object,
    /// the `requestId` is valid and new (else the first operation is the answer), the name is
    /// valid. `Ok` with the body and its name.
    pub(super) fn insert_request(
        &self,
        project: &str,
        body: &[u8],
        request_id: Option<&String>,
    ) -> Result<(Value, String), Response> {
        let body = parse_body(body)?;
        self.check_request_id(project, request_id)?;
        let name = check_name(&body)?;
        Ok((body, name))
    }

    /// Checks a `requestId`: `Err` with the answer to give when it is invalid (400) or was
    /// seen before (the first operation, and nothing else happens).
    pub(super) fn check_request_id(
        &self,
        project: &str,
        request_id: Option<&String>,
    ) -> Result<(), Response> {
        let Some(rid) = request_id else {
            return Ok(());
        };
        if uuid::Uuid::parse_str(rid).map_or(true, |u| u.is_nil()) {
            return Err(compute_error(
                400,
                "invalid",
                &format!("Invalid value for field 'requestId': '{rid}'. Must be a non-zero UUID."),
            ));
        }
        let first = self
            .request_ids
            .get(&(project.to_owned(), rid.clone()))
            .and_then(|name| self.operations.iter().find(|o| o.name == *name));
        match first {
            Some(op) => Err(json_response(200, &op.json())),
            None => Ok(()),
        }
    }

    fn find_operation(
        &mut self,
        project: &str,
        scope: &Scope,
        name: &str,
    ) -> Option<&mut Operation> {
        self.operations
            .iter_mut()
            .find(|o| o.name == name && o.project == project && o.scope == *scope)
    }

    /// `GET .../operations/{op}` of any scope: one step nearer `DONE`.
    pub(super) fn get_operation(
        &mut self,
        project: &str,
        scope: &Scope,
        name: &str,
        resource: &str,
    ) -> Response {
        match self.find_operation(project, scope, name) {
            Some(op) => {
                op.advance_on_get();
                json_response(200, &op.json())
            }
            None => not_found(resource),
        }
    }

    /// `POST .../zones/{z}/operations/{op}/wait`: `DONE`, unless a test made waits end early
    /// (as the real API's do after about two minutes).
    pub(super) fn wait_operation(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
        resource: &str,
    ) -> Response {
        let completes = self.wait_completes;
        match self.find_operation(project, &Scope::Zone(zone.into()), name) {
            Some(op) => {
                if completes {
                    op.finish();
                }
                json_response(200, &op.json())
            }
            None => not_found(resource),
        }
    }
}

impl FakeCompute {
    /// Seeds a zonal operation (e.g. an old reset, for grace tests) and returns its name. Its
    /// status stays as given (GETs do not advance it; wait finishes it). It does not count
    /// in [`resets`](Self::resets). The target need not exist (then `targetId` is random).
    pub fn add_operation(
        &self,
        project: &str,
        zone: &str,
        instance: &str,
        operation_type: &str,
        status: &str,
        insert_time: OffsetDateTime,
    ) -> String {
        let mut st = lock(&self.state);
        let target_id = st
            .instances
            .get(&(project.into(), zone.into(), instance.into()))
            .map_or_else(random_id, |i| i.id);
        let seq = st.next_seq();
        let name = operation_name(insert_time);
        let done = status == "DONE";
        st.operations.push(Operation {
            seq,
            id: random_id(),
            name: name.clone(),
            project: project.into(),
            scope: Scope::Zone(zone.into()),
            op_type: operation_type.into(),
            target_link: instance_link(project, zone, instance),
            target_id,
            status: status.into(),
            insert_time,
            start_time: (status != "PENDING").then_some(insert_time),
            end_time: done.then(|| insert_time + time::Duration::seconds(1)),
            polls_left: None,
            request_id: None,
        });
        name
    }

    /// One operation by name, as the API shows it.
    pub fn operation(&self, name: &str) -> Option<Value> {
        lock(&self.state)
            .operations
            .iter()
            .find(|o| o.name == name)
            .map(Operation::json)
    }

    /// New operations need this many `GET`s to be `DONE` (PENDING, then RUNNING on the GETs
    /// before the last). Default 1: the POST answers PENDING, the first GET answers DONE.
    /// 0: the POST already answers DONE. Zonal, regional and global operations alike.
    pub fn set_op_polls_to_done(&self, n: u32) {
        lock(&self.state).polls_to_done = n;
    }

    /// Whether `.../wait` finishes the operation (default true). When false, wait answers
    /// the operation as it is, as the real API does after its ~2 minutes.
    pub fn set_wait_completes(&self, completes: bool) {
        lock(&self.state).wait_completes = completes;
    }
}
