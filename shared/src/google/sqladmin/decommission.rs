//! What removing an instance takes: its operations (to find one under way or done), an export
//! of a database to Cloud Storage, the delete itself with a final backup, and the final
//! backups that outlive it.

use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{SqlAdmin, SqlOperation, API};
use crate::google::client::{Idempotent, Request};
use crate::google::GoogleError;

impl SqlAdmin {
    /// The instance's operations, newest first, as the API answers them (one page of at most
    /// 100: enough to find the recent export or delete a resumed run looks for).
    pub async fn list_operations(
        &self,
        project: &str,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let mut url = self.url(project, &["operations"]);
        url.query_pairs_mut()
            .append_pair("instance", instance)
            .append_pair("maxResults", "100");
        let v: Value = self.client.send(Request::get(API, &url), deadline).await?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// Exports one database as SQL to `uri` (`gs://bucket/object`, gzipped when it ends in
    /// `.gz`). One attempt: a retry would meet the first as an operation in progress.
    pub async fn export_database(
        &self,
        project: &str,
        instance: &str,
        database: &str,
        uri: &str,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["instances", instance, "export"]);
        let body = json!({"exportContext": {
            "kind": "sql#exportContext",
            "fileType": "SQL",
            "uri": uri,
            "databases": [database],
        }});
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(&body);
        self.client.send(request, deadline).await
    }

    /// Deletes the instance; with `final_backup_days`, Cloud SQL first takes a final backup
    /// kept that many days (1 to 365) beyond the instance. One attempt: a retry after a lost
    /// answer would meet the deletion under way.
    pub async fn delete_instance(
        &self,
        project: &str,
        instance: &str,
        final_backup_days: Option<u32>,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let mut url = self.url(project, &["instances", instance]);
        if let Some(days) = final_backup_days {
            url.query_pairs_mut()
                .append_pair("enableFinalBackup", "true")
                .append_pair("finalBackupTtlDays", &days.to_string())
                .append_pair(
                    "finalBackupDescription",
                    &format!("final backup of {instance}, taken when it was decommissioned"),
                );
        }
        let request = Request::change(API, Method::DELETE, &url, Idempotent::No);
        self.client.send(request, deadline).await
    }

    /// The project's backups that are not tied to a live instance (final backups), each as
    /// the API answers it (`name`, `type`, `instance`, `state`, `expiryTime` or `ttlDays`).
    pub async fn list_backups(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: a project's final backups fit in far fewer pages.
        for _ in 0..50 {
            let mut url = self.url(project, &["backups"]);
            if let Some(t) = &token {
                url.query_pairs_mut().append_pair("pageToken", t);
            }
            let v: Value = self.client.send(Request::get(API, &url), deadline).await?;
            out.extend(v["backups"].as_array().cloned().unwrap_or_default());
            match v["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        Ok(out)
    }
}
