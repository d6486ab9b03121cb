//! Deleting a resource (`decommission`): an instance, an address, a firewall rule.

use reqwest::Method;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Compute, Operation, Scope, API};
use crate::google::client::{Idempotent, Request};
use crate::google::GoogleError;

impl Compute {
    /// DELETE `collection/name` with a `requestId`, so a retried delete is carried out once.
    /// Answers the operation; a resource already gone is the caller's 404.
    pub async fn delete_resource(
        &self,
        project: &str,
        scope: &Scope,
        collection: &str,
        name: &str,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.url(project, scope, &[collection, name]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        // The request id makes a repeat answer the first operation: safe to retry.
        let request = Request::change(API, Method::DELETE, &url, Idempotent::Yes);
        self.client.send(request, deadline).await
    }
}
