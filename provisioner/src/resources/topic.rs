//! A Pub/Sub topic (the keepalive's, its dead-letter topic, the events topic), through
//! `google-cloud-pubsub`.

use google_cloud_pubsub::client::TopicAdmin;
use google_cloud_pubsub::model::Topic;
use shared::events_publisher::google_error;

use crate::ensure::{Created, Resource};
use crate::{Provisioner, StepError};

pub struct PubSubTopic<'a> {
    pub admin: &'a TopicAdmin,
    /// `projects/P/topics/T`
    pub name: String,
}

/// Maps a `google-cloud-pubsub` error on `resource` to a step error with the resume hint.
pub fn pubsub_failed(
    prov: &Provisioner,
    resource: &str,
) -> impl Fn(google_cloud_pubsub::Error) -> StepError {
    let command = prov.command;
    let resource = resource.to_string();
    move |e| StepError::Google {
        resource: resource.clone(),
        command,
        source: google_error(&e),
    }
}

impl Resource for PubSubTopic<'_> {
    type State = Topic;

    fn kind(&self) -> &'static str {
        "Pub/Sub topic"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Topic>, StepError> {
        match self.admin.get_topic().set_topic(&self.name).send().await {
            Ok(t) => Ok(Some(t)),
            Err(e) if google_error(&e).is_not_found() => Ok(None),
            Err(e) => Err(pubsub_failed(prov, &self.resource())(e)),
        }
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Topic>, StepError> {
        let topic = Topic::new()
            .set_name(&self.name)
            .set_labels([("managed-by", "whatsapp-provisioner")]);
        match self.admin.create_topic().with_request(topic).send().await {
            Ok(t) => Ok(Created::New(t)),
            Err(e) if google_error(&e).is_already_exists() => Ok(Created::AlreadyExists),
            Err(e) => Err(pubsub_failed(prov, &self.resource())(e)),
        }
    }
}
