//! What `decommission` calls on Cloud SQL Admin:
//!
//! - `DELETE /v1/projects/{p}/instances/{i}[?enableFinalBackup=true&finalBackupTtlDays=N]`:
//!   an operation `DELETE`; the instance reads `PENDING_DELETE` until the operation is
//!   `DONE` (after [`set_op_polls`](super::FakeSqlAdmin::set_op_polls) polls), then it is
//!   gone and, when asked, a final backup (`type: FINAL`, `state: SUCCESSFUL`, `ttlDays`)
//!   outlives it. `finalBackupTtlDays` must be 1 to 365.
//! - `POST /v1/projects/{p}/instances/{i}/export` `{exportContext: {fileType: "SQL", uri:
//!   "gs://bucket/object", databases: [one database]}}` (PostgreSQL exports one database per
//!   call): an operation `EXPORT` carrying its `exportContext`; a file that already exists
//!   fails the operation, not the request, as the real API does.
//! - `GET /v1/projects/{p}/backups`: `{backups: [...]}`, the final backups of every deleted
//!   instance of the project.

use axum::response::Response;
use serde_json::{json, Value};

use super::{instance_not_found, invalid, invalid_state, operation_in_progress, SqlState};
use crate::server::{json_response, now, random_string, rfc3339_utc};

/// `DELETE .../instances/{i}`.
pub(super) fn delete(st: &mut SqlState, p: &str, i: &str, query: Option<&str>) -> Response {
    let param = |name: &str| crate::server::query_param(query, name);
    let key = (p.to_owned(), i.to_owned());
    if !st.instances.contains_key(&key) {
        return instance_not_found();
    }
    if st.pending_op(p, i).is_some() {
        return operation_in_progress();
    }
    let final_backup = param("enableFinalBackup").is_some_and(|v| v == "true");
    let ttl = match param("finalBackupTtlDays") {
        None => 30,
        Some(v) => match v.parse::<u32>() {
            Ok(d) if (1..=365).contains(&d) => d,
            _ => return invalid(&format!("finalBackupTtlDays must be 1 to 365, got '{v}'.")),
        },
    };
    if let Some(inst) = st.instances.get_mut(&key) {
        inst.state = "PENDING_DELETE".into();
    }
    let polls = st.op_polls;
    // The deletion's effect happens when the operation ends (see `finish_delete`).
    st.pending_final_backups
        .push((p.to_owned(), i.to_owned(), final_backup.then_some(ttl)));
    let idx = st.new_operation(p, i, "DELETE", polls, None);
    json_response(200, &st.op_json(&st.operations[idx]))
}

/// A `DELETE` operation ended: the instance goes (with its final backup, if asked), or,
/// when the operation failed, stays as it was.
pub(super) fn finish_delete(st: &mut SqlState, idx: usize) {
    let op = &st.operations[idx];
    let (p, i, failed) = (op.project.clone(), op.instance.clone(), op.error.is_some());
    let Some(pos) = st
        .pending_final_backups
        .iter()
        .position(|(bp, bi, _)| *bp == p && *bi == i)
    else {
        return;
    };
    let (_, _, ttl) = st.pending_final_backups.remove(pos);
    if failed {
        if let Some(inst) = st.instances.get_mut(&(p, i)) {
            inst.state = "RUNNABLE".into();
        }
        return;
    }
    let Some(inst) = st.instances.remove(&(p.clone(), i.clone())) else {
        return;
    };
    if let Some(ttl) = ttl {
        let t = now();
        st.backups.push(json!({
            "kind": "sql#backup",
            "name": format!("projects/{p}/backups/{}", random_string(12).to_ascii_lowercase()),
            "type": "FINAL",
            "instance": i,
            "state": "SUCCESSFUL",
            "databaseVersion": inst.resource["databaseVersion"],
            "backupInterval": {"startTime": rfc3339_utc(t), "endTime": rfc3339_utc(t)},
            "instanceDeletionTime": rfc3339_utc(t),
            "ttlDays": ttl.to_string(),
            "description": format!("final backup of {i}"),
        }));
    }
}

