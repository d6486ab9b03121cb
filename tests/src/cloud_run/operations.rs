//! A service as answered (reconciling while an operation runs), and its operations: made by
//! every change, ended by polls.

use super::*;

impl RunState {
    pub(super) fn reconciling(&self, name: &str) -> bool {
        self.operations.iter().any(|o| !o.done && o.service == name)
    }

    pub(super) fn service_json(&self, name: &str, svc: &Service) -> Value {
        let reconciling = self.reconciling(name);
        let id = name.rsplit('/').next().unwrap_or(name);
        let mut v = Value::Object(svc.spec.clone());
        v["name"] = json!(name);
        v["uid"] = json!(svc.uid);
        v["generation"] = json!(svc.generation.to_string());
        v["createTime"] = json!(rfc3339_utc(svc.created));
        v["updateTime"] = json!(rfc3339_utc(svc.updated));
        v["creator"] = json!(FAKE_CLIENT_EMAIL);
        v["lastModifier"] = json!(FAKE_CLIENT_EMAIL);
        v["etag"] = json!(svc.etag);
        if svc.observed_generation > 0 {
            v["observedGeneration"] = json!(svc.observed_generation.to_string());
        }
        v["latestCreatedRevision"] = json!(svc.latest_created);
        if let Some(r) = &svc.latest_ready {
            v["latestReadyRevision"] = json!(r);
        }
        let (state, message, t) = if reconciling {
            ("CONDITION_RECONCILING", None, svc.updated)
        } else {
            (svc.condition.0, svc.condition.1.clone(), svc.condition.2)
        };
        let condition = |kind: &str| {
            let mut c = json!({"type": kind, "state": state, "lastTransitionTime": rfc3339_utc(t)});
            if let Some(m) = &message {
                c["message"] = json!(m);
            }
            c
        };
        v["terminalCondition"] = condition("Ready");
        v["conditions"] = json!([condition("RoutesReady"), condition("ConfigurationsReady")]);
        if svc.ready_once {
            v["uri"] = json!(service_uri(id));
            v["urls"] = json!([service_uri(id)]);
        }
        v["reconciling"] = json!(reconciling);
        v
    }

    pub(super) fn service_view(&self, name: &str) -> Option<Value> {
        self.services
            .get(name)
            .map(|svc| self.service_json(name, svc))
    }

    pub(super) fn op_json(&self, op: &Operation) -> Value {
        let metadata = self
            .service_view(&op.service)
            .or_else(|| op.response.clone())
            .unwrap_or_else(|| json!({"name": op.service}));
        let mut v = json!({"name": op.name, "metadata": with_type(metadata), "done": op.done});
        if op.done {
            if let Some(message) = &op.error {
                v["error"] = json!({"code": 3, "message": message});
            } else if let Some(response) = &op.response {
                v["response"] = with_type(response.clone());
            }
        }
        v
    }

    /// A new operation on `service`; `still_failing` is the failure it ends with unless a
    /// scripted one comes first (a patch that makes no new revision leaves a failed latest
    /// revision failed).
    pub(super) fn new_operation(&mut self, service: &str, still_failing: Option<String>) -> usize {
        let error = self.fail_operation_next.pop_front().or(still_failing);
        let (p, l, _) = split_service_name(service).unwrap_or(("-", "-", "-"));
        self.operations.push(Operation {
            name: format!(
                "projects/{p}/locations/{l}/operations/{}",
                uuid::Uuid::new_v4()
            ),
            service: service.to_owned(),
            polls_left: self.operation_polls,
            done: false,
            error,
            response: None,
        });
        let idx = self.operations.len() - 1;
        if self.operation_polls == 0 {
            self.finish(idx);
        }
        idx
    }

    /// One GET of an operation.
    pub(super) fn poll(&mut self, idx: usize) {
        let op = &mut self.operations[idx];
        if op.done {
            return;
        }
        if op.polls_left == 0 {
            self.finish(idx);
        } else {
            op.polls_left -= 1;
        }
    }

    pub(super) fn finish(&mut self, idx: usize) {
        let op = &mut self.operations[idx];
        if op.done {
            return;
        }
        op.done = true;
        let (service, error) = (op.service.clone(), op.error.clone());
        if let Some(svc) = self.services.get_mut(&service) {
            let t = now();
            svc.observed_generation = svc.generation;
            match error {
                Some(message) => svc.condition = ("CONDITION_FAILED", Some(message), t),
                None => {
                    svc.latest_ready = Some(svc.latest_created.clone());
                    svc.ready_once = true;
                    svc.condition = ("CONDITION_SUCCEEDED", None, t);
                }
            }
        }
        let response = self.service_view(&service);
        self.operations[idx].response = response;
    }
}
