//! Cloud Scheduler v1: jobs (get, create, patch, resume).

use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;
use url::Url;

use super::client::{url_with_segments, Idempotent, Request};
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

    /// Creates the job (`body.name` names it). Sent once: a repeat would meet the first
    /// attempt's job as `ALREADY_EXISTS`, which the caller adopts and checks.
    pub async fn create_job(
        &self,
        project: &str,
        location: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = self.jobs(project, location);
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(body);
        self.client.send(request, deadline).await
    }

    /// Updates the fields named in `update_mask` (comma-separated, e.g.
    /// `schedule,pubsubTarget`) to their values in `body`: the same patch twice is one.
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
        let request = Request::change(API, Method::PATCH, &url, Idempotent::Yes).body(body);
        self.client.send(request, deadline).await
    }

    /// Resumes a paused job. Repeated after a lost answer, the API refuses it
    /// (`FAILED_PRECONDITION`: not paused): the caller reads the job to tell.
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
        let body = serde_json::json!({});
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }
}
