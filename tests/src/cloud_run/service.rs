//! What a service body may hold (the checks the real API makes), the defaults its answers
//! carry, and the names of services and revisions.

use super::*;

pub(super) fn split_service_name(name: &str) -> Option<(&str, &str, &str)> {
    match *name.split('/').collect::<Vec<_>>() {
        ["projects", p, "locations", l, "services", s]
            if !p.is_empty() && !l.is_empty() && !s.is_empty() =>
        {
            Some((p, l, s))
        }
        _ => None,
    }
}

/// Lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen,
/// at most 49 characters.
pub(super) fn valid_service_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whole seconds of a proto `Duration` written `<n>s`.
pub(super) fn whole_seconds(s: &str) -> Option<u64> {
    let n = s.strip_suffix('s')?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `<n>Mi` or `<n>Gi`, n > 0.
pub(super) fn valid_memory(s: &str) -> bool {
    let Some(n) = s.strip_suffix("Mi").or_else(|| s.strip_suffix("Gi")) else {
        return false;
    };
    !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) && n.parse::<u64>().is_ok_and(|n| n > 0)
}

/// `user:`, `serviceAccount:`, `group:` (an e-mail address), `domain:` (a domain),
/// `allUsers`, `allAuthenticatedUsers`.
pub(super) fn valid_member(m: &str) -> bool {
    if m == "allUsers" || m == "allAuthenticatedUsers" {
        return true;
    }
    let email = |s: &str| {
        s.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !s.contains(char::is_whitespace)
    };
    if let Some(rest) = m
        .strip_prefix("user:")
        .or_else(|| m.strip_prefix("serviceAccount:"))
        .or_else(|| m.strip_prefix("group:"))
    {
        return email(rest);
    }
    m.strip_prefix("domain:")
        .is_some_and(|d| d.contains('.') && !d.contains(['@', ' ']))
}

/// `roles/x`, or a custom role `projects/p/roles/x`, `organizations/o/roles/x`.
pub(super) fn valid_role(r: &str) -> bool {
    match *r.split('/').collect::<Vec<_>>() {
        ["roles", x] => !x.is_empty(),
        ["projects" | "organizations", o, "roles", x] => !o.is_empty() && !x.is_empty(),
        _ => false,
    }
}

pub(super) fn user_fields(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| !OUTPUT_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn invalid(message: impl Into<String>) -> Result<(), String> {
    Err(message.into())
}

/// The checks the real API makes that matter to a deployment (message of a 400 otherwise).
pub(super) fn validate_service(spec: &Map<String, Value>) -> Result<(), String> {
    let Some(template) = spec.get("template").and_then(Value::as_object) else {
        return invalid("service.template: is required.");
    };
    let Some(containers) = template
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return invalid("service.template.containers: at least one container is required.");
    };
    for (i, c) in containers.iter().enumerate() {
        let at = format!("service.template.containers[{i}]");
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        if image.trim().is_empty() {
            return invalid(format!("{at}.image: Must specify a container image."));
        }
        if let Some(env) = c.get("env") {
            let Some(env) = env.as_array() else {
                return invalid(format!("{at}.env: must be a list."));
            };
            for (j, e) in env.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return invalid(format!("{at}.env[{j}].name: is required."));
                }
                if e.get("value").is_some() && e.get("valueSource").is_some() {
                    return invalid(format!(
                        "{at}.env[{j}]: value and valueSource cannot both be set."
                    ));
                }
                if let Some(source) = e.get("valueSource") {
                    let secret = source
                        .pointer("/secretKeyRef/secret")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if secret.is_empty() {
                        return invalid(format!(
                            "{at}.env[{j}].valueSource.secretKeyRef.secret: is required."
                        ));
                    }
                }
            }
        }
        if let Some(memory) = c.pointer("/resources/limits/memory") {
            if !memory.as_str().is_some_and(valid_memory) {
                return invalid(format!(
                    "{at}.resources.limits.memory: Invalid value {memory}: must be a quantity such as 512Mi or 1Gi."
                ));
            }
        }
        if let Some(ports) = c.get("ports") {
            let Some(ports) = ports.as_array() else {
                return invalid(format!("{at}.ports: must be a list."));
            };
            for p in ports {
                if let Some(port) = p.get("containerPort") {
                    if !as_int(port).is_some_and(|n| (1..=65535).contains(&n)) {
                        return invalid(format!(
                            "{at}.ports.containerPort: must be between 1 and 65535."
                        ));
                    }
                }
            }
        }
    }
    if let Some(timeout) = template.get("timeout") {
        if !timeout
            .as_str()
            .and_then(whole_seconds)
            .is_some_and(|s| (1..=3600).contains(&s))
        {
            return invalid(format!(
                "service.template.timeout: Invalid value {timeout}: must be between 1s and 3600s."
            ));
        }
    }
    if let Some(c) = template.get("maxInstanceRequestConcurrency") {
        if !as_int(c).is_some_and(|n| (1..=1000).contains(&n)) {
            return invalid(
                "service.template.maxInstanceRequestConcurrency: must be between 1 and 1000.",
            );
        }
    }
    if let Some(scaling) = template.get("scaling") {
        let count = |k: &str| scaling.get(k).map(as_int);
        let (min, max) = (count("minInstanceCount"), count("maxInstanceCount"));
        if matches!(min, Some(None) | Some(Some(i64::MIN..=-1)))
            || matches!(max, Some(None) | Some(Some(i64::MIN..=-1)))
        {
            return invalid(
                "service.template.scaling: instance counts must be non-negative integers.",
            );
        }
        if let (Some(Some(min)), Some(Some(max))) = (min, max) {
            if max > 0 && min > max {
                return invalid(
                    "service.template.scaling: minInstanceCount must not exceed maxInstanceCount.",
                );
            }
        }
    }
    if let Some(ingress) = spec.get("ingress") {
        if !ingress
            .as_str()
            .is_some_and(|s| INGRESS_VALUES.contains(&s))
        {
            return invalid(format!(
                "Invalid value at 'service.ingress' ({ingress}): not a valid enum value."
            ));
        }
    }
    Ok(())
}

