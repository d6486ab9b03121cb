//! `FakeSqlAdmin`: the part of Cloud SQL Admin v1 the provisioner uses, under
//! `/v1/projects/{p}/...`: instances (insert, get), operations (get, list),
//! users (insert, list, update the password), databases (list), and what `decommission`
//! calls (delete with a final backup, export, backups list: `sqladmin/decommission.rs`), with bearer tokens
//! checked against a [`TokenRegistry`], and Cloud SQL's error shape
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`.
//!
//! Time is counted in polls, not seconds:
//! - a new instance is `PENDING_CREATE` until its `CREATE` operation is `DONE`, which takes
//!   [`FakeSqlAdmin::set_create_polls`] GETs (default 3); a GET of the instance while it is
//!   being created counts as one of them too (a run resumed after a kill may only poll the
//!   instance). Then it is `RUNNABLE`, with `ipAddresses`, `connectionName` and
//!   `serverCaCert`;
//! - other operations take [`FakeSqlAdmin::set_op_polls`] GETs (default 1: the first GET
//!   answers `DONE`); their effect (users) applies when they are accepted;
//! - like the real API, an instance runs one administrative operation at a time: a user
//!   insert/update while another operation on it is not `DONE` (the create
//!   included) answers 409 `operationInProgress`; listing users or databases of an instance
//!   that is not `RUNNABLE` answers 400 `invalidState`.
//!
//! Inserting a user that exists answers an operation that ends `DONE` with
//! `error.errors[{code: "ERROR_OTHER", ...}]` (what the real API does).
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
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

mod decommission;
mod errors;
mod instances;
mod operations;
mod routes;
#[cfg(test)]
mod tests;

use errors::{
    already_exists, instance_not_found, invalid, invalid_state, operation_in_progress, sql_error,
};

use crate::server::FakeState;
use crate::{
    server::{
        bearer_token, json_response, lock, now, query_param, random_string, rfc3339_utc,
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
    /// `GET /v1/projects/{p}/instances/{i}`
    GetInstance,
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
    /// `DELETE /v1/projects/{p}/instances/{i}`
    DeleteInstance,
    /// `POST /v1/projects/{p}/instances/{i}/export`
    Export,
    /// `GET /v1/projects/{p}/backups`
    ListBackups,
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
    auto_databases: Option<(usize, Vec<String>)>,
    counts: HashMap<SqlRoute, usize>,
    created: usize,
    next_ip: u32,
    /// Deletions under way: (project, instance, days to keep a final backup if one was asked).
    pending_final_backups: Vec<(String, String, Option<u32>)>,
    /// Final backups of deleted instances (the `Backup` resource).
    backups: Vec<Value>,
    /// Exports carried out: (uri, database).
    exports: Vec<(String, String)>,
    /// Fields an operation's JSON carries beyond the common ones (`exportContext`).
    op_extra: HashMap<String, Value>,
}

/// The fake Cloud SQL Admin API.
pub struct FakeSqlAdmin {
    state: Arc<Mutex<SqlState>>,
    server: HttpServer,
}

impl FakeSqlAdmin {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = SqlState {
            instances: BTreeMap::new(),
            operations: Vec::new(),
            create_polls: 3,
            op_polls: 1,
            auto_databases: None,
            counts: HashMap::new(),
            created: 0,
            next_ip: 10,
            pending_final_backups: Vec::new(),
            backups: Vec::new(),
            exports: Vec::new(),
            op_extra: HashMap::new(),
        };
        let (state, server) =
            crate::rest::start(state, tokens, routes::handle, "Cloud SQL Admin").await;
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

    /// The password of a user of the instance named `instance` (in any project): the
    /// `rootPassword` for `postgres`, else the last one set through the API.
    pub fn user_password(&self, instance: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .find_instance_by_name(instance)
            .and_then(|i| i.users.get(name).cloned().flatten())
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

    /// Instances created through the API (not seeded ones, nor refused inserts).
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

    /// The final backups of deleted instances, as `GET .../backups` answers them.
    pub fn backups(&self) -> Vec<Value> {
        lock(&self.state).backups.clone()
    }

    /// Every export carried out: (uri, database), oldest first.
    pub fn exports(&self) -> Vec<(String, String)> {
        lock(&self.state).exports.clone()
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
