//! The Pub/Sub grants step 6's resources need to work:
//! - dead letters: Pub/Sub's own service agent publishes to the dead-letter topic and
//!   acknowledges on the subscription it takes messages from;
//! - events: the service's account publishes to the events topic (when it is in this
//!   project; a topic elsewhere is its owner's to grant, and the report says what to run).
//!
//! Where the project's number cannot be read (the service agent is named after it), or the
//! Pub/Sub endpoint is the emulator (`PUBSUB_EMULATOR_HOST`), which answers IAM calls 501
//! `UNIMPLEMENTED`, the grants are left to a person, with the command for each. Any error of
//! the real API fails the step.

use google_cloud_iam_v1::model::Policy;
use google_cloud_pubsub::client::SchemaService;
use serde_json::Value;
use shared::events_publisher::google_error;
use shared::google::GoogleError;

use super::iam_policy::with_member;
use super::topic::pubsub_failed;
use crate::ensure::{ensure, planned, Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::report::Action;
use crate::{Provisioner, StepError};

const SERVICE_AGENT: &str = "the Pub/Sub service agent";

/// Why the grants are left to a person against the emulator.
pub const EMULATOR_WITHOUT_IAM: &str = "the Pub/Sub emulator does not serve IAM";

/// Whether `e`, the answer to an IAM call, means "no IAM here": only from an emulator
/// (`PUBSUB_EMULATOR_HOST` set), and only 501 `UNIMPLEMENTED`.
pub fn emulator_without_iam(emulator: bool, e: &GoogleError) -> bool {
    emulator && e.status() == Some(501)
}

/// One topic- or subscription-level grant.
#[derive(Debug, Clone)]
pub struct Grant {
    pub kind: &'static str,
    /// The topic or subscription (`projects/P/topics/T`).
    pub resource: String,
    pub role: &'static str,
    /// `None`: Pub/Sub's service agent of the project (its e-mail needs the project number).
    pub member: Option<String>,
    /// Who it is, in words.
    pub who: &'static str,
}

impl Grant {
    /// The `gcloud` command that makes it, for `member`.
    fn by_hand(&self, member: &str) -> String {
        let collection = if self.resource.contains("/topics/") {
            "topics"
        } else {
            "subscriptions"
        };
        let id = self.resource.rsplit('/').next().unwrap_or(&self.resource);
        format!(
            "gcloud pubsub {collection} add-iam-policy-binding {id} --member={member} --role={}",
            self.role
        )
    }
}

/// The grants step 6 makes.
pub fn grants_of(k: &KeepaliveNames) -> Vec<Grant> {
    let mut grants = vec![
        Grant {
            kind: "dead-letter grant",
            resource: k.dead_letter_topic.clone(),
            role: "roles/pubsub.publisher",
            member: None,
            who: SERVICE_AGENT,
        },
        Grant {
            kind: "dead-letter grant",
            resource: k.subscription.clone(),
            role: "roles/pubsub.subscriber",
            member: None,
            who: SERVICE_AGENT,
        },
    ];
    if let Some(events) = k.own_events_topic() {
        grants.push(Grant {
            kind: "events grant",
            resource: events.to_string(),
            role: "roles/pubsub.publisher",
            member: Some(format!("serviceAccount:{}", k.service_account)),
            who: "the service's account",
        });
    }
    grants
}

/// The grant on an events topic in another project, which only its owner can make: what to
/// run there. Without it every event is refused (403).
pub fn foreign_events_grant(k: &KeepaliveNames) -> Option<(String, String)> {
    let events = k
        .events_topic
        .as_deref()
        .filter(|_| k.own_events_topic().is_none())?;
    let (project, topic) = match events.split('/').collect::<Vec<_>>()[..] {
        ["projects", p, "topics", t] => (p, t),
        _ => ("PROJECT", events),
    };
    Some((
        events.to_string(),
        format!(
            "the topic is in project {project}: gcloud pubsub topics add-iam-policy-binding {topic} --project={project} --member=serviceAccount:{} --role=roles/pubsub.publisher",
            k.service_account
        ),
    ))
}

/// A grant as a resource: the topic's or subscription's IAM policy, as far as it is ours.
pub struct PubSubGrant<'a> {
    pub iam: &'a SchemaService,
    pub grant: &'a Grant,
    pub member: String,
}

impl PubSubGrant<'_> {
    fn policy_of(&self, v: &Value) -> Result<Policy, StepError> {
        serde_json::from_value(v.clone())
            .map_err(|e| StepError::failed(self.resource(), format!("policy: {e}")))
    }
}

