//! A job: the checks of its body (as the real API makes them), its defaults and its JSON.

use super::{cron::parse_cron, *};

/// A proto `Duration` in JSON: `<n>s` or `<n>.<fraction>s`.
pub(super) fn valid_duration(s: &str) -> bool {
    let Some(n) = s.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = n.split_once('.').unwrap_or((n, "0"));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    digits(whole) && digits(frac) && frac.len() <= 9
}

/// Base64 as proto3 JSON accepts `bytes`: standard or URL-safe alphabet, padded or not.
pub(super) fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(s))
        .ok()
}

/// `projects/P/locations/L/jobs/J` -> `(P, L, J)`.
pub(super) fn split_job_name(name: &str) -> Option<(&str, &str, &str)> {
    match *name.split('/').collect::<Vec<_>>() {
        ["projects", p, "locations", l, "jobs", j] if !p.is_empty() && !l.is_empty() => {
            Some((p, l, j))
        }
        _ => None,
    }
}

pub(super) fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 500
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

pub(super) fn valid_topic(name: &str) -> bool {
    match *name.split('/').collect::<Vec<_>>() {
        ["projects", p, "topics", t] => {
            !p.is_empty()
                && (3..=255).contains(&t.len())
                && t.starts_with(|c: char| c.is_ascii_alphabetic())
                && !t.starts_with("goog")
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.~+%".contains(&c))
        }
        _ => false,
    }
}

pub(super) fn user_fields(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| !OUTPUT_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The checks of a job's user fields (the message of a 400 otherwise).
pub(super) fn validate_job(spec: &Map<String, Value>) -> Result<(), String> {
    let schedule = spec.get("schedule").and_then(Value::as_str).unwrap_or("");
    if schedule.trim().is_empty() {
        return Err("Schedule is required.".into());
    }
    if parse_cron(schedule).is_none() {
        return Err(format!("Schedule has incorrect syntax: {schedule:?}."));
    }
    if let Some(tz) = spec.get("timeZone") {
        let ok = tz
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace));
        if !ok {
            return Err(format!("Invalid time zone specification: {tz}."));
        }
    }
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| spec.get(*t).is_some_and(|v| !v.is_null()))
        .collect();
    match targets[..] {
        [_] => {}
        [] => {
            return Err(
                "Job must have a target (pubsubTarget, httpTarget or appEngineHttpTarget).".into(),
            )
        }
        _ => {
            return Err(format!(
                "Job must have exactly one target, not {}.",
                targets.join(", ")
            ))
        }
    }
    if let Some(target) = spec.get("pubsubTarget") {
        let Some(target) = target.as_object() else {
            return Err("pubsubTarget must be an object.".into());
        };
        let topic = target
            .get("topicName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !valid_topic(topic) {
            return Err(format!(
                "Invalid resource field value in the request: pubsubTarget.topicName {topic:?} must be of the form projects/<PROJECT_ID>/topics/<TOPIC_ID>."
            ));
        }
        let data =
            match target.get("data") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(d)) => match decode_bytes(d) {
                    Some(d) => d,
                    None => return Err(
                        "Invalid value at 'job.pubsub_target.data' (TYPE_BYTES): invalid base64."
                            .into(),
                    ),
                },
                Some(_) => return Err(
                    "Invalid value at 'job.pubsub_target.data' (TYPE_BYTES): expected a string."
                        .into(),
                ),
            };
        let attributes = match target.get("attributes") {
            None | Some(Value::Null) => 0,
            Some(Value::Object(a)) => {
                if a.values().any(|v| !v.is_string()) {
                    return Err("pubsubTarget.attributes values must be strings.".into());
                }
                a.len()
            }
            Some(_) => return Err("pubsubTarget.attributes must be a map.".into()),
        };
        if data.is_empty() && attributes == 0 {
            return Err(
                "Pub/Sub message must contain either non-empty data, or at least one attribute."
                    .into(),
            );
        }
    }
    if let Some(target) = spec.get("httpTarget") {
        let uri = target.get("uri").and_then(Value::as_str).unwrap_or("");
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(format!(
                "httpTarget.uri {uri:?} must be an http or https URL."
            ));
        }
    }
    if let Some(retry) = spec.get("retryConfig") {
        let Some(retry) = retry.as_object() else {
            return Err("retryConfig must be an object.".into());
        };
        if let Some(n) = retry.get("retryCount") {
            if !as_int(n).is_some_and(|n| (0..=5).contains(&n)) {
                return Err("retryConfig.retryCount must be between 0 and 5.".into());
            }
        }
        if let Some(n) = retry.get("maxDoublings") {
            if as_int(n).is_none_or(|n| n < 0) {
                return Err("retryConfig.maxDoublings must not be negative.".into());
            }
        }
        for key in [
            "maxRetryDuration",
            "minBackoffDuration",
            "maxBackoffDuration",
        ] {
            if let Some(d) = retry.get(key) {
                if !d.as_str().is_some_and(valid_duration) {
                    return Err(format!("Invalid value at 'job.retry_config.{key}': {d}."));
                }
            }
        }
    }
    if let Some(d) = spec.get("attemptDeadline") {
        if !d.as_str().is_some_and(valid_duration) {
            return Err(format!("Invalid value at 'job.attempt_deadline': {d}."));
        }
    }
    Ok(())
}

/// The defaults the real API fills in.
pub(super) fn fill_defaults(spec: &mut Map<String, Value>) {
    spec.entry("timeZone").or_insert_with(|| json!("Etc/UTC"));
    let retry = spec.entry("retryConfig").or_insert_with(|| json!({}));
    if let Some(retry) = retry.as_object_mut() {
        retry
            .entry("maxRetryDuration")
            .or_insert_with(|| json!("0s"));
        retry
            .entry("minBackoffDuration")
            .or_insert_with(|| json!("5s"));
        retry
            .entry("maxBackoffDuration")
            .or_insert_with(|| json!("3600s"));
        retry.entry("maxDoublings").or_insert_with(|| json!(5));
    }
}

pub(super) fn job_json(name: &str, job: &Job) -> Value {
    let mut v = Value::Object(job.spec.clone());
    v["name"] = json!(name);
    v["state"] = json!(job.state);
    v["userUpdateTime"] = json!(rfc3339_utc(job.user_updated));
    let next = job
        .spec
        .get("schedule")
        .and_then(Value::as_str)
        .and_then(parse_cron)
        .and_then(|c| c.next_after(now()));
    if let Some(t) = next {
        v["scheduleTime"] = json!(rfc3339_utc(t));
    }
    if let Some(t) = job.last_attempt {
        v["lastAttemptTime"] = json!(rfc3339_utc(t));
        v["status"] = job.last_status.clone();
    }
    v
}

pub(super) fn new_job(spec: Map<String, Value>) -> Job {
    Job {
        spec,
        state: "ENABLED",
        user_updated: now(),
        last_attempt: None,
        last_status: json!({}),
        runs: 0,
    }
}
