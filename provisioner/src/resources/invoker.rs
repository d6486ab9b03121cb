//! Who may call the keepalive's service: the push subscription's identity holds
//! `roles/run.invoker`, and no one else without asking (no `allUsers`, no
//! `allAuthenticatedUsers`, on any role).

use serde_json::{json, Value};

use super::iam_policy::invoker_policy;
use crate::ensure::{Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::{Provisioner, StepError};

/// The service's IAM policy, as far as step 6 owns it.
pub struct InvokerBinding {
    pub project: String,
    pub region: String,
    pub service: String,
    /// `serviceAccount:<invoker>`
    pub member: String,
}

impl InvokerBinding {
    pub fn of(k: &KeepaliveNames) -> InvokerBinding {
        InvokerBinding {
            project: k.project.clone(),
            region: k.region.clone(),
            service: k.service.clone(),
            member: format!("serviceAccount:{}", k.invoker),
        }
    }
}

impl Resource for InvokerBinding {
    type State = Value;

    fn kind(&self) -> &'static str {
        "run.invoker binding"
    }

    fn name(&self) -> &str {
        &self.member
    }

    fn resource(&self) -> String {
        format!("IAM policy of Cloud Run service {}", self.service)
    }

    /// A service always has a policy (perhaps empty): read once the service exists.
    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        let read = prov
            .google
            .cloud_run
            .get_iam_policy(
                &self.project,
                &self.region,
                &self.service,
                Some(prov.call_deadline()),
            )
            .await;
        match read {
            Ok(p) => Ok(Some(p)),
            // An endpoint that serves only setIamPolicy: start from an empty policy (the
            // service exists, so a 404 here is about the method, not the service).
            Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => {
                tracing::warn!(error = %e, "getIamPolicy not served; setting the invoker binding on an empty policy");
                Ok(Some(json!({})))
            }
            Err(e) => Err(prov.google_failed(self.resource())(e)),
        }
    }

    fn plan(&self) -> Option<String> {
        Some("the only invoker; no public access".into())
    }

    async fn create(&self, _prov: &Provisioner) -> Result<Created<Value>, StepError> {
        Err(StepError::failed(
            self.resource(),
            "the service has no policy to add to: run `provisioner keepalive` again",
        ))
    }

    fn differences(&self, have: &Value, _: Check) -> Vec<Difference> {
        match invoker_policy(have, &self.member) {
            None => Vec::new(),
            Some((_, changes)) => changes
                .into_iter()
                .map(|c| Difference::update("policy", c))
                .collect(),
        }
    }

    async fn update(
        &self,
        prov: &Provisioner,
        have: &Value,
        _diffs: &[Difference],
    ) -> Result<Value, StepError> {
        let Some((new, _)) = invoker_policy(have, &self.member) else {
            return Ok(have.clone());
        };
        prov.google
            .cloud_run
            .set_iam_policy(
                &self.project,
                &self.region,
                &self.service,
                &new,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn detail(&self, _: &Value) -> Option<String> {
        Some("no public access".into())
    }
}