impl Resource for PubSubGrant<'_> {
    type State = Value;

    fn kind(&self) -> &'static str {
        self.grant.kind
    }

    fn name(&self) -> &str {
        &self.grant.resource
    }

    fn resource(&self) -> String {
        format!("IAM policy of {}", self.grant.resource)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        let policy = self
            .iam
            .get_iam_policy()
            .set_resource(&self.grant.resource)
            .send()
            .await
            .map_err(pubsub_failed(prov, &self.resource()))?;
        serde_json::to_value(&policy)
            .map(Some)
            .map_err(|e| StepError::failed(self.resource(), e.to_string()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!("{} for {}", self.grant.role, self.grant.who))
    }

    async fn create(&self, _prov: &Provisioner) -> Result<Created<Value>, StepError> {
        Err(StepError::failed(
            self.resource(),
            "has no policy to add to: run `provisioner keepalive` again",
        ))
    }

    fn differences(&self, have: &Value, _: Check) -> Vec<Difference> {
        match with_member(have, self.grant.role, &self.member) {
            None => Vec::new(),
            Some(_) => vec![Difference::update(
                "policy",
                format!("{} granted to {}", self.grant.role, self.member),
            )],
        }
    }

    async fn update(
        &self,
        prov: &Provisioner,
        have: &Value,
        _diffs: &[Difference],
    ) -> Result<Value, StepError> {
        let Some(new) = with_member(have, self.grant.role, &self.member) else {
            return Ok(have.clone());
        };
        self.iam
            .set_iam_policy()
            .set_resource(&self.grant.resource)
            .set_policy(self.policy_of(&new)?)
            .send()
            .await
            .map_err(pubsub_failed(prov, &self.resource()))?;
        Ok(new)
    }

    fn detail(&self, _: &Value) -> Option<String> {
        Some(format!("{} for {}", self.grant.role, self.member))
    }
}

/// Makes `grants`. `planned`: something they are on is only planned (`--dry-run`), so they
/// are too.
pub async fn ensure_grants(
    prov: &Provisioner,
    k: &KeepaliveNames,
    grants: &[Grant],
    planned_only: bool,
) -> Result<(), StepError> {
    let iam = prov
        .google
        .pubsub
        .iam()
        .await
        .map_err(prov.google_failed("Pub/Sub client"))?;
    if planned_only {
        for grant in grants {
            let member = grant.member.clone().unwrap_or_default();
            planned(
                prov,
                &PubSubGrant {
                    iam: &iam,
                    grant,
                    member,
                },
            );
        }
        return Ok(());
    }
    // A Compute Engine endpoint without projects.get (a minimal one): the service agent
    // cannot be named; say so and how to make the grants by hand, and go on.
    let unsupported = |e: &GoogleError| matches!(e.status(), Some(404 | 405 | 501));
    let agent_of = |number: &str| {
        format!("serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com")
    };
    let by_hand = |why: String, agent: String| {
        for g in grants {
            let member = g.member.clone().unwrap_or_else(|| agent.clone());
            prov.report.add(
                g.kind,
                &g.resource,
                Action::ByHand(format!("{why}; grant it by hand: {}", g.by_hand(&member))),
                None,
            );
        }
    };
    let number = match prov
        .google
        .compute
        .project_number(&k.project, Some(prov.call_deadline()))
        .await
    {
        Ok(n) => n,
        Err(e) if unsupported(&e) => {
            by_hand(
                format!("the project number could not be read ({e})"),
                agent_of("PROJECT_NUMBER"),
            );
            return Ok(());
        }
        Err(e) => return Err(prov.google_failed(format!("project {}", k.project))(e)),
    };
    // The Pub/Sub emulator serves no IAM (501 UNIMPLEMENTED): the grants are left to a
    // person. Only there: the real API's errors fail the step (in `ensure` below).
    if let (Some(first), true) = (grants.first(), prov.google.pubsub.emulator_url().is_some()) {
        let probe = iam
            .get_iam_policy()
            .set_resource(&first.resource)
            .send()
            .await;
        if let Err(e) = probe {
            let e = google_error(&e);
            if emulator_without_iam(true, &e) {
                by_hand(
                    EMULATOR_WITHOUT_IAM.to_string(),
                    agent_of(&number.to_string()),
                );
                return Ok(());
            }
        }
    }
    let agent = agent_of(&number.to_string());
    for grant in grants {
        let member = grant.member.clone().unwrap_or_else(|| agent.clone());
        ensure(
            prov,
            &PubSubGrant {
                iam: &iam,
                grant,
                member,
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, reason: &str) -> GoogleError {
        GoogleError::Api {
            api: "Pub/Sub",
            status,
            reason: Some(reason.into()),
            message: String::new(),
        }
    }

    #[test]
    fn only_the_emulators_unimplemented_leaves_the_grants_to_a_person() {
        let unimplemented = answer(501, "UNIMPLEMENTED");
        assert!(emulator_without_iam(true, &unimplemented));
        // The real API: every error fails the step, 501 included.
        assert!(!emulator_without_iam(false, &unimplemented));
        for status in [403, 404, 500] {
            let e = answer(status, "X");
            assert!(!emulator_without_iam(true, &e), "{status}");
        }
    }
}
