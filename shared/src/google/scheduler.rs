//! Cloud Scheduler v1: jobs (get, create, patch, resume).

use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;
use url::Url;

use super::client::url_with_segments;
use super::{GoogleClient, GoogleError};

pub const API: &str = "Cloud Scheduler";
pub const DEFAULT_ENDPOINT: &str = "https://cloudscheduler.googleapis.com";

#[derive(Debug, Clone)]
pub struct Scheduler {
    client: Arc<GoogleClient>,
    /// `{endpoint}/v1`
    base: Url,
}

impl Scheduler {
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        Scheduler {
            client,
            base: url_with_segments(endpoint, ["v1"]),
        }
    }

    fn jobs(&self, project: &str, location: &str) -> Url {
        url_with_segments(
            &self.base,
            ["projects", project, "locations", location, "jobs"],
        )
    }

    /// The job, or `None` when it does not exist.
    pub async fn get_job(
        &self,
        project: &str,
        location: &str,
        job: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Value>, GoogleError> {
        let url = url_with_segments(&self.jobs(project, location), [job]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// Creates the job (`body.name` names it). One attempt: a retry would meet the first
    /// attempt's job as `ALREADY_EXISTS`, which the caller adopts.
    pub async fn create_job(
        &self,
        project: &str,
        location: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = self.jobs(project, location);
        self.client
            .call_once(API, Method::POST, &url, Some(body), deadline)
            .await
    }

    /// Updates the fields named in `update_mask` (comma-separated, e.g.
    /// `schedule,pubsubTarget`).
    pub async fn patch_job(
        &self,
        project: &str,
        location: &str,
        job: &str,
        body: &Value,
        update_mask: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let mut url = url_with_segments(&self.jobs(project, location), [job]);
        url.query_pairs_mut().append_pair("updateMask", update_mask);
        self.client
            .call(API, Method::PATCH, &url, Some(body), deadline)
            .await
    }

    /// Resumes a paused job (the API refuses a job that is not `PAUSED` with
    /// `FAILED_PRECONDITION`: a retry after a lost answer meets that; read the job to tell).
    pub async fn resume_job(
        &self,
        project: &str,
        location: &str,
        job: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = url_with_segments(
            &self.jobs(project, location),
            [format!("{job}:resume").as_str()],
        );
        self.client
            .call(
                API,
                Method::POST,
                &url,
                Some(&serde_json::json!({})),
                deadline,
            )
            .await
    }

    /// Deletes the job. A retry after a lost answer meets 404: the caller reads that as gone.
    pub async fn delete_job(
        &self,
        project: &str,
        location: &str,
        job: &str,
        deadline: Option<Instant>,
    ) -> Result<(), GoogleError> {
        let url = url_with_segments(&self.jobs(project, location), [job]);
        self.client
            .call::<Value>(API, Method::DELETE, &url, None, deadline)
            .await?;
        Ok(())
    }
}
