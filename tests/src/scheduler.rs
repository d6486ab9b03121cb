//! `FakeScheduler`: Cloud Scheduler v1 jobs under `/v1/projects/{p}/locations/{l}/jobs`
//! (create, get, list, patch with or without `updateMask`, delete, `:run`, `:pause`,
//! `:resume`), with bearer tokens checked against a [`TokenRegistry`], scripted errors, and
//! the newer Google APIs' error shape `{"error": {"code", "message", "status"}}`.
//!
//! A job is stored as sent (output-only fields ignored) plus what the real API adds:
//! `state` (`ENABLED`, or `PAUSED` after `:pause`; only an enabled job can be paused and only
//! a paused one resumed, else `400 FAILED_PRECONDITION`; a successful patch ends
//! `UPDATE_FAILED`, which only [`FakeScheduler::set_state`] sets), `userUpdateTime`, `scheduleTime` (the
//! next minute the cron expression matches, computed in UTC whatever `timeZone` says),
//! `timeZone` (`Etc/UTC` when absent) and, for each missing key of `retryConfig`, the real
//! defaults (`maxRetryDuration: "0s"`, `minBackoffDuration: "5s"`, `maxBackoffDuration:
//! "3600s"`, `maxDoublings: 5`). After a `:run`, `lastAttemptTime` and `status: {}`
//! (a failed attempt's `{code, message}` through [`FakeScheduler::fail_attempt`]).
//!
//! Checks (400 `INVALID_ARGUMENT` otherwise): `name` is
//! `projects/{p}/locations/{l}/jobs/{id}` under the URL's parent (`id`: letters, digits,
//! `-`, `_`, at most 500), `schedule` is a 5-field unix-cron expression (numbers, ranges,
//! steps, lists, `JAN`-`DEC`, `SUN`-`SAT`), `timeZone` if present is non-empty and has no
//! whitespace, exactly one target (`pubsubTarget`, `httpTarget`, `appEngineHttpTarget`);
//! a `pubsubTarget` has a `topicName` `projects/{p}/topics/{t}` and non-empty `data` or at
//! least one attribute, `data` being base64 as proto3 JSON accepts it (standard or URL-safe
//! alphabet, padded or not); an `httpTarget` has an `http(s)://` `uri`; `retryConfig`'s
//! durations and `attemptDeadline` are `<n>s`, `retryCount` 0..=5.
//!
//! A list with no jobs answers `{}` (no `jobs` key), as the real API does.

use crate::server::{FakeState, Faults};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};

use crate::{
    rest::{as_int, camel_case, get_path, parse_object, percent_decode, scripted_error, set_path},
    secretmanager::google_error,
    server::{json_response, lock, now, query_param, rfc3339_utc, HttpServer},
    token::TokenRegistry,
};

/// Cloud Scheduler's own words for scripted faults (see [`scripted_error`]).
const SCHEDULER_ERRORS: &[(u16, &str, &str)] = &[
    (
        403,
        "PERMISSION_DENIED",
        "The principal (user or service account) lacks IAM permission \"cloudscheduler.jobs.create\" for the resource (or the resource may not exist).",
    ),
    (404, "NOT_FOUND", "Job not found."),
    (409, "ALREADY_EXISTS", "Job already exists."),
    (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Requests' of service 'cloudscheduler.googleapis.com'.",
    ),
];

/// Fields of a job that only the server sets (ignored in request bodies; `name` is checked).
const OUTPUT_ONLY: &[&str] = &[
    "name",
    "state",
    "status",
    "userUpdateTime",
    "scheduleTime",
    "lastAttemptTime",
];

/// Top-level fields an `updateMask` may name (dotted paths below them too).
const UPDATABLE: &[&str] = &[
    "description",
    "schedule",
    "timeZone",
    "pubsubTarget",
    "httpTarget",
    "appEngineHttpTarget",
    "retryConfig",
    "attemptDeadline",
];

const TARGETS: &[&str] = &["pubsubTarget", "httpTarget", "appEngineHttpTarget"];

