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

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::{
    rest::{
        self, as_int, camel_case, get_path, google_error, parse_object, scripted_error, set_path,
    },
    server::{json_response, lock, now, query_param, rfc3339_utc, FakeState, Faults, HttpServer},
    token::TokenRegistry,
};

mod cron;
mod job;

use job::*;

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


fn not_found() -> Response {
    google_error(404, "NOT_FOUND", "Job not found.")
}

fn invalid(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

impl FakeScheduler {
    crate::server::server_controls!();
    rest::scripted_failures!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = SchedState {
            jobs: BTreeMap::new(),
            faults: Faults::default(),
            lost_answers: Faults::default(),
            create_faults: Faults::default(),
        };
        let (state, server) = rest::start(state, tokens, handle, "Cloud Scheduler").await;
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

    /// Every job create answers `status` in the error shape (reads, patches and deletes go
    /// through) until [`accept_creates`](Self::accept_creates).
    pub fn fail_creates(&self, status: u16) {
        lock(&self.state).create_faults.always(status);
    }

    /// Job creates go through again (undoes [`fail_creates`](Self::fail_creates)).
    pub fn accept_creates(&self) {
        lock(&self.state).create_faults.clear();
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
    let mut guard = lock(&ctx.state);
    let st = &mut *guard;
    if let Some(refused) = rest::gate(&headers, &ctx.tokens, &mut st.faults, SCHEDULER_ERRORS) {
        return refused;
    }
    let path = uri.path().trim_matches('/');
    let decoded = rest::segments(path);
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
mod tests;