/// The defaults the real API fills in.
pub(super) fn fill_defaults(spec: &mut Map<String, Value>) {
    spec.entry("ingress")
        .or_insert_with(|| json!("INGRESS_TRAFFIC_ALL"));
    spec.entry("launchStage").or_insert_with(|| json!("GA"));
    spec.entry("traffic").or_insert_with(
        || json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]),
    );
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    template.entry("timeout").or_insert_with(|| json!("300s"));
    template
        .entry("maxInstanceRequestConcurrency")
        .or_insert_with(|| json!(80));
    let Some(containers) = template.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
        let resources = c.entry("resources").or_insert_with(|| json!({}));
        if let Some(resources) = resources.as_object_mut() {
            let limits = resources.entry("limits").or_insert_with(|| json!({}));
            if let Some(limits) = limits.as_object_mut() {
                limits.entry("cpu").or_insert_with(|| json!("1000m"));
                limits.entry("memory").or_insert_with(|| json!("512Mi"));
            }
        }
        let ports = c
            .entry("ports")
            .or_insert_with(|| json!([{"containerPort": 8080}]));
        if let Some(ports) = ports.as_array_mut() {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("name").or_insert_with(|| json!("http1"));
            }
        }
    }
}

pub(super) fn with_type(mut service: Value) -> Value {
    if let Some(obj) = service.as_object_mut() {
        obj.insert("@type".into(), json!(SERVICE_TYPE));
    }
    service
}

pub(super) fn new_etag() -> String {
    format!("\"{}\"", random_string(27))
}

/// An IAM policy etag, as IAM writes them (base64 of 8 bytes).
pub(super) fn new_policy_etag() -> String {
    let id = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&id.as_bytes()[..8])
}

/// The revision a template makes: the name it asks for (`template.revision`), else a
/// generated one.
pub(super) fn revision_for(service: &str, spec: &Map<String, Value>, generation: u64) -> String {
    match spec
        .get("template")
        .and_then(|t| t.get("revision"))
        .and_then(Value::as_str)
    {
        Some(r) => format!("{service}/revisions/{r}"),
        None => revision_name(service, generation),
    }
}

/// The last segment of a revision's full name.
pub(super) fn short(revision: &str) -> String {
    revision.rsplit('/').next().unwrap_or(revision).to_string()
}

/// A revision name the template asks for must start with the service's name and a hyphen,
/// and be a valid name of at most 63 characters.
pub(super) fn validate_revision(service: &str, spec: &Map<String, Value>) -> Result<(), String> {
    let Some(r) = spec.get("template").and_then(|t| t.get("revision")) else {
        return Ok(());
    };
    let id = service.rsplit('/').next().unwrap_or(service);
    let ok = r.as_str().is_some_and(|r| {
        r.len() <= 63
            && r.strip_prefix(id)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| !rest.is_empty())
            && !r.ends_with('-')
            && r.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "service.template.revision: Invalid value {r}: must start with '{id}-' and use lowercase letters, digits and hyphens, at most 63 characters."
        ))
    }
}

pub(super) fn revision_name(service: &str, generation: u64) -> String {
    let id = service.rsplit('/').next().unwrap_or(service);
    format!(
        "{service}/revisions/{id}-{generation:05}-{}",
        random_string(3).to_ascii_lowercase()
    )
}

/// The URI a ready service answers.
pub(super) fn service_uri(service_id: &str) -> String {
    format!("https://{service_id}-abc123-ez.a.run.app")
}

pub(super) fn new_service(name: &str, spec: Map<String, Value>) -> Service {
    let t = now();
    let latest_created = revision_for(name, &spec, 1);
    let revisions = BTreeMap::from([(short(&latest_created), spec["template"].clone())]);
    Service {
        spec,
        uid: uuid::Uuid::new_v4().to_string(),
        generation: 1,
        observed_generation: 0,
        created: t,
        updated: t,
        etag: new_etag(),
        latest_created,
        latest_ready: None,
        ready_once: false,
        condition: ("CONDITION_RECONCILING", None, t),
        revisions,
    }
}
