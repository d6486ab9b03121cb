//! `FakeSqlAdmin`: the part of Cloud SQL Admin v1 the provisioner uses, under
//! `/v1/projects/{p}/...`: instances (insert, get, list, patch), operations (get, list),
//! users (insert, list, update the password) and databases (list), with bearer tokens
//! checked against a [`TokenRegistry`], scripted errors, and Cloud SQL's error shape
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`.
//!
//! Time is counted in polls, not seconds:
//! - a new instance is `PENDING_CREATE` until its `CREATE` operation is `DONE`, which takes
//!   [`FakeSqlAdmin::set_create_polls`] GETs (default 3); a GET of the instance while it is
//!   being created counts as one of them too (a run resumed after a kill may only poll the
//!   instance). Then it is `RUNNABLE`, with `ipAddresses`, `connectionName` and
//!   `serverCaCert`;
//! - other operations take [`FakeSqlAdmin::set_op_polls`] GETs (default 1: the first GET
//!   answers `DONE`); their effect (settings, users) applies when they are accepted;
//! - like the real API, an instance runs one administrative operation at a time: a PATCH or
//!   a user insert/update while another operation on it is not `DONE` (the create
//!   included) answers 409 `operationInProgress`; listing users or databases of an instance
//!   that is not `RUNNABLE` answers 400 `invalidState`.
//!
//! Inserting a user that exists answers an operation that ends `DONE` with
//! `error.errors[{code: "ERROR_OTHER", ...}]` (what the real API does), unless
//! [`FakeSqlAdmin::set_existing_user_insert_succeeds`] makes it succeed and set the password.
//! Updating a user that does not exist fails its operation the same way.
//!
//! `settings.ipConfiguration.sslMode` and the legacy `requireSsl` must agree, as the real API
//! checks (400 otherwise): `ALLOW_UNENCRYPTED_AND_ENCRYPTED` or `ENCRYPTED_ONLY` with
//! `requireSsl` false, `TRUSTED_CLIENT_CERTIFICATE_REQUIRED` with true; the one not given is
//! derived from the other. Flag values must be JSON strings, authorized networks CIDRs.
//!
//! Passwords (`rootPassword`, users') are never in any answer; tests read them with
//! [`FakeSqlAdmin::user_password`].

// Checks return the answer to give as their error: one allocation less is not worth boxing.
#![allow(clippy::result_large_err)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::server::{FakeState, Fault, Faults};
use crate::{
    server::{
        bearer_token, hang, json_response, lock, now, query_param, random_string, rfc3339_utc,
        HttpServer, SelfSignedCert,
    },
    token::{TokenRegistry, FAKE_CLIENT_EMAIL},
};

/// How the real API writes links (`selfLink`, `targetLink`).
pub const SQL_LINK_PREFIX: &str = "https://sqladmin.googleapis.com/v1";

/// Databases a new instance has that the API lists (`cloudsqladmin`, `template0` and
/// `template1` exist but are not listed).
pub const LISTED_BUILTIN_DATABASES: [&str; 1] = ["postgres"];

/// The routes whose answers can be scripted (and that are counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlRoute {
    /// `POST /v1/projects/{p}/instances`
    InsertInstance,
    /// `GET /v1/projects/{p}/instances`
    ListInstances,
    /// `GET /v1/projects/{p}/instances/{i}`
    GetInstance,
    /// `PATCH /v1/projects/{p}/instances/{i}`
    PatchInstance,
    /// `GET /v1/projects/{p}/operations/{op}`
    GetOperation,
    /// `GET /v1/projects/{p}/operations`
    ListOperations,
    /// `POST /v1/projects/{p}/instances/{i}/users`
    InsertUser,
    /// `GET /v1/projects/{p}/instances/{i}/users`
    ListUsers,
    /// `PUT /v1/projects/{p}/instances/{i}/users?name=N`
    UpdateUser,
    /// `GET /v1/projects/{p}/instances/{i}/databases`
    ListDatabases,
}

struct Instance {
    /// name, databaseVersion, region, settings, ... as stored (never a password).
    resource: Value,
    state: String,
    created: OffsetDateTime,
    ip: String,
    server_ca: Value,
    /// user name -> password
    users: BTreeMap<String, Option<String>>,
    databases: Vec<String>,
    db_list_calls: usize,
    etag: String,
}

struct Operation {
    name: String,
    project: String,
    instance: String,
    op_type: String,
    status: String,
    insert_time: OffsetDateTime,
    start_time: Option<OffsetDateTime>,
    end_time: Option<OffsetDateTime>,
    polls_left: u32,
    error: Option<(String, String)>,
}

struct SqlState {
    /// (project, name)
    instances: BTreeMap<(String, String), Instance>,
    operations: Vec<Operation>,
    create_polls: u32,
    op_polls: u32,
    new_op_error: Option<(String, String)>,
    existing_user_insert_succeeds: bool,
    auto_databases: Option<(usize, Vec<String>)>,
    faults: HashMap<SqlRoute, Faults<Fault>>,
    counts: HashMap<SqlRoute, usize>,
    created: usize,
    next_ip: u32,
}

/// The fake Cloud SQL Admin API.
pub struct FakeSqlAdmin {
    state: Arc<Mutex<SqlState>>,
    server: HttpServer,
}

/// A Cloud SQL error answer.
pub fn sql_error(status: u16, reason: &str, message: &str) -> Response {
    let mut body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    });
    if status == 401 {
        body["error"]["errors"][0]["location"] = json!("Authorization");
        body["error"]["errors"][0]["locationType"] = json!("header");
        body["error"]["status"] = json!("UNAUTHENTICATED");
    }
    json_response(status, &body)
}

fn instance_not_found() -> Response {
    sql_error(
        404,
        "instanceDoesNotExist",
        "The Cloud SQL instance does not exist.",
    )
}

fn already_exists() -> Response {
    sql_error(
        409,
        "instanceAlreadyExists",
        "The Cloud SQL instance already exists.",
    )
}

fn operation_in_progress() -> Response {
    sql_error(
        409,
        "operationInProgress",
        "Operation failed because another operation was already in progress.",
    )
}

fn invalid_state() -> Response {
    sql_error(
        400,
        "invalidState",
        "The instance or operation is not in an appropriate state to handle the request.",
    )
}

fn invalid(message: &str) -> Response {
    sql_error(400, "invalid", &format!("Invalid request: {message}"))
}

fn scripted_error(status: u16, route: SqlRoute) -> Response {
    match status {
        400 => invalid("scripted failure of the fake."),
        401 => sql_error(
            401,
            "required",
            "Request had invalid authentication credentials.",
        ),
        403 => sql_error(
            403,
            "notAuthorized",
            "The client is not authorized to make this request.",
        ),
        404 if route == SqlRoute::GetOperation => sql_error(
            404,
            "operationDoesNotExist",
            "The Cloud SQL operation does not exist.",
        ),
        404 => instance_not_found(),
        409 if route == SqlRoute::InsertInstance => already_exists(),
        409 => operation_in_progress(),
        429 => sql_error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'sqladmin.googleapis.com'.",
        ),
        503 => sql_error(503, "backendError", "The service is currently unavailable."),
        s if s >= 500 => sql_error(s, "backendError", "Internal error encountered."),
        s => sql_error(s, "invalid", "Scripted error"),
    }
}

/// Whether `name` is a valid Cloud SQL instance name.
fn valid_instance_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 98
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `a.b.c.d` or `a.b.c.d/n`.
fn valid_cidr(s: &str) -> bool {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (s, None),
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok()
        && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= 32))
}

/// Objects merged key by key (recursively); anything else replaced; `null` removes.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) =
                    b.get_mut(k).filter(|e| e.is_object() && v.is_object())
                {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

const SSL_MODES: [&str; 3] = [
    "ALLOW_UNENCRYPTED_AND_ENCRYPTED",
    "ENCRYPTED_ONLY",
    "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
];

/// Checks and completes merged settings; `given`: the settings of this request (to know
/// which of `sslMode` / `requireSsl` was given).
fn normalise_settings(settings: &mut Value, given: &Value) -> Result<(), Response> {
    let given_ipc = given.get("ipConfiguration");
    let given_mode = given_ipc
        .and_then(|i| i.get("sslMode"))
        .filter(|v| !v.is_null());
    let given_req = given_ipc
        .and_then(|i| i.get("requireSsl"))
        .filter(|v| !v.is_null());
    let ipc = settings
        .as_object_mut()
        .expect("settings are an object")
        .entry("ipConfiguration")
        .or_insert_with(|| json!({}));
    if !ipc.is_object() {
        return Err(invalid("settings.ipConfiguration must be an object."));
    }
    if let Some(mode) = given_mode {
        if !mode.as_str().is_some_and(|m| SSL_MODES.contains(&m)) {
            return Err(invalid(&format!("Invalid value for sslMode: {mode}.")));
        }
        if given_req.is_none() {
            ipc["requireSsl"] = json!(mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED");
        }
    }
    if let Some(req) = given_req {
        let Some(req) = req.as_bool() else {
            return Err(invalid(&format!("Invalid value for requireSsl: {req}.")));
        };
        if given_mode.is_none() {
            let current = ipc.get("sslMode").and_then(Value::as_str).unwrap_or("");
            let mode = if req {
                "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
            } else if current == "ENCRYPTED_ONLY" {
                "ENCRYPTED_ONLY"
            } else {
                "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
            };
            ipc["sslMode"] = json!(mode);
        }
    }
    let mode = ipc
        .get("sslMode")
        .and_then(Value::as_str)
        .unwrap_or("ALLOW_UNENCRYPTED_AND_ENCRYPTED")
        .to_owned();
    let req = ipc
        .get("requireSsl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if req != (mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED") {
        // The real API's words (for a PostgreSQL instance).
        return Err(invalid(&format!(
            "For a Postgres instance, sslMode value {mode} and requireSsl value {req} are \
             conflicting. When sslMode=ENCRYPTED_ONLY, requireSsl must be false. When \
             requireSsl=true, sslMode must be TRUSTED_CLIENT_CERTIFICATE_REQUIRED. It's \
             recommended that you only set sslMode."
        )));
    }
    ipc["sslMode"] = json!(mode);
    ipc["requireSsl"] = json!(req);
    if ipc.get("ipv4Enabled").is_none() {
        ipc["ipv4Enabled"] = json!(true);
    }
    if let Some(nets) = ipc.get_mut("authorizedNetworks") {
        let Some(list) = nets.as_array_mut() else {
            return Err(invalid("authorizedNetworks must be a list."));
        };
        for net in list.iter_mut() {
            let value = net.get("value").and_then(Value::as_str).unwrap_or("");
            if !valid_cidr(value) {
                return Err(invalid(&format!(
                    "Non-routable or invalid network address in authorizedNetworks: '{value}'."
                )));
            }
            if let Some(o) = net.as_object_mut() {
                o.insert("kind".into(), json!("sql#aclEntry"));
            }
        }
    }
    if let Some(flags) = settings.get("databaseFlags") {
        let Some(list) = flags.as_array() else {
            return Err(invalid("databaseFlags must be a list."));
        };
        for (i, flag) in list.iter().enumerate() {
            if !flag.get("name").is_some_and(Value::is_string) {
                return Err(invalid(&format!("databaseFlags[{i}].name is required.")));
            }
            match flag.get("value") {
                None | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(sql_error(
                        400,
                        "invalid",
                        &format!("Invalid value at 'body.settings.database_flags[{i}].value' (TYPE_STRING), {other}"),
                    ))
                }
            }
        }
    }
    Ok(())
}

fn default_settings(region: &str) -> Value {
    json!({
        "kind": "sql#settings",
        "settingsVersion": "1",
        "activationPolicy": "ALWAYS",
        "availabilityType": "ZONAL",
        "pricingPlan": "PER_USE",
        "replicationType": "SYNCHRONOUS",
        "dataDiskType": "PD_SSD",
        "dataDiskSizeGb": "10",
        "storageAutoResize": true,
        "storageAutoResizeLimit": "0",
        "edition": "ENTERPRISE",
        "ipConfiguration": {
            "ipv4Enabled": true,
            "requireSsl": false,
            "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED",
            "authorizedNetworks": [],
        },
        "backupConfiguration": {
            "kind": "sql#backupConfiguration",
            "enabled": false,
            "startTime": "23:00",
            "pointInTimeRecoveryEnabled": false,
            "transactionLogRetentionDays": 7,
            "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 7},
        },
        "locationPreference": {"kind": "sql#locationPreference", "zone": format!("{region}-b")},
    })
}

fn sha1_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SqlState {
    fn fresh_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        if n <= 254 {
            format!("198.51.100.{n}")
        } else {
            let m = n - 255;
            format!("198.19.{}.{}", (m / 250) % 256, 1 + m % 250)
        }
    }

    /// Checks an insert body and builds the instance (`PENDING_CREATE`).
    fn build_instance(&mut self, body: &Value) -> Result<(String, Instance), Response> {
        let Some(name) = body.get("name").and_then(Value::as_str) else {
            return Err(invalid("instance name is required."));
        };
        if !valid_instance_name(name) {
            return Err(invalid(&format!(
                "instance name '{name}' is invalid: use lower-case letters, digits and \
                 hyphens, starting with a letter."
            )));
        }
        let region = body
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("us-central1")
            .to_owned();
        let version = body
            .get("databaseVersion")
            .and_then(Value::as_str)
            .unwrap_or("MYSQL_8_0")
            .to_owned();
        let given = body.get("settings").cloned().unwrap_or_else(|| json!({}));
        if !given.is_object() {
            return Err(invalid("settings must be an object."));
        }
        if !given.get("tier").is_some_and(Value::is_string) {
            return Err(invalid(
                "Invalid Tier (null) for (SECOND_GEN) Edition (ENTERPRISE).",
            ));
        }
        let mut settings = default_settings(&region);
        merge(&mut settings, &given);
        normalise_settings(&mut settings, &given)?;
        let mut resource = body.clone();
        let obj = resource.as_object_mut().expect("body is an object");
        obj.remove("rootPassword");
        obj.insert("region".into(), json!(region));
        obj.insert("databaseVersion".into(), json!(version));
        obj.insert("settings".into(), settings);

        let mut users = BTreeMap::new();
        if version.starts_with("POSTGRES") {
            users.insert(
                "postgres".to_owned(),
                body.get("rootPassword")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        } else {
            users.insert(
                "root".to_owned(),
                body.get("rootPassword")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
        let t = now();
        let ca = SelfSignedCert::generate("Google Cloud SQL Server CA");
        let server_ca = json!({
            "kind": "sql#sslCert",
            "certSerialNumber": "0",
            "cert": ca.cert_pem,
            "commonName": "C=US,O=Google\\, Inc,CN=Google Cloud SQL Server CA,dnQualifier=fake",
            "sha1Fingerprint": sha1_hex(&ca.cert_der),
            "instance": name,
            "createTime": rfc3339_utc(t),
            "expirationTime": rfc3339_utc(t + time::Duration::days(3650)),
        });
        let inst = Instance {
            resource,
            state: "PENDING_CREATE".into(),
            created: t,
            ip: self.fresh_ip(),
            server_ca,
            users,
            databases: LISTED_BUILTIN_DATABASES
                .iter()
                .map(|d| (*d).to_owned())
                .collect(),
            db_list_calls: 0,
            etag: random_string(32),
        };
        Ok((name.to_owned(), inst))
    }

    fn instance_json(&self, project: &str, name: &str, inst: &Instance) -> Value {
        let mut v = inst.resource.clone();
        let region = v
            .get("region")
            .and_then(Value::as_str)
            .unwrap_or("us-central1")
            .to_owned();
        let obj = v.as_object_mut().expect("resource is an object");
        for (k, val) in [
            ("kind", json!("sql#instance")),
            ("state", json!(inst.state)),
            ("name", json!(name)),
            ("project", json!(project)),
            (
                "connectionName",
                json!(format!("{project}:{region}:{name}")),
            ),
            (
                "selfLink",
                json!(format!(
                    "{SQL_LINK_PREFIX}/projects/{project}/instances/{name}"
                )),
            ),
            ("instanceType", json!("CLOUD_SQL_INSTANCE")),
            ("backendType", json!("SECOND_GEN")),
            ("gceZone", json!(format!("{region}-b"))),
            ("createTime", json!(rfc3339_utc(inst.created))),
            ("etag", json!(inst.etag)),
            (
                "serviceAccountEmailAddress",
                json!(format!(
                    "p{}-fake@gcp-sa-cloud-sql.iam.gserviceaccount.com",
                    project.len()
                )),
            ),
        ] {
            obj.insert(k.into(), val);
        }
        if inst.state == "RUNNABLE" {
            let ipv4 = obj
                .get("settings")
                .and_then(|s| s.pointer("/ipConfiguration/ipv4Enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if ipv4 {
                obj.insert(
                    "ipAddresses".into(),
                    json!([{"type": "PRIMARY", "ipAddress": inst.ip}]),
                );
            }
            obj.insert("serverCaCert".into(), inst.server_ca.clone());
        }
        v
    }

    fn op_json(&self, op: &Operation) -> Value {
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

    fn new_operation(
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
    fn advance(&mut self, idx: usize) {
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
    fn on_done(&mut self, idx: usize) {
        let op = &self.operations[idx];
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
    fn cap_pending(&mut self, creates: bool, n: u32) {
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

    fn pending_op(&self, project: &str, instance: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|o| o.project == project && o.instance == instance && o.status != "DONE")
    }

    fn pending_create(&self, project: &str, instance: &str) -> Option<usize> {
        self.operations.iter().position(|o| {
            o.project == project
                && o.instance == instance
                && o.op_type == "CREATE"
                && o.status != "DONE"
        })
    }

    fn find_instance_by_name(&mut self, name: &str) -> Option<&mut Instance> {
        self.instances
            .iter_mut()
            .find(|((_, n), _)| n == name)
            .map(|(_, i)| i)
    }
}

impl FakeSqlAdmin {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(SqlState {
            instances: BTreeMap::new(),
            operations: Vec::new(),
            create_polls: 3,
            op_polls: 1,
            new_op_error: None,
            existing_user_insert_succeeds: false,
            auto_databases: None,
            faults: HashMap::new(),
            counts: HashMap::new(),
            created: 0,
            next_ip: 10,
        }));
        let ctx = FakeState {
            state: state.clone(),
            tokens,
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Cloud SQL Admin server");
        FakeSqlAdmin { state, server }
    }

    /// A `CREATE` operation needs this many polls (GETs of it, or of its instance) to be
    /// `DONE`; the instance is `PENDING_CREATE` until then. Default 3. 0: `RUNNABLE` at once.
    /// Creates already pending get at most `n` polls left (0: they end now), so a test can
    /// let a "slow" creation finish in the background.
    pub fn set_create_polls(&self, n: u32) {
        let mut st = lock(&self.state);
        st.create_polls = n;
        st.cap_pending(true, n);
    }

    /// Other operations need this many GETs to be `DONE`. Default 1. 0: `DONE` at once.
    /// Such operations already pending get at most `n` polls left (0: they end now).
    pub fn set_op_polls(&self, n: u32) {
        let mut st = lock(&self.state);
        st.op_polls = n;
        st.cap_pending(false, n);
    }

    /// New operations end `DONE` with `error.errors[{code, message}]` and change nothing (a
    /// failed create removes its instance when its operation ends). None: no error.
    pub fn set_new_op_error(&self, error: Option<(&str, &str)>) {
        lock(&self.state).new_op_error = error.map(|(c, m)| (c.to_owned(), m.to_owned()));
    }

    /// Whether inserting a user that exists succeeds (and sets its password) instead of
    /// failing its operation with `ERROR_OTHER` (the default, as the real API).
    pub fn set_existing_user_insert_succeeds(&self, succeeds: bool) {
        lock(&self.state).existing_user_insert_succeeds = succeeds;
    }

    /// Every instance's database list gets `names` once it has been listed `n_list_calls`
    /// times without them (0: at the first listing): WhatsApp creating its databases on
    /// first start.
    pub fn auto_databases_after(&self, n_list_calls: usize, names: &[&str]) {
        lock(&self.state).auto_databases = Some((
            n_list_calls,
            names.iter().map(|n| (*n).to_owned()).collect(),
        ));
    }

    /// Adds a database to the instance named `instance` (in any project). Panics if unknown.
    pub fn add_database(&self, instance: &str, name: &str) {
        let mut st = lock(&self.state);
        let inst = st
            .find_instance_by_name(instance)
            .unwrap_or_else(|| panic!("FakeSqlAdmin: no instance {instance}"));
        if !inst.databases.iter().any(|d| d == name) {
            inst.databases.push(name.to_owned());
        }
    }

    /// The databases the API lists for the instance named `instance`.
    pub fn databases(&self, instance: &str) -> Vec<String> {
        lock(&self.state)
            .find_instance_by_name(instance)
            .map(|i| i.databases.clone())
            .unwrap_or_default()
    }

    /// The password of a user of the instance named `instance` (in any project): the
    /// `rootPassword` for `postgres`, else the last one set through the API.
    pub fn user_password(&self, instance: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .find_instance_by_name(instance)
            .and_then(|i| i.users.get(name).cloned().flatten())
    }

    /// The users of the instance named `instance`, sorted.
    pub fn users(&self, instance: &str) -> Vec<String> {
        lock(&self.state)
            .find_instance_by_name(instance)
            .map(|i| i.users.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The instance as `GET` answers it (full resource, settings included; no polling).
    pub fn instance(&self, project: &str, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        st.instances
            .get(&(project.into(), name.into()))
            .map(|i| st.instance_json(project, name, i))
    }

    /// The instance's state (`PENDING_CREATE`, `RUNNABLE`, ...).
    pub fn state(&self, project: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .instances
            .get(&(project.into(), name.into()))
            .map(|i| i.state.clone())
    }

    /// Instances created through the API (not seeded ones, nor refused inserts, nor inserts
    /// failed by [`set_new_op_error`](Self::set_new_op_error)).
    pub fn created_count(&self) -> usize {
        lock(&self.state).created
    }

    /// Adds an instance from an insert body as if created long ago: `RUNNABLE`, not
    /// counted, no operation. Panics on a body the insert would refuse.
    pub fn seed_instance(&self, project: &str, body: Value) {
        let mut st = lock(&self.state);
        let (name, mut inst) = st
            .build_instance(&body)
            .unwrap_or_else(|_| panic!("FakeSqlAdmin::seed_instance: invalid body {body}"));
        inst.state = "RUNNABLE".into();
        inst.created = now() - time::Duration::days(1);
        st.instances.insert((project.into(), name), inst);
    }

    /// Sets a value inside the stored instance, by JSON pointer into the resource as
    /// [`instance`](Self::instance) shows it (e.g. `/settings/databaseFlags/0/value`, or
    /// `/state`): drift made outside the provisioner. Missing object members are created;
    /// `-` appends to an array. Panics if the instance is unknown or the pointer cannot be
    /// followed.
    pub fn set_instance_setting(&self, project: &str, name: &str, pointer: &str, value: Value) {
        let mut st = lock(&self.state);
        let inst = st
            .instances
            .get_mut(&(project.into(), name.into()))
            .unwrap_or_else(|| panic!("FakeSqlAdmin: no instance {project}/{name}"));
        if pointer == "/state" {
            inst.state = value.as_str().expect("state is a string").to_owned();
            return;
        }
        set_pointer(&mut inst.resource, pointer, value)
            .unwrap_or_else(|why| panic!("FakeSqlAdmin::set_instance_setting({pointer}): {why}"));
        inst.etag = random_string(32);
    }

    /// Sets (or adds) a database flag of the stored instance (drift). Panics if unknown.
    pub fn set_database_flag(&self, project: &str, name: &str, flag: &str, value: &str) {
        let mut st = lock(&self.state);
        let inst = st
            .instances
            .get_mut(&(project.into(), name.into()))
            .unwrap_or_else(|| panic!("FakeSqlAdmin: no instance {project}/{name}"));
        let settings = &mut inst.resource["settings"];
        let flags = settings
            .as_object_mut()
            .expect("settings are an object")
            .entry("databaseFlags")
            .or_insert_with(|| json!([]));
        let list = flags.as_array_mut().expect("databaseFlags is a list");
        match list.iter_mut().find(|f| f["name"] == flag) {
            Some(f) => f["value"] = json!(value),
            None => list.push(json!({"name": flag, "value": value})),
        }
    }

    /// Every operation, oldest first, as the API shows it.
    pub fn operations(&self) -> Vec<Value> {
        let st = lock(&self.state);
        st.operations.iter().map(|o| st.op_json(o)).collect()
    }

    /// The next `n` requests to `route` (after authentication) answer `status` in Cloud
    /// SQL's error shape (404 instanceDoesNotExist, 409 instanceAlreadyExists on insert,
    /// operationInProgress elsewhere, 429 rateLimitExceeded, 5xx backendError, ...).
    pub fn fail_next(&self, route: SqlRoute, n: usize, status: u16) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .next(n, Fault::Status(status));
    }

    /// Every request to `route` answers `status` until [`clear_faults`](Self::clear_faults).
    pub fn fail_always(&self, route: SqlRoute, status: u16) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .always(Fault::Status(status));
    }

    /// The next `n` requests to `route` never get an answer.
    pub fn hang_next(&self, route: SqlRoute, n: usize) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .next(n, Fault::Hang);
    }

    /// Requests to `route` are answered after `delay` (until cleared).
    pub fn delay_always(&self, route: SqlRoute, delay: Duration) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .always(Fault::Delay(delay));
    }

    /// Removes every scripted fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Requests to `route` so far (whatever the answer, authenticated or not).
    pub fn route_count(&self, route: SqlRoute) -> usize {
        lock(&self.state).counts.get(&route).copied().unwrap_or(0)
    }
}

/// Sets `value` at a JSON pointer, creating missing object members.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("a pointer starts with '/'".into());
    };
    let tokens: Vec<String> = rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut cur = root;
    for (i, tok) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        cur = match cur {
            Value::Object(map) => {
                if last {
                    map.insert(tok.clone(), value);
                    return Ok(());
                }
                map.entry(tok.clone()).or_insert_with(|| json!({}))
            }
            Value::Array(list) => {
                if tok == "-" {
                    if last {
                        list.push(value);
                        return Ok(());
                    }
                    list.push(json!({}));
                    list.last_mut().expect("just pushed")
                } else {
                    let idx: usize = tok.parse().map_err(|_| format!("bad index {tok}"))?;
                    let len = list.len();
                    let slot = list
                        .get_mut(idx)
                        .ok_or_else(|| format!("index {idx} out of {len}"))?;
                    if last {
                        *slot = value;
                        return Ok(());
                    }
                    slot
                }
            }
            _ => return Err(format!("'{tok}' is below a value that is not a container")),
        };
    }
    *cur = value;
    Ok(())
}

enum Route<'a> {
    InsertInstance { p: &'a str },
    ListInstances { p: &'a str },
    GetInstance { p: &'a str, i: &'a str },
    PatchInstance { p: &'a str, i: &'a str },
    GetOperation { p: &'a str, op: &'a str },
    ListOperations { p: &'a str },
    InsertUser { p: &'a str, i: &'a str },
    ListUsers { p: &'a str, i: &'a str },
    UpdateUser { p: &'a str, i: &'a str },
    ListDatabases { p: &'a str, i: &'a str },
}

impl Route<'_> {
    fn route(&self) -> SqlRoute {
        match self {
            Route::InsertInstance { .. } => SqlRoute::InsertInstance,
            Route::ListInstances { .. } => SqlRoute::ListInstances,
            Route::GetInstance { .. } => SqlRoute::GetInstance,
            Route::PatchInstance { .. } => SqlRoute::PatchInstance,
            Route::GetOperation { .. } => SqlRoute::GetOperation,
            Route::ListOperations { .. } => SqlRoute::ListOperations,
            Route::InsertUser { .. } => SqlRoute::InsertUser,
            Route::ListUsers { .. } => SqlRoute::ListUsers,
            Route::UpdateUser { .. } => SqlRoute::UpdateUser,
            Route::ListDatabases { .. } => SqlRoute::ListDatabases,
        }
    }
}

fn parse_route<'a>(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
    let m = method.as_str();
    let ["v1", "projects", p, ref rest @ ..] = *segs else {
        return None;
    };
    Some(match (m, rest) {
        ("POST", ["instances"]) => Route::InsertInstance { p },
        ("GET", ["instances"]) => Route::ListInstances { p },
        ("GET", ["instances", i]) => Route::GetInstance { p, i },
        ("PATCH", ["instances", i]) => Route::PatchInstance { p, i },
        ("GET", ["operations"]) => Route::ListOperations { p },
        ("GET", ["operations", op]) => Route::GetOperation { p, op },
        ("POST", ["instances", i, "users"]) => Route::InsertUser { p, i },
        ("GET", ["instances", i, "users"]) => Route::ListUsers { p, i },
        ("PUT", ["instances", i, "users"]) => Route::UpdateUser { p, i },
        ("GET", ["instances", i, "databases"]) => Route::ListDatabases { p, i },
        _ => return None,
    })
}

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(sql_error(
            400,
            "parseError",
            "Invalid JSON payload received. Expected a JSON object.",
        )),
    }
}

async fn handle(
    State(ctx): State<FakeState<SqlState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let Some(route) = parse_route(&method, &segs) else {
        return sql_error(
            404,
            "notFound",
            &format!(
                "The requested URL {} was not found on this server.",
                uri.path()
            ),
        );
    };
    let which = route.route();
    *lock(&ctx.state).counts.entry(which).or_default() += 1;
    if !bearer_token(&headers).is_some_and(|t| ctx.tokens.is_valid(t)) {
        return sql_error(
            401,
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let fault = {
        let mut st = lock(&ctx.state);
        st.faults.get_mut(&which).and_then(Faults::take)
    };
    match fault {
        Some(Fault::Hang) => match hang().await {},
        Some(Fault::Status(status)) => return scripted_error(status, which),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut guard = lock(&ctx.state);
    let st = &mut *guard;
    match route {
        Route::InsertInstance { p } => {
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                if st.instances.contains_key(&(p.to_owned(), name.to_owned())) {
                    return already_exists();
                }
            }
            let (name, inst) = match st.build_instance(&body) {
                Ok(x) => x,
                Err(resp) => return resp,
            };
            let error = st.new_op_error.clone();
            if error.is_none() {
                st.created += 1;
            }
            st.instances.insert((p.to_owned(), name.clone()), inst);
            let polls = st.create_polls;
            let idx = st.new_operation(p, &name, "CREATE", polls, error);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::ListInstances { p } => {
            let items: Vec<Value> = st
                .instances
                .iter()
                .filter(|((ip, _), _)| ip == p)
                .map(|((ip, n), i)| st.instance_json(ip, n, i))
                .collect();
            let mut body = json!({"kind": "sql#instancesList"});
            if !items.is_empty() {
                body["items"] = Value::Array(items);
            }
            json_response(200, &body)
        }
        Route::GetInstance { p, i } => {
            if let Some(idx) = st.pending_create(p, i) {
                st.advance(idx);
            }
            match st.instances.get(&(p.to_owned(), i.to_owned())) {
                Some(inst) => json_response(200, &st.instance_json(p, i, inst)),
                None => instance_not_found(),
            }
        }
        Route::PatchInstance { p, i } => {
            let key = (p.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return instance_not_found();
            };
            let mut resource = inst.resource.clone();
            let patch = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if st.pending_op(p, i).is_some() {
                return operation_in_progress();
            }
            if let Some(given) = patch.get("settings") {
                if !given.is_object() {
                    return invalid("settings must be an object.");
                }
                let settings = &mut resource["settings"];
                let version: u64 = settings
                    .get("settingsVersion")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let mut given = given.clone();
                if let Some(o) = given.as_object_mut() {
                    o.remove("settingsVersion");
                    o.remove("kind");
                }
                merge(settings, &given);
                if let Err(resp) = normalise_settings(settings, &given) {
                    return resp;
                }
                settings["settingsVersion"] = json!((version + 1).to_string());
            }
            let error = st.new_op_error.clone();
            if error.is_none() {
                if let Some(inst) = st.instances.get_mut(&key) {
                    inst.resource = resource;
                    inst.etag = random_string(32);
                }
            }
            let polls = st.op_polls;
            let idx = st.new_operation(p, i, "UPDATE", polls, error);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::GetOperation { p, op } => {
            match st
                .operations
                .iter()
                .position(|o| o.project == p && o.name == op)
            {
                Some(idx) => {
                    st.advance(idx);
                    json_response(200, &st.op_json(&st.operations[idx]))
                }
                None => sql_error(
                    404,
                    "operationDoesNotExist",
                    "The Cloud SQL operation does not exist.",
                ),
            }
        }
        Route::ListOperations { p } => {
            let instance = query_param(uri.query(), "instance");
            let mut items: Vec<Value> = st
                .operations
                .iter()
                .filter(|o| o.project == p && instance.as_ref().is_none_or(|i| *i == o.instance))
                .map(|o| st.op_json(o))
                .collect();
            items.reverse();
            let mut body = json!({"kind": "sql#operationsList"});
            if !items.is_empty() {
                body["items"] = Value::Array(items);
            }
            json_response(200, &body)
        }
        Route::InsertUser { p, i } => {
            let key = (p.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return instance_not_found();
            };
            let exists_before = |name: &str| inst.users.contains_key(name);
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let Some(name) = body
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return invalid("user name is required.");
            };
            let exists = exists_before(name);
            if st.pending_op(p, i).is_some() {
                return operation_in_progress();
            }
            let password = body
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut error = st.new_op_error.clone();
            if error.is_none() && exists && !st.existing_user_insert_succeeds {
                error = Some((
                    "ERROR_OTHER".into(),
                    format!("Failed to create user {name}. Details: pq: role \"{name}\" already exists."),
                ));
            }
            if error.is_none() {
                if let Some(inst) = st.instances.get_mut(&key) {
                    inst.users.insert(name.to_owned(), password);
                }
            }
            let polls = st.op_polls;
            let idx = st.new_operation(p, i, "CREATE_USER", polls, error);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::UpdateUser { p, i } => {
            let key = (p.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return instance_not_found();
            };
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let Some(name) = query_param(uri.query(), "name")
                .or_else(|| body.get("name").and_then(Value::as_str).map(str::to_owned))
                .filter(|n| !n.is_empty())
            else {
                return invalid("user name is required (?name=).");
            };
            let exists = inst.users.contains_key(&name);
            if st.pending_op(p, i).is_some() {
                return operation_in_progress();
            }
            let password = body
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mut error = st.new_op_error.clone();
            if error.is_none() && !exists {
                error = Some((
                    "ERROR_OTHER".into(),
                    format!("Failed to update user {name}. Details: pq: role \"{name}\" does not exist."),
                ));
            }
            if error.is_none() {
                if let Some(inst) = st.instances.get_mut(&key) {
                    inst.users.insert(name.clone(), password);
                }
            }
            let polls = st.op_polls;
            let idx = st.new_operation(p, i, "UPDATE_USER", polls, error);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::ListUsers { p, i } => {
            let Some(inst) = st.instances.get(&(p.to_owned(), i.to_owned())) else {
                return instance_not_found();
            };
            if inst.state != "RUNNABLE" {
                return invalid_state();
            }
            let items: Vec<Value> = inst
                .users
                .keys()
                .map(|name| {
                    json!({
                        "kind": "sql#user",
                        "name": name,
                        "host": "",
                        "instance": i,
                        "project": p,
                        "etag": "fake-etag",
                    })
                })
                .collect();
            json_response(200, &json!({"kind": "sql#usersList", "items": items}))
        }
        Route::ListDatabases { p, i } => {
            let auto = st.auto_databases.clone();
            let Some(inst) = st.instances.get_mut(&(p.to_owned(), i.to_owned())) else {
                return instance_not_found();
            };
            if inst.state != "RUNNABLE" {
                return invalid_state();
            }
            if let Some((after, names)) = auto {
                if inst.db_list_calls >= after {
                    for n in names {
                        if !inst.databases.contains(&n) {
                            inst.databases.push(n);
                        }
                    }
                }
            }
            inst.db_list_calls += 1;
            let items: Vec<Value> = inst
                .databases
                .iter()
                .map(|name| {
                    json!({
                        "kind": "sql#database",
                        "charset": "UTF8",
                        "collation": "en_US.UTF8",
                        "etag": "fake-etag",
                        "name": name,
                        "instance": i,
                        "project": p,
                        "selfLink": format!("{SQL_LINK_PREFIX}/projects/{p}/instances/{i}/databases/{name}"),
                    })
                })
                .collect();
            json_response(200, &json!({"kind": "sql#databasesList", "items": items}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "proj";
    const ROOT_PW: &str = "r00t-Pa55word!xyz";

    struct Fixture {
        sql: FakeSqlAdmin,
        token: String,
        client: reqwest::Client,
    }

    async fn fixture() -> Fixture {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        let sql = FakeSqlAdmin::start(tokens).await;
        Fixture {
            sql,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    impl Fixture {
        /// `method` on `/v1/projects/{P}/{rest}`; answers the status and the body as text.
        async fn raw(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, String) {
            let mut req = self
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}/v1/projects/{P}/{rest}", self.sql.url()),
                )
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }

        async fn call(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, Value) {
            let (status, text) = self.raw(method, rest, body).await;
            assert!(!text.contains(ROOT_PW), "password echoed: {text}");
            assert!(!text.contains("Us3r-Pa55!"), "password echoed: {text}");
            (status, serde_json::from_str(&text).unwrap())
        }

        /// Polls an operation until DONE (at most 10 GETs).
        async fn wait(&self, op: &Value) -> Value {
            let name = op["name"].as_str().unwrap();
            for _ in 0..10 {
                let (status, op) = self.call("GET", &format!("operations/{name}"), None).await;
                assert_eq!(status, 200);
                if op["status"] == "DONE" {
                    return op;
                }
            }
            panic!("operation {name} not DONE after 10 polls");
        }
    }

    fn create_body(name: &str) -> Value {
        json!({
            "name": name,
            "databaseVersion": "POSTGRES_13",
            "region": "europe-west3",
            "rootPassword": ROOT_PW,
            "settings": {
                "tier": "db-custom-1-3840",
                "ipConfiguration": {
                    "ipv4Enabled": true,
                    "authorizedNetworks": [{"name": "vm", "value": "203.0.113.10/32"}],
                    "sslMode": "ENCRYPTED_ONLY"
                },
                "databaseFlags": [{"name": "max_connections", "value": "1000"}],
                "backupConfiguration": {"enabled": true, "startTime": "02:00"}
            }
        })
    }

    #[tokio::test]
    async fn create_goes_from_pending_create_to_runnable() {
        let f = fixture().await;
        let (status, op) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["kind"], "sql#operation");
        assert_eq!(op["status"], "PENDING");
        assert_eq!(op["operationType"], "CREATE");
        assert_eq!(op["targetId"], "wa-db");
        assert_eq!(op["targetProject"], P);
        assert_eq!(
            op["targetLink"],
            format!("{SQL_LINK_PREFIX}/projects/{P}/instances/wa-db")
        );
        let name = op["name"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&name).is_ok());
        assert_eq!(
            op["selfLink"],
            format!("{SQL_LINK_PREFIX}/projects/{P}/operations/{name}")
        );
        assert!(op["insertTime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(f.sql.created_count(), 1);

        // Default 3 polls: the instance GET counts as one.
        let (_, inst) = f.call("GET", "instances/wa-db", None).await;
        assert_eq!(inst["state"], "PENDING_CREATE");
        assert!(inst.get("ipAddresses").is_none());
        let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
        assert_eq!(op["status"], "RUNNING");
        assert!(op["startTime"].is_string() && op.get("endTime").is_none());
        let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
        assert_eq!(op["status"], "DONE");
        assert!(op.get("error").is_none());
        assert!(op["endTime"].is_string());

        let (status, inst) = f.call("GET", "instances/wa-db", None).await;
        assert_eq!(status, 200);
        assert_eq!(inst["kind"], "sql#instance");
        assert_eq!(inst["state"], "RUNNABLE");
        assert_eq!(inst["databaseVersion"], "POSTGRES_13");
        assert_eq!(inst["connectionName"], "proj:europe-west3:wa-db");
        assert_eq!(inst["ipAddresses"][0]["type"], "PRIMARY");
        let ip = inst["ipAddresses"][0]["ipAddress"].as_str().unwrap();
        assert!(ip.starts_with("198.51.100."), "{ip}");
        assert!(inst["serverCaCert"]["cert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let settings = &inst["settings"];
        assert_eq!(settings["tier"], "db-custom-1-3840");
        assert_eq!(
            settings["databaseFlags"],
            json!([{"name": "max_connections", "value": "1000"}])
        );
        assert_eq!(settings["ipConfiguration"]["sslMode"], "ENCRYPTED_ONLY");
        assert_eq!(settings["ipConfiguration"]["requireSsl"], false);
        assert_eq!(
            settings["ipConfiguration"]["authorizedNetworks"][0]["value"],
            "203.0.113.10/32"
        );
        assert_eq!(settings["backupConfiguration"]["enabled"], true);
        assert_eq!(settings["backupConfiguration"]["startTime"], "02:00");
        assert_eq!(settings["activationPolicy"], "ALWAYS");
        assert!(inst.get("rootPassword").is_none());
        assert_eq!(f.sql.instance(P, "wa-db").unwrap(), inst);
        assert_eq!(f.sql.state(P, "wa-db").as_deref(), Some("RUNNABLE"));
        assert_eq!(
            f.sql.user_password("wa-db", "postgres").as_deref(),
            Some(ROOT_PW)
        );

        // Duplicate: 409 in the documented shape, nothing new.
        let (status, err) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        assert_eq!(status, 409);
        assert_eq!(
            err,
            json!({"error": {"code": 409, "message": "The Cloud SQL instance already exists.", "errors": [{"domain": "global", "reason": "instanceAlreadyExists", "message": "The Cloud SQL instance already exists."}]}})
        );
        assert_eq!(f.sql.created_count(), 1);
        let (status, err) = f.call("GET", "instances/nope", None).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["code"], 404);
        assert_eq!(
            err["error"]["message"],
            "The Cloud SQL instance does not exist."
        );
        assert_eq!(err["error"]["errors"][0]["reason"], "instanceDoesNotExist");
        assert_eq!(f.call("GET", "operations/nope", None).await.0, 404);

        // Listing instances and operations.
        let (_, list) = f.call("GET", "instances", None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let (_, ops) = f.call("GET", "operations?instance=wa-db", None).await;
        assert_eq!(ops["items"][0]["name"], name.as_str());

        // Wait at most; bad bodies.
        f.sql.set_create_polls(0);
        let (_, op) = f
            .call("POST", "instances", Some(&create_body("fast")))
            .await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(f.sql.state(P, "fast").as_deref(), Some("RUNNABLE"));
        let mut bad = create_body("bad");
        bad["settings"]["databaseFlags"][0]["value"] = json!(1000);
        assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
        let mut bad = create_body("bad");
        bad["settings"]["ipConfiguration"]["requireSsl"] = json!(true);
        let (status, err) = f.call("POST", "instances", Some(&bad)).await;
        assert_eq!(status, 400);
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sslMode value ENCRYPTED_ONLY and requireSsl value true are conflicting"));
        let mut bad = create_body("bad");
        bad["settings"].as_object_mut().unwrap().remove("tier");
        assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
        let mut bad = create_body("bad");
        bad["settings"]["ipConfiguration"]["authorizedNetworks"][0]["value"] = json!("vm-ip");
        assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
        assert_eq!(
            f.call("POST", "instances", Some(&create_body("Bad_Name")))
                .await
                .0,
            400
        );
        assert!(f.sql.instance(P, "bad").is_none());
        assert_eq!(f.sql.created_count(), 2);
        assert_eq!(f.sql.route_count(SqlRoute::InsertInstance), 8);
    }

    #[tokio::test]
    async fn patch_merges_settings_and_waits_for_the_create() {
        let f = fixture().await;
        let (_, create) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        let patch = json!({"settings": {
            "databaseFlags": [{"name": "max_connections", "value": "1000"}],
            "ipConfiguration": {"authorizedNetworks": [{"name": "vm", "value": "203.0.113.11/32"}]}
        }});
        // One operation at a time: the create is not DONE yet.
        let (status, err) = f.call("PATCH", "instances/wa-db", Some(&patch)).await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["errors"][0]["reason"], "operationInProgress");
        assert_eq!(f.call("GET", "instances/wa-db/users", None).await.0, 400);
        assert_eq!(
            f.call("GET", "instances/wa-db/databases", None).await.0,
            400
        );
        f.wait(&create).await;

        // Drift made outside.
        f.sql
            .set_instance_setting(P, "wa-db", "/settings/databaseFlags/0/value", json!("500"));
        assert_eq!(
            f.sql.instance(P, "wa-db").unwrap()["settings"]["databaseFlags"][0]["value"],
            "500"
        );
        let version = f.sql.instance(P, "wa-db").unwrap()["settings"]["settingsVersion"].clone();
        assert_eq!(version, "1");

        let (status, op) = f.call("PATCH", "instances/wa-db", Some(&patch)).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "UPDATE");
        assert_eq!(op["status"], "PENDING");
        // Not DONE yet: another PATCH waits.
        assert_eq!(
            f.call("PATCH", "instances/wa-db", Some(&patch)).await.0,
            409
        );
        let done = f.wait(&op).await;
        assert!(done.get("error").is_none());
        let inst = f.sql.instance(P, "wa-db").unwrap();
        let settings = &inst["settings"];
        assert_eq!(settings["databaseFlags"][0]["value"], "1000");
        assert_eq!(
            settings["ipConfiguration"]["authorizedNetworks"],
            json!([{"name": "vm", "value": "203.0.113.11/32", "kind": "sql#aclEntry"}])
        );
        // Fields not given are kept.
        assert_eq!(settings["tier"], "db-custom-1-3840");
        assert_eq!(settings["ipConfiguration"]["sslMode"], "ENCRYPTED_ONLY");
        assert_eq!(settings["backupConfiguration"]["startTime"], "02:00");
        assert_eq!(settings["settingsVersion"], "2");

        // requireSsl alone moves sslMode along; an inconsistent pair is refused.
        let (status, op) = f
            .call(
                "PATCH",
                "instances/wa-db",
                Some(&json!({"settings": {"ipConfiguration": {"requireSsl": true}}})),
            )
            .await;
        assert_eq!(status, 200);
        f.wait(&op).await;
        assert_eq!(
            f.sql.instance(P, "wa-db").unwrap()["settings"]["ipConfiguration"]["sslMode"],
            "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
        );
        let (status, _) = f
            .call(
                "PATCH",
                "instances/wa-db",
                Some(&json!({"settings": {"ipConfiguration": {"requireSsl": true, "sslMode": "ENCRYPTED_ONLY"}}})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(f.call("PATCH", "instances/nope", Some(&patch)).await.0, 404);

        // A seeded instance with drift, and set_database_flag.
        let mut seeded = create_body("old-db");
        seeded["settings"]["databaseFlags"][0]["value"] = json!("500");
        f.sql.seed_instance(P, seeded);
        assert_eq!(f.sql.state(P, "old-db").as_deref(), Some("RUNNABLE"));
        assert_eq!(f.sql.created_count(), 1);
        f.sql
            .set_database_flag(P, "old-db", "max_connections", "600");
        f.sql
            .set_database_flag(P, "old-db", "log_connections", "on");
        let flags = f.sql.instance(P, "old-db").unwrap()["settings"]["databaseFlags"].clone();
        assert_eq!(
            flags,
            json!([{"name": "max_connections", "value": "600"}, {"name": "log_connections", "value": "on"}])
        );
        f.sql
            .set_instance_setting(P, "old-db", "/settings/userLabels/team", json!("x"));
        assert_eq!(
            f.sql.instance(P, "old-db").unwrap()["settings"]["userLabels"]["team"],
            "x"
        );
        assert_eq!(f.sql.route_count(SqlRoute::PatchInstance), 6);
    }

    #[tokio::test]
    async fn users_never_show_passwords() {
        let f = fixture().await;
        f.sql.set_create_polls(0);
        f.call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        let (status, op) = f
            .call(
                "POST",
                "instances/wa-db/users",
                Some(&json!({"name": "wa", "password": "Us3r-Pa55!one"})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(op["operationType"], "CREATE_USER");
        let done = f.wait(&op).await;
        assert!(done.get("error").is_none());
        let (_, users) = f.call("GET", "instances/wa-db/users", None).await;
        let names: Vec<&str> = users["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["postgres", "wa"]);
        assert!(users["items"][1].get("password").is_none());
        assert_eq!(
            f.sql.user_password("wa-db", "wa").as_deref(),
            Some("Us3r-Pa55!one")
        );
        assert_eq!(f.sql.users("wa-db"), ["postgres", "wa"]);

        // Inserting it again: the operation fails with ERROR_OTHER, the password stays.
        let (status, op) = f
            .call(
                "POST",
                "instances/wa-db/users",
                Some(&json!({"name": "wa", "password": "Us3r-Pa55!two"})),
            )
            .await;
        assert_eq!(status, 200);
        let done = f.wait(&op).await;
        assert_eq!(done["error"]["errors"][0]["code"], "ERROR_OTHER");
        assert_eq!(
            f.sql.user_password("wa-db", "wa").as_deref(),
            Some("Us3r-Pa55!one")
        );

        // The password change.
        let (status, op) = f
            .call(
                "PUT",
                "instances/wa-db/users?name=wa",
                Some(&json!({"name": "wa", "password": "Us3r-Pa55!three"})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(op["operationType"], "UPDATE_USER");
        assert!(f.wait(&op).await.get("error").is_none());
        assert_eq!(
            f.sql.user_password("wa-db", "wa").as_deref(),
            Some("Us3r-Pa55!three")
        );
        let (_, op) = f
            .call(
                "PUT",
                "instances/wa-db/users?name=ghost",
                Some(&json!({"password": "Us3r-Pa55!four"})),
            )
            .await;
        assert_eq!(
            f.wait(&op).await["error"]["errors"][0]["code"],
            "ERROR_OTHER"
        );
        assert!(f.sql.user_password("wa-db", "ghost").is_none());

        // Optionally, inserting an existing user succeeds and sets the password.
        f.sql.set_existing_user_insert_succeeds(true);
        let (_, op) = f
            .call(
                "POST",
                "instances/wa-db/users",
                Some(&json!({"name": "wa", "password": "Us3r-Pa55!five"})),
            )
            .await;
        assert!(f.wait(&op).await.get("error").is_none());
        assert_eq!(
            f.sql.user_password("wa-db", "wa").as_deref(),
            Some("Us3r-Pa55!five")
        );
        assert_eq!(f.call("GET", "instances/nope/users", None).await.0, 404);
        // Whatever was asked, no answer carried a password (checked in `call`); and the
        // recorded requests do carry them (they are what the provisioner sent).
        assert!(f
            .sql
            .requests()
            .iter()
            .any(|r| r.body_text().contains("Us3r-Pa55!one")));
    }

    #[tokio::test]
    async fn databases_appear() {
        let f = fixture().await;
        f.sql.set_create_polls(0);
        f.call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        let list = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let (status, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
        assert_eq!(status, 200);
        assert_eq!(dbs["kind"], "sql#databasesList");
        assert_eq!(dbs["items"][0]["kind"], "sql#database");
        assert_eq!(list(&dbs), ["postgres"]);
        f.sql.add_database("wa-db", "wa");
        let (_, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
        assert_eq!(list(&dbs), ["postgres", "wa"]);

        f.sql.auto_databases_after(2, &["wa", "wa_messages"]);
        f.call("POST", "instances", Some(&create_body("other")))
            .await;
        for _ in 0..2 {
            let (_, dbs) = f.call("GET", "instances/other/databases", None).await;
            assert_eq!(list(&dbs), ["postgres"]);
        }
        let (_, dbs) = f.call("GET", "instances/other/databases", None).await;
        assert_eq!(list(&dbs), ["postgres", "wa", "wa_messages"]);
        assert_eq!(f.sql.databases("other"), ["postgres", "wa", "wa_messages"]);
        // The first instance had been listed twice already: it gets them now, without
        // a duplicate `wa`.
        let (_, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
        assert_eq!(list(&dbs), ["postgres", "wa", "wa_messages"]);
        assert_eq!(f.call("GET", "instances/nope/databases", None).await.0, 404);
    }

    #[tokio::test]
    async fn failures_and_auth() {
        let f = fixture().await;
        // A create whose operation fails: the instance goes away once the operation ends.
        f.sql
            .set_new_op_error(Some(("INTERNAL_ERROR", "Internal error.")));
        let (_, op) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        assert_eq!(f.sql.state(P, "wa-db").as_deref(), Some("PENDING_CREATE"));
        let done = f.wait(&op).await;
        assert_eq!(
            done["error"],
            json!({"kind": "sql#operationErrors", "errors": [{"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": "Internal error."}]})
        );
        assert!(f.sql.instance(P, "wa-db").is_none());
        assert_eq!(f.sql.created_count(), 0);
        f.sql.set_new_op_error(None);

        f.sql.fail_next(SqlRoute::InsertInstance, 1, 409);
        let (status, err) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["errors"][0]["reason"], "instanceAlreadyExists");
        f.sql.set_create_polls(1);
        let (_, op) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        f.sql.fail_next(SqlRoute::GetOperation, 2, 503);
        let path = format!("operations/{}", op["name"].as_str().unwrap());
        let (status, err) = f.call("GET", &path, None).await;
        assert_eq!(status, 503);
        assert_eq!(err["error"]["errors"][0]["reason"], "backendError");
        assert_eq!(f.call("GET", &path, None).await.0, 503);
        assert_eq!(f.call("GET", &path, None).await.1["status"], "DONE");
        f.sql.fail_always(SqlRoute::ListDatabases, 429);
        assert_eq!(
            f.call("GET", "instances/wa-db/databases", None).await.0,
            429
        );
        f.sql.clear_faults();
        assert_eq!(
            f.call("GET", "instances/wa-db/databases", None).await.0,
            200
        );

        f.sql.hang_next(SqlRoute::GetInstance, 1);
        let err = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .get(format!("{}/v1/projects/{P}/instances/wa-db", f.sql.url()))
            .bearer_auth(&f.token)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());

        let resp = f
            .client
            .get(format!("{}/v1/projects/{P}/instances/wa-db", f.sql.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], 401);
        let resp = f
            .client
            .get(format!("{}/v1/projects/{P}/instances/wa-db", f.sql.url()))
            .bearer_auth("ya29.not-issued")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(f.sql.created_count(), 1);
        assert_eq!(f.sql.route_count(SqlRoute::GetInstance), 3);
    }

    #[tokio::test]
    async fn a_slow_create_can_be_finished_later() {
        let f = fixture().await;
        f.sql.set_create_polls(1_000_000);
        let (_, op) = f
            .call("POST", "instances", Some(&create_body("wa-db")))
            .await;
        for _ in 0..3 {
            let (_, inst) = f.call("GET", "instances/wa-db", None).await;
            assert_eq!(inst["state"], "PENDING_CREATE");
        }
        // Finish in the background: at most one more poll.
        f.sql.set_create_polls(1);
        let (_, inst) = f.call("GET", "instances/wa-db", None).await;
        assert_eq!(inst["state"], "RUNNABLE");
        let name = op["name"].as_str().unwrap();
        let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
        assert_eq!(op["status"], "DONE");
        // 0: at once, without a poll.
        f.sql.set_create_polls(1_000_000);
        f.call("POST", "instances", Some(&create_body("other")))
            .await;
        assert_eq!(f.sql.state(P, "other").as_deref(), Some("PENDING_CREATE"));
        f.sql.set_create_polls(0);
        assert_eq!(f.sql.state(P, "other").as_deref(), Some("RUNNABLE"));
        assert_eq!(f.sql.created_count(), 2);
    }
}