/// `POST .../instances/{i}/export`.
pub(super) fn export(st: &mut SqlState, p: &str, i: &str, body: &Value) -> Response {
    let Some(inst) = st.instances.get(&(p.to_owned(), i.to_owned())) else {
        return instance_not_found();
    };
    if inst.state != "RUNNABLE" {
        return invalid_state();
    }
    let ctx = &body["exportContext"];
    let uri = ctx["uri"].as_str().unwrap_or("");
    let bucket_and_object = uri.strip_prefix("gs://").and_then(|r| r.split_once('/'));
    if !bucket_and_object.is_some_and(|(b, o)| !b.is_empty() && !o.is_empty()) {
        return invalid(&format!(
            "exportContext.uri must be gs://bucket/object, got '{uri}'."
        ));
    }
    if ctx["fileType"] != "SQL" {
        return invalid("exportContext.fileType must be SQL for this fake.");
    }
    let dbs: Vec<&str> = ctx["databases"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [db] = dbs[..] else {
        return invalid(
            "For PostgreSQL instances, specify exactly one database in exportContext.databases.",
        );
    };
    if !inst.databases.iter().any(|d| d == db) {
        return invalid(&format!("Database '{db}' does not exist."));
    }
    if st.pending_op(p, i).is_some() {
        return operation_in_progress();
    }
    let error = st.exports.iter().any(|(u, _)| u == uri).then(|| {
        (
            "ERROR_OTHER".to_owned(),
            format!("The file {uri} already exists."),
        )
    });
    if error.is_none() {
        st.exports.push((uri.to_owned(), db.to_owned()));
    }
    let polls = st.op_polls;
    let idx = st.new_operation(p, i, "EXPORT", polls, error);
    let name = st.operations[idx].name.clone();
    let mut context = ctx.clone();
    context["kind"] = json!("sql#exportContext");
    st.op_extra.insert(name, json!({"exportContext": context}));
    json_response(200, &st.op_json(&st.operations[idx]))
}

/// `GET /v1/projects/{p}/backups`.
pub(super) fn list_backups(st: &SqlState, p: &str) -> Response {
    let prefix = format!("projects/{p}/");
    let items: Vec<Value> = st
        .backups
        .iter()
        .filter(|b| b["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
        .cloned()
        .collect();
    json_response(200, &json!({"backups": items}))
}

#[cfg(test)]
mod tests {
    use crate::sqladmin::FakeSqlAdmin;
    use crate::token::TokenRegistry;
    use serde_json::{json, Value};

    const P: &str = "proj";

    async fn call(
        sql: &FakeSqlAdmin,
        token: &str,
        method: &str,
        rest: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/v1/projects/{P}/{rest}", sql.url()),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn fixture() -> (FakeSqlAdmin, String) {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        let sql = FakeSqlAdmin::start(tokens).await;
        sql.seed_instance(P, json!({"name": "db", "databaseVersion": "POSTGRES_13", "region": "europe-west3", "settings": {"tier": "db-custom-1-3840"}}));
        sql.add_database("db", "wa");
        (sql, token)
    }

    #[tokio::test]
    async fn export_then_delete_with_a_final_backup_that_outlives_the_instance() {
        let (sql, token) = fixture().await;
        let ctx = |db: &str| json!({"exportContext": {"fileType": "SQL", "uri": "gs://b/db/wa.sql.gz", "databases": [db]}});
        let (status, _) = call(
            &sql,
            &token,
            "POST",
            "instances/db/export",
            Some(ctx("nope")),
        )
        .await;
        assert_eq!(status, 400);
        let (status, op) = call(&sql, &token, "POST", "instances/db/export", Some(ctx("wa"))).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "EXPORT");
        // One administrative operation at a time: the next waits for this one.
        let (status, _) = call(&sql, &token, "POST", "instances/db/export", Some(ctx("wa"))).await;
        assert_eq!(status, 409);
        let path = format!("operations/{}", op["name"].as_str().unwrap());
        call(&sql, &token, "GET", &path, None).await;
        assert_eq!(op["exportContext"]["uri"], "gs://b/db/wa.sql.gz");
        assert_eq!(
            sql.exports(),
            vec![("gs://b/db/wa.sql.gz".to_string(), "wa".to_string())]
        );
        // The same file again: the request is taken, its operation fails.
        let (_, op) = call(&sql, &token, "POST", "instances/db/export", Some(ctx("wa"))).await;
        let (_, op) = call(
            &sql,
            &token,
            "GET",
            &format!("operations/{}", op["name"].as_str().unwrap()),
            None,
        )
        .await;
        assert_eq!(op["status"], "DONE");
        assert!(op["error"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"));

        sql.set_op_polls(2);
        let (status, _) = call(
            &sql,
            &token,
            "DELETE",
            "instances/db?enableFinalBackup=true&finalBackupTtlDays=400",
            None,
        )
        .await;
        assert_eq!(status, 400);
        let (status, op) = call(
            &sql,
            &token,
            "DELETE",
            "instances/db?enableFinalBackup=true&finalBackupTtlDays=365",
            None,
        )
        .await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(sql.state(P, "db").as_deref(), Some("PENDING_DELETE"));
        let (_, listed) = call(&sql, &token, "GET", "backups", None).await;
        assert_eq!(listed["backups"], json!([]));
        let name = op["name"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            call(&sql, &token, "GET", &format!("operations/{name}"), None).await;
        }
        assert!(sql.state(P, "db").is_none());
        let (_, listed) = call(&sql, &token, "GET", "backups", None).await;
        let backup = &listed["backups"][0];
        assert_eq!(
            (&backup["type"], &backup["instance"], &backup["ttlDays"]),
            (&json!("FINAL"), &json!("db"), &json!("365"))
        );
        let (status, _) = call(&sql, &token, "DELETE", "instances/db", None).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn a_delete_without_final_backup_leaves_none() {
        let (sql, token) = fixture().await;
        let (status, op) = call(&sql, &token, "DELETE", "instances/db", None).await;
        assert_eq!(status, 200);
        let path = format!("operations/{}", op["name"].as_str().unwrap());
        call(&sql, &token, "GET", &path, None).await;
        assert!(sql.state(P, "db").is_none());
        assert!(sql.backups().is_empty());
    }
}