struct Job {
    /// The user's fields, defaults filled in.
    spec: Map<String, Value>,
    state: &'static str,
    user_updated: OffsetDateTime,
    last_attempt: Option<OffsetDateTime>,
    /// The last attempt's `google.rpc.Status` (`{}`: it succeeded).
    last_status: Value,
    runs: usize,
}

struct SchedState {
    /// Full name -> job.
    jobs: BTreeMap<String, Job>,
    faults: Faults,
    /// Changes carried out but answered with this status instead (see `lose_answers`).
    lost_answers: Faults,
    /// Faults of job creates only (see `fail_creates`).
    create_faults: Faults,
}

/// The fake Cloud Scheduler API.
pub struct FakeScheduler {
    state: Arc<Mutex<SchedState>>,
    server: HttpServer,
}

/// A parsed unix-cron expression: the allowed values of each field as bit masks.
#[derive(Debug, Clone, Copy)]
struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month / day-of-week field starts with `*` (then a day must match
    /// both fields; otherwise either, as in Vixie cron).
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One cron field: `*`, `n`, `a-b`, with an optional `/step`, comma-separated; `names`
/// (three letters, case-insensitive) stand for `first_name..`.
fn parse_cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Option<u64> {
    let value = |s: &str| -> Option<u32> {
        if let Ok(n) = s.parse::<u32>() {
            return Some(n);
        }
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + first_name)
    };
    let mut mask = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|&s| s > 0)?)),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        };
        if lo > hi || lo < min || hi > max {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            mask |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Some(mask)
}

fn parse_cron(schedule: &str) -> Option<Cron> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return None;
    };
    let mut weekdays = parse_cron_field(weekday, 0, 7, &WEEKDAYS, 0)?;
    if weekdays & (1 << 7) != 0 {
        weekdays |= 1;
    }
    Some(Cron {
        minutes: parse_cron_field(minute, 0, 59, &[], 0)?,
        hours: parse_cron_field(hour, 0, 23, &[], 0)?,
        days: parse_cron_field(day, 1, 31, &[], 0)?,
        months: parse_cron_field(month, 1, 12, &MONTHS, 1)?,
        weekdays,
        days_star: day.starts_with('*'),
        weekdays_star: weekday.starts_with('*'),
    })
}

