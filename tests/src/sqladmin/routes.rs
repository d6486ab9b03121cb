//! Dispatch of `/v1/projects/{p}/...`, and the users and databases endpoints.

use super::*;

pub(super) enum Route<'a> {
    InsertInstance { p: &'a str },
    GetInstance { p: &'a str, i: &'a str },
    GetOperation { p: &'a str, op: &'a str },
    ListOperations { p: &'a str },
    InsertUser { p: &'a str, i: &'a str },
    ListUsers { p: &'a str, i: &'a str },
    UpdateUser { p: &'a str, i: &'a str },
    ListDatabases { p: &'a str, i: &'a str },
    DeleteInstance { p: &'a str, i: &'a str },
    Export { p: &'a str, i: &'a str },
    ListBackups { p: &'a str },
}

impl Route<'_> {
    pub(super) fn route(&self) -> SqlRoute {
        match self {
            Route::InsertInstance { .. } => SqlRoute::InsertInstance,
            Route::GetInstance { .. } => SqlRoute::GetInstance,
            Route::GetOperation { .. } => SqlRoute::GetOperation,
            Route::ListOperations { .. } => SqlRoute::ListOperations,
            Route::InsertUser { .. } => SqlRoute::InsertUser,
            Route::ListUsers { .. } => SqlRoute::ListUsers,
            Route::UpdateUser { .. } => SqlRoute::UpdateUser,
            Route::ListDatabases { .. } => SqlRoute::ListDatabases,
            Route::DeleteInstance { .. } => SqlRoute::DeleteInstance,
            Route::Export { .. } => SqlRoute::Export,
            Route::ListBackups { .. } => SqlRoute::ListBackups,
        }
    }
}

pub(super) fn parse_route<'a>(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
    let m = method.as_str();
    let ["v1", "projects", p, ref rest @ ..] = *segs else {
        return None;
    };
    Some(match (m, rest) {
        ("POST", ["instances"]) => Route::InsertInstance { p },
        ("GET", ["instances", i]) => Route::GetInstance { p, i },
        ("GET", ["operations"]) => Route::ListOperations { p },
        ("GET", ["operations", op]) => Route::GetOperation { p, op },
        ("POST", ["instances", i, "users"]) => Route::InsertUser { p, i },
        ("GET", ["instances", i, "users"]) => Route::ListUsers { p, i },
        ("PUT", ["instances", i, "users"]) => Route::UpdateUser { p, i },
        ("GET", ["instances", i, "databases"]) => Route::ListDatabases { p, i },
        ("DELETE", ["instances", i]) => Route::DeleteInstance { p, i },
        ("POST", ["instances", i, "export"]) => Route::Export { p, i },
        ("GET", ["backups"]) => Route::ListBackups { p },
        _ => return None,
    })
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(sql_error(
            400,
            "parseError",
            "Invalid JSON payload received. Expected a JSON object.",
        )),
    }
}

pub(super) async fn handle(
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
    let mut guard = lock(&ctx.state);
    let st = &mut *guard;
    match route {
        Route::DeleteInstance { p, i } => decommission::delete(st, p, i, uri.query()),
        Route::Export { p, i } => match parse_body(&body) {
            Ok(b) => decommission::export(st, p, i, &b),
            Err(resp) => resp,
        },
        Route::ListBackups { p } => decommission::list_backups(st, p),
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
            st.created += 1;
            st.instances.insert((p.to_owned(), name.clone()), inst);
            let polls = st.create_polls;
            let idx = st.new_operation(p, &name, "CREATE", polls, None);
            json_response(200, &st.op_json(&st.operations[idx]))
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
            let mut error = None;
            if exists {
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
            let mut error = None;
            if !exists {
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
