//! The changes: create, patch (with or without an update mask) and `:setIamPolicy`.

use super::*;

impl RunState {
    /// Validates a service body, stores the service and answers its create operation.
    pub(super) fn create(&mut self, name: &str, body: &Map<String, Value>) -> Response {
        let mut spec = user_fields(body);
        if let Err(message) = validate_service(&spec).and_then(|()| validate_revision(name, &spec))
        {
            return google_error(400, "INVALID_ARGUMENT", &message);
        }
        if self.services.contains_key(name) {
            let id = name.rsplit('/').next().unwrap_or(name);
            return google_error(
                409,
                "ALREADY_EXISTS",
                &format!("Resource '{id}' already exists."),
            );
        }
        fill_defaults(&mut spec);
        self.services
            .insert(name.to_owned(), new_service(name, spec));
        let idx = self.new_operation(name, None);
        json_response(200, &self.op_json(&self.operations[idx]))
    }

    pub(super) fn update(
        &mut self,
        name: &str,
        query: Option<&str>,
        body: &Map<String, Value>,
    ) -> Response {
        if let Some(given) = body.get("name").and_then(Value::as_str) {
            if !given.is_empty() && given != name {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("service.name {given:?} does not match the URL ({name})."),
                );
            }
        }
        let Some(svc) = self.services.get(name) else {
            if query_param(query, "allowMissing").as_deref() == Some("true") {
                return self.create(name, body);
            }
            return not_found(name);
        };
        let mask = query_param(query, "updateMask").filter(|m| !m.trim().is_empty());
        let mut spec = match mask {
            None => user_fields(body),
            Some(mask) => {
                let mut spec = svc.spec.clone();
                for path in mask.split(',').map(|p| camel_case(p.trim())) {
                    let segs: Vec<&str> = path.split('.').collect();
                    if segs.iter().any(|s| s.is_empty()) || OUTPUT_ONLY.contains(&segs[0]) {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Invalid field mask path: {path:?}."),
                        );
                    }
                    set_path(&mut spec, &segs, get_path(body, &segs).cloned());
                }
                spec
            }
        };
        if let Err(message) = validate_service(&spec).and_then(|()| validate_revision(name, &spec))
        {
            return google_error(400, "INVALID_ARGUMENT", &message);
        }
        fill_defaults(&mut spec);
        // As in Knative: a new revision only when the template changes. A patch that leaves
        // it as it is makes none, so a failed latest revision stays failed.
        let template = spec.get("template").cloned().unwrap_or(Value::Null);
        let new_revision = svc.spec.get("template") != Some(&template);
        let asked = revision_for(name, &spec, svc.generation + 1);
        if new_revision
            && svc
                .revisions
                .get(&short(&asked))
                .is_some_and(|made| *made != template)
        {
            return google_error(
                409,
                "ALREADY_EXISTS",
                &format!(
                    "Revision named '{}' with different configuration already exists.",
                    short(&asked)
                ),
            );
        }
        let still_failing = match svc.condition {
            ("CONDITION_FAILED", ref message, _) if !new_revision => message.clone(),
            _ => None,
        };
        if let Some(svc) = self.services.get_mut(name) {
            if svc.spec != spec {
                svc.generation += 1;
            }
            svc.spec = spec;
            svc.updated = now();
            svc.etag = new_etag();
            if new_revision {
                svc.latest_created = asked;
                svc.revisions.insert(short(&svc.latest_created), template);
            }
        }
        let idx = self.new_operation(name, still_failing);
        json_response(200, &self.op_json(&self.operations[idx]))
    }

    pub(super) fn set_policy(&mut self, name: &str, body: &Map<String, Value>) -> Response {
        if !self.services.contains_key(name) {
            return not_found(name);
        }
        let Some(policy) = body.get("policy").and_then(Value::as_object) else {
            return google_error(400, "INVALID_ARGUMENT", "policy: is required.");
        };
        let current = self
            .policies
            .get(name)
            .and_then(|p| p["etag"].as_str())
            .unwrap_or(EMPTY_POLICY_ETAG);
        if let Some(etag) = policy
            .get("etag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            if etag != current {
                return google_error(
                    409,
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
                );
            }
        }
        let empty = Vec::new();
        let bindings = match policy.get("bindings") {
            None => &empty,
            Some(b) => match b.as_array() {
                Some(b) => b,
                None => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "policy.bindings: must be a list.",
                    )
                }
            },
        };
        let mut kept = Vec::new();
        for binding in bindings {
            let role = binding.get("role").and_then(Value::as_str).unwrap_or("");
            if !valid_role(role) {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Role ({role}) does not exist in the resource's hierarchy."),
                );
            }
            let members = binding
                .get("members")
                .map(|m| m.as_array().cloned().unwrap_or_default())
                .unwrap_or_default();
            for m in &members {
                let ok = m.as_str().is_some_and(valid_member);
                if !ok {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Invalid member: {m}. Members must be of the form user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers."),
                    );
                }
            }
            // IAM drops bindings without members.
            if !members.is_empty() {
                let mut b = binding.clone();
                b["members"] = Value::Array(members);
                kept.push(b);
            }
        }
        let version = policy.get("version").and_then(as_int).unwrap_or(1);
        let mut answer = json!({"version": version, "etag": new_policy_etag()});
        if !kept.is_empty() {
            answer["bindings"] = Value::Array(kept);
        }
        self.policies.insert(name.to_owned(), answer.clone());
        json_response(200, &answer)
    }
}