impl Cron {
    fn matches(&self, t: OffsetDateTime) -> bool {
        let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
        let day = bit(self.days, u32::from(t.day()));
        let weekday = bit(
            self.weekdays,
            u32::from(t.weekday().number_days_from_sunday()),
        );
        let day_ok = if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        };
        bit(self.minutes, u32::from(t.minute()))
            && bit(self.hours, u32::from(t.hour()))
            && bit(self.months, u32::from(u8::from(t.month())))
            && day_ok
    }

    /// The first matching minute after `from` (within about four years), in UTC.
    fn next_after(&self, from: OffsetDateTime) -> Option<OffsetDateTime> {
        let from = from.to_offset(time::UtcOffset::UTC);
        let mut t = from.replace_nanosecond(0).ok()?.replace_second(0).ok()? + Duration::MINUTE;
        let end = t + Duration::days(4 * 366 + 1);
        while t < end {
            if !self.matches(t) {
                // Skip whole hours or days that cannot match.
                let day_may = {
                    let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
                    bit(self.months, u32::from(u8::from(t.month())))
                        && (bit(self.days, u32::from(t.day()))
                            || bit(
                                self.weekdays,
                                u32::from(t.weekday().number_days_from_sunday()),
                            ))
                };
                if !day_may {
                    t = t.replace_time(time::Time::MIDNIGHT) + Duration::DAY;
                } else if self.hours & (1 << t.hour()) == 0 {
                    t = t.replace_minute(0).ok()? + Duration::HOUR;
                } else {
                    t += Duration::MINUTE;
                }
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// A proto `Duration` in JSON: `<n>s` or `<n>.<fraction>s`.
fn valid_duration(s: &str) -> bool {
    let Some(n) = s.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = n.split_once('.').unwrap_or((n, "0"));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    digits(whole) && digits(frac) && frac.len() <= 9
}

/// Base64 as proto3 JSON accepts `bytes`: standard or URL-safe alphabet, padded or not.
fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(s))
        .ok()
}

/// `projects/P/locations/L/jobs/J` -> `(P, L, J)`.
fn split_job_name(name: &str) -> Option<(&str, &str, &str)> {
    match *name.split('/').collect::<Vec<_>>() {
        ["projects", p, "locations", l, "jobs", j] if !p.is_empty() && !l.is_empty() => {
            Some((p, l, j))
        }
        _ => None,
    }
}

fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 500
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn valid_topic(name: &str) -> bool {
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

fn user_fields(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| !OUTPUT_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The checks of a job's user fields (the message of a 400 otherwise).
fn validate_job(spec: &Map<String, Value>) -> Result<(), String> {
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
fn fill_defaults(spec: &mut Map<String, Value>) {
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

fn job_json(name: &str, job: &Job) -> Value {
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

fn new_job(spec: Map<String, Value>) -> Job {
    Job {
        spec,
        state: "ENABLED",
        user_updated: now(),
        last_attempt: None,
        last_status: json!({}),
        runs: 0,
    }
}

fn not_found() -> Response {
    google_error(404, "NOT_FOUND", "Job not found.")
}

fn invalid(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

impl FakeScheduler {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(SchedState {
            jobs: BTreeMap::new(),
            faults: Faults::default(),
            lost_answers: Faults::default(),
            create_faults: Faults::default(),
        }));
        let ctx = FakeState {
            state: state.clone(),
            tokens,
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Cloud Scheduler server");
        FakeScheduler { state, server }
    }

    /// Stores a job (`ENABLED`, defaults filled in), no checks. `job["name"]` must be
    /// `projects/P/locations/L/jobs/J` (panics otherwise); an existing job is replaced.
    pub fn add_job(&self, job: Value) {
        let name = job
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| split_job_name(n).is_some())
            .unwrap_or_else(|| panic!("FakeScheduler::add_job: bad or missing name in {job}"))
            .to_owned();
        let mut spec = job.as_object().map(user_fields).unwrap_or_default();
        fill_defaults(&mut spec);
        lock(&self.state).jobs.insert(name, new_job(spec));
    }

    /// The job as a GET answers it (full name `projects/P/locations/L/jobs/J`).
    pub fn job(&self, name: &str) -> Option<Value> {
        lock(&self.state).jobs.get(name).map(|j| job_json(name, j))
    }

    /// Full names of the jobs, sorted.
    /// The next `n` successful changes (create, patch, delete, `:run`, `:pause`, `:resume`)
    /// are carried out but answered `status`, as when the answer is lost on the way back: the
    /// client's retry then meets the change already made.
    pub fn lose_answers(&self, n: usize, status: u16) {
        lock(&self.state).lost_answers.next(n, status);
    }

    /// Puts a job in `state`: `PAUSED` as `:pause` does (someone stopped the keepalive of a
    /// number), or one only Cloud Scheduler sets (`UPDATE_FAILED`, `DISABLED`).
    pub fn set_state(&self, name: &str, state: &'static str) {
        if let Some(job) = lock(&self.state).jobs.get_mut(name) {
            job.state = state;
            job.user_updated = now();
        }
    }

    /// Records an attempt that failed with `google.rpc.Status` `{code, message}` (what the
    /// job shows after, e.g., a publish to a deleted topic: code 5).
    pub fn fail_attempt(&self, name: &str, code: i32, message: &str) {
        if let Some(job) = lock(&self.state).jobs.get_mut(name) {
            job.runs += 1;
            job.last_attempt = Some(now());
            job.last_status = json!({"code": code, "message": message});
        }
    }

    pub fn jobs(&self) -> Vec<String> {
        lock(&self.state).jobs.keys().cloned().collect()
    }

    /// Successful `:run` calls of the job (full name); 0 if it does not exist.
    pub fn runs(&self, name: &str) -> usize {
        lock(&self.state).jobs.get(name).map_or(0, |j| j.runs)
    }

    /// The next request (after authentication) answers `status` in the error shape (429
    /// `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503 `UNAVAILABLE`, 403 `PERMISSION_DENIED`,
    /// ...). Calls queue: two calls fail the next two requests.
    pub fn fail_next(&self, status: u16) {
        lock(&self.state).faults.next(1, status);
    }

    /// Every request (after authentication) answers `status` until cleared.
    pub fn fail_always(&self, status: u16) {
        lock(&self.state).faults.always(status);
    }

    /// Every job create answers `status` in the error shape (reads, patches and deletes go
    /// through) until [`clear_failures`](Self::clear_failures).
    pub fn fail_creates(&self, status: u16) {
        lock(&self.state).create_faults.always(status);
    }

    /// Removes scripted failures.
    pub fn clear_failures(&self) {
        let mut st = lock(&self.state);
        st.faults.clear();
        st.create_faults.clear();
    }
}

fn create(st: &mut SchedState, p: &str, l: &str, body: &[u8]) -> Response {
    let Some(body) = parse_object(body) else {
        return invalid("Invalid JSON payload received. Expected a JSON object.");
    };
    let name = body.get("name").and_then(Value::as_str).unwrap_or("");
    let under_parent =
        split_job_name(name).is_some_and(|(jp, jl, j)| jp == p && jl == l && valid_job_id(j));
    if !under_parent {
        return invalid(&format!(
            "Job name {name:?} must be formatted: \"projects/{p}/locations/{l}/jobs/<JOB_ID>\" (JOB_ID: letters, numbers, hyphens, underscores, at most 500)."
        ));
    }
    let mut spec = user_fields(&body);
    if let Err(message) = validate_job(&spec) {
        return invalid(&message);
    }
    if st.jobs.contains_key(name) {
        return google_error(
            409,
            "ALREADY_EXISTS",
            &format!("Job {name} already exists."),
        );
    }
    fill_defaults(&mut spec);
    let job = new_job(spec);
    let answer = job_json(name, &job);
    st.jobs.insert(name.to_owned(), job);
    json_response(200, &answer)
}

fn update(st: &mut SchedState, name: &str, query: Option<&str>, body: &[u8]) -> Response {
    let Some(body) = parse_object(body) else {
        return invalid("Invalid JSON payload received. Expected a JSON object.");
    };
    let Some(job) = st.jobs.get(name) else {
        return not_found();
    };
    if let Some(given) = body.get("name").and_then(Value::as_str) {
        if !given.is_empty() && given != name {
            return invalid(&format!(
                "job.name {given:?} does not match the URL ({name})."
            ));
        }
    }
    let mut spec = match query_param(query, "updateMask").filter(|m| !m.trim().is_empty()) {
        None => user_fields(&body),
        Some(mask) => {
            let mut spec = job.spec.clone();
            for path in mask.split(',').map(|p| camel_case(p.trim())) {
                let segs: Vec<&str> = path.split('.').collect();
                if segs.iter().any(|s| s.is_empty()) || !UPDATABLE.contains(&segs[0]) {
                    return invalid(&format!("Invalid update mask path: {path:?}."));
                }
                set_path(&mut spec, &segs, get_path(&body, &segs).cloned());
            }
            spec
        }
    };
    if let Err(message) = validate_job(&spec) {
        return invalid(&message);
    }
    fill_defaults(&mut spec);
    let Some(job) = st.jobs.get_mut(name) else {
        return not_found();
    };
    job.spec = spec;
    job.user_updated = now();
    // A successful update ends the state a failed one left.
    if job.state == "UPDATE_FAILED" {
        job.state = "ENABLED";
    }
    json_response(200, &job_json(name, job))
}

async fn handle(
    State(ctx): State<FakeState<SchedState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = crate::rest::unauthenticated(&headers, &ctx.tokens) {
        return refused;
    }
    let mut guard = lock(&ctx.state);
    let st = &mut *guard;
    if let Some(code) = st.faults.take() {
        return scripted_error(code, SCHEDULER_ERRORS);
    }
    let path = uri.path().trim_matches('/');
    let decoded: Vec<String> = path.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let unknown = || {
        google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL /{path} was not found on this server."),
        )
    };
    let answer = match segs[..] {
        ["v1", "projects", p, "locations", l, "jobs"] if method == Method::POST => {
            match st.create_faults.take() {
                Some(code) => scripted_error(code, SCHEDULER_ERRORS),
                None => create(st, p, l, &body),
            }
        }
        ["v1", "projects", p, "locations", l, "jobs"] if method == Method::GET => {
            let prefix = format!("projects/{p}/locations/{l}/jobs/");
            let jobs: Vec<Value> = st
                .jobs
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, j)| job_json(n, j))
                .collect();
            // Like the real API, no `jobs` key when there are none.
            let mut answer = json!({});
            if !jobs.is_empty() {
                answer["jobs"] = Value::Array(jobs);
            }
            json_response(200, &answer)
        }
        ["v1", "projects", p, "locations", l, "jobs", last] => {
            let (j, verb) = match last.split_once(':') {
                Some((j, verb)) => (j, Some(verb)),
                None => (last, None),
            };
            let name = format!("projects/{p}/locations/{l}/jobs/{j}");
            match (verb, method.clone()) {
                (None, Method::GET) => match st.jobs.get(&name) {
                    Some(job) => json_response(200, &job_json(&name, job)),
                    None => not_found(),
                },
                (None, Method::PATCH) => update(st, &name, uri.query(), &body),
                (None, Method::DELETE) => match st.jobs.remove(&name) {
                    Some(_) => json_response(200, &json!({})),
                    None => not_found(),
                },
                (Some(verb @ ("run" | "pause" | "resume")), Method::POST) => {
                    let Some(job) = st.jobs.get_mut(&name) else {
                        return not_found();
                    };
                    // As the real API: only an enabled job can be paused, only a paused
                    // one resumed.
                    let wanted = match verb {
                        "pause" => Some(("ENABLED", "PAUSED")),
                        "resume" => Some(("PAUSED", "ENABLED")),
                        _ => None,
                    };
                    match wanted {
                        None => {
                            job.runs += 1;
                            job.last_attempt = Some(now());
                            job.last_status = json!({});
                        }
                        Some((from, _)) if job.state != from => {
                            return google_error(
                                400,
                                "FAILED_PRECONDITION",
                                &format!(
                                    "Job must be in state {from} to {verb} it; it is {}.",
                                    job.state
                                ),
                            );
                        }
                        Some((_, to)) => {
                            job.state = to;
                            job.user_updated = now();
                        }
                    }
                    json_response(200, &job_json(&name, job))
                }
                _ => unknown(),
            }
        }
        _ => unknown(),
    };
    // A change made whose answer is lost on the way: the client sees an error and retries.
    if method != Method::GET && answer.status().is_success() {
        if let Some(code) = st.lost_answers.take() {
            return scripted_error(code, SCHEDULER_ERRORS);
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::send;

    const PARENT: &str = "projects/p/locations/europe-west1";
    const NAME: &str = "projects/p/locations/europe-west1/jobs/keepalive-tick";

    async fn fixture() -> (FakeScheduler, String, reqwest::Client) {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        (
            FakeScheduler::start(tokens).await,
            token,
            reqwest::Client::new(),
        )
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn job_body() -> Value {
        json!({
            "name": NAME,
            "description": "Keepalive tick",
            "schedule": "*/5 * * * *",
            "pubsubTarget": {
                "topicName": "projects/p/topics/keepalive-tick",
                "data": b64("{\"tick\":true}"),
                "attributes": {"source": "scheduler"}
            },
            "retryConfig": {"retryCount": 1, "maxDoublings": 2},
            "attemptDeadline": "60s"
        })
    }

    async fn create(
        s: &FakeScheduler,
        token: &str,
        client: &reqwest::Client,
        body: Value,
    ) -> (u16, Value) {
        send(
            client,
            reqwest::Method::POST,
            format!("{}/v1/{PARENT}/jobs", s.url()),
            token,
            Some(body),
        )
        .await
    }

    #[test]
    fn cron_expressions() {
        for ok in [
            "*/5 * * * *",
            "0 9 * * 1-5",
            "0 0 1 JAN,jul *",
            "30 2 * * SUN",
            "0 0 * * 7",
            "1,2,3-10/2 0-23/6 1-31 1-12 0-6",
        ] {
            assert!(parse_cron(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "every 5 minutes",
            "a * * * *",
        ] {
            assert!(parse_cron(bad).is_none(), "{bad}");
        }
        let t = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let every5 = parse_cron("*/5 * * * *").unwrap();
        assert_eq!(
            every5.next_after(t("2026-03-01T10:02:30Z")),
            Some(t("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            every5.next_after(t("2026-03-01T10:05:00Z")),
            Some(t("2026-03-01T10:10:00Z"))
        );
        // Mondays to Fridays at 09:00: from a Saturday, the Monday.
        let weekdays = parse_cron("0 9 * * MON-FRI").unwrap();
        assert_eq!(
            weekdays.next_after(t("2026-02-28T12:00:00Z")),
            Some(t("2026-03-02T09:00:00Z"))
        );
        // Day of month OR day of week when both are restricted.
        let either = parse_cron("0 0 13 * FRI").unwrap();
        assert_eq!(
            either.next_after(t("2026-03-01T00:00:00Z")),
            Some(t("2026-03-06T00:00:00Z"))
        );
        let leap = parse_cron("0 0 29 2 *").unwrap();
        assert_eq!(
            leap.next_after(t("2026-03-01T00:00:00Z")),
            Some(t("2028-02-29T00:00:00Z"))
        );
    }

    #[tokio::test]
    async fn create_get_list_and_delete() {
        let (s, token, client) = fixture().await;
        let (status, empty) = send(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/{PARENT}/jobs", s.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(empty, json!({}));

        let (status, job) = create(&s, &token, &client, job_body()).await;
        assert_eq!(status, 200);
        assert_eq!(job["name"], NAME);
        assert_eq!(job["state"], "ENABLED");
        assert_eq!(job["timeZone"], "Etc/UTC");
        assert_eq!(job["schedule"], "*/5 * * * *");
        assert_eq!(job["description"], "Keepalive tick");
        assert_eq!(job["pubsubTarget"], job_body()["pubsubTarget"]);
        assert_eq!(
            job["retryConfig"],
            json!({"retryCount": 1, "maxDoublings": 2, "maxRetryDuration": "0s", "minBackoffDuration": "5s", "maxBackoffDuration": "3600s"})
        );
        assert_eq!(job["attemptDeadline"], "60s");
        assert!(job["userUpdateTime"].as_str().unwrap().ends_with('Z'));
        let next = crate::server::parse_rfc3339(job["scheduleTime"].as_str().unwrap()).unwrap();
        assert!(next > now() && next <= now() + Duration::minutes(5));
        assert_eq!(next.minute() % 5, 0);
        assert_eq!(next.second(), 0);
        assert!(job.get("lastAttemptTime").is_none());

        let (status, got) = send(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/{NAME}", s.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(got["name"], NAME);
        assert_eq!(got["userUpdateTime"], job["userUpdateTime"]);
        assert_eq!(s.job(NAME).unwrap()["pubsubTarget"], job["pubsubTarget"]);
        assert_eq!(s.jobs(), vec![NAME.to_owned()]);

        let (_, list) = send(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/{PARENT}/jobs", s.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(list["jobs"][0]["name"], NAME);

        let (status, err) = send(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/{PARENT}/jobs/nope", s.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");

        let (status, _) = send(
            &client,
            reqwest::Method::DELETE,
            format!("{}/v1/{NAME}", s.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(s.jobs().is_empty());
    }

    #[tokio::test]
    async fn duplicate_create_is_already_exists() {
        let (s, token, client) = fixture().await;
        assert_eq!(create(&s, &token, &client, job_body()).await.0, 200);
        let (status, err) = create(&s, &token, &client, job_body()).await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["code"], 409);
        assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    }

    #[tokio::test]
    async fn invalid_jobs_are_refused() {
        let (s, token, client) = fixture().await;
        let with = |pointer: &str, value: Value| {
            let mut b = job_body();
            let mut v = &mut b;
            for key in pointer.trim_start_matches('/').split('/') {
                v = &mut v[key];
            }
            *v = value;
            b
        };
        let without = |key: &str| {
            let mut b = job_body();
            b.as_object_mut().unwrap().remove(key);
            b
        };
        for body in [
            with("/pubsubTarget/data", json!("not base64!!")),
            with("/pubsubTarget/data", json!("abcde")),
            with("/schedule", json!("*/5 * * *")),
            with("/schedule", json!("every 5 minutes")),
            without("schedule"),
            with("/timeZone", json!("")),
            with("/timeZone", json!("Europe / Berlin")),
            with("/pubsubTarget/topicName", json!("keepalive-tick")),
            with(
                "/pubsubTarget/topicName",
                json!("projects/p/subscriptions/keepalive-tick"),
            ),
            with(
                "/pubsubTarget",
                json!({"topicName": "projects/p/topics/keepalive-tick"}),
            ),
            with(
                "/name",
                json!("projects/other/locations/europe-west1/jobs/x"),
            ),
            with("/name", json!("projects/p/locations/us-central1/jobs/x")),
            with("/name", json!("keepalive-tick")),
            with("/name", json!("projects/p/locations/europe-west1/jobs/a b")),
            without("name"),
            without("pubsubTarget"),
            with("/httpTarget", json!({"uri": "https://example.com/tick"})),
            with("/retryConfig/retryCount", json!(6)),
            with("/retryConfig/maxBackoffDuration", json!("1h")),
            with("/attemptDeadline", json!("60")),
        ] {
            let (status, err) = create(&s, &token, &client, body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(err["error"]["status"], "INVALID_ARGUMENT", "{body}");
            assert_eq!(err["error"]["code"], 400);
        }
        assert!(s.jobs().is_empty());
        // Unpadded and URL-safe base64 are accepted (proto3 JSON), and so is an HTTP target.
        let (status, _) = create(
            &s,
            &token,
            &client,
            with("/pubsubTarget/data", json!("eyJ0aWNrIjp0cnVlfQ")),
        )
        .await;
        assert_eq!(status, 200);
        let mut http = without("pubsubTarget");
        http["name"] = json!(format!("{PARENT}/jobs/http"));
        http["httpTarget"] = json!({"uri": "https://example.com/tick", "httpMethod": "POST"});
        assert_eq!(create(&s, &token, &client, http).await.0, 200);
    }

    #[tokio::test]
    async fn patch_with_an_update_mask_changes_only_the_named_fields() {
        let (s, token, client) = fixture().await;
        s.add_job(job_body());
        let before = s.job(NAME).unwrap();
        let mut body = job_body();
        body["schedule"] = json!("0 * * * *");
        body["description"] = json!("changed");
        body["pubsubTarget"]["data"] = json!(b64("new"));
        let patch = |mask: &str, body: Value| {
            send(
                &client,
                reqwest::Method::PATCH,
                format!("{}/v1/{NAME}{mask}", s.url()),
                &token,
                Some(body),
            )
        };
        let (status, job) = patch("?updateMask=schedule", body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(job["schedule"], "0 * * * *");
        assert_eq!(job["description"], "Keepalive tick");
        assert_eq!(job["pubsubTarget"], before["pubsubTarget"]);
        assert_eq!(job["retryConfig"], before["retryConfig"]);
        assert_eq!(s.job(NAME).unwrap()["schedule"], "0 * * * *");
        let next = crate::server::parse_rfc3339(job["scheduleTime"].as_str().unwrap()).unwrap();
        assert_eq!((next.minute(), next.second()), (0, 0));

        // Dotted and snake_case paths.
        let (status, job) = patch("?updateMask=pubsubTarget.data,time_zone", body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(job["pubsubTarget"]["data"], b64("new"));
        assert_eq!(
            job["pubsubTarget"]["attributes"],
            json!({"source": "scheduler"})
        );
        // timeZone was in the mask but not in the body: cleared, then the default again.
        assert_eq!(job["timeZone"], "Etc/UTC");
        assert_eq!(job["description"], "Keepalive tick");

        // The merged job is validated.
        let mut bad = body.clone();
        bad["schedule"] = json!("nope");
        assert_eq!(patch("?updateMask=schedule", bad).await.0, 400);
        assert_eq!(patch("?updateMask=state", body.clone()).await.0, 400);
        assert_eq!(s.job(NAME).unwrap()["schedule"], "0 * * * *");

        // Without a mask, every user field is replaced.
        let mut replace = body.clone();
        replace.as_object_mut().unwrap().remove("description");
        let (status, job) = patch("", replace).await;
        assert_eq!(status, 200);
        assert!(job.get("description").is_none());
        assert_eq!(job["pubsubTarget"]["data"], b64("new"));

        let (status, err) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v1/{PARENT}/jobs/nope?updateMask=schedule", s.url()),
            &token,
            Some(body),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn run_pause_and_resume() {
        let (s, token, client) = fixture().await;
        s.add_job(job_body());
        let verb = |v: &str| {
            send(
                &client,
                reqwest::Method::POST,
                format!("{}/v1/{NAME}:{v}", s.url()),
                &token,
                Some(json!({})),
            )
        };
        assert_eq!(s.runs(NAME), 0);
        let (status, job) = verb("run").await;
        assert_eq!(status, 200);
        assert_eq!(job["name"], NAME);
        assert!(job["lastAttemptTime"].as_str().is_some());
        assert_eq!(job["status"], json!({}));
        verb("run").await;
        assert_eq!(s.runs(NAME), 2);
        let (_, job) = verb("pause").await;
        assert_eq!(job["state"], "PAUSED");
        let (status, err) = verb("pause").await;
        assert_eq!(status, 400, "only an enabled job can be paused");
        assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
        let (_, job) = verb("resume").await;
        assert_eq!(job["state"], "ENABLED");
        let (status, err) = verb("resume").await;
        assert_eq!(status, 400, "only a paused job can be resumed");
        assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
        s.set_state(NAME, "PAUSED");
        assert_eq!(s.job(NAME).unwrap()["state"], "PAUSED");
        let (status, _) = send(
            &client,
            reqwest::Method::POST,
            format!("{}/v1/{PARENT}/jobs/nope:run", s.url()),
            &token,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(s.runs(&format!("{PARENT}/jobs/nope")), 0);
    }

    #[tokio::test]
    async fn tokens_and_scripted_failures() {
        let (s, token, client) = fixture().await;
        s.add_job(job_body());
        let resp = client
            .get(format!("{}/v1/{NAME}", s.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        let get = || {
            send(
                &client,
                reqwest::Method::GET,
                format!("{}/v1/{NAME}", s.url()),
                &token,
                None,
            )
        };
        s.fail_next(429);
        let (status, err) = get().await;
        assert_eq!(status, 429);
        assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(get().await.0, 200);
        s.fail_next(503);
        s.fail_next(500);
        assert_eq!(get().await.1["error"]["status"], "UNAVAILABLE");
        assert_eq!(get().await.1["error"]["status"], "INTERNAL");
        s.fail_always(403);
        assert_eq!(get().await.1["error"]["status"], "PERMISSION_DENIED");
        s.clear_failures();
        assert_eq!(get().await.0, 200);
        assert_eq!(s.requests().len(), 7);
        assert_eq!(s.requests()[0].path, format!("/v1/{NAME}"));
        s.clear_requests();
        assert!(s.requests().is_empty());
    }
}
