//! An e-mail notification channel of Cloud Monitoring for one address of `[alerts] emails`.
//! Ours carry the user label `managed-by=whatsapp-provisioner` and are found by it and their
//! display name; an e-mail channel for the same address that someone else made is used as it
//! is and never changed. The channels of `[alerts] channels` are only read ([`read_named`]).

use serde_json::{json, Value};

use crate::ensure::{Check, Created, Difference, Resource};
use crate::{Provisioner, StepError};

/// The user label that marks what this tool made (the same as every resource's).
pub const MANAGED_BY: (&str, &str) = ("managed-by", "whatsapp-provisioner");

/// Does `resource` (a policy or a channel) carry [`MANAGED_BY`] in its `userLabels`?
pub fn is_ours(resource: &Value) -> bool {
    resource["userLabels"][MANAGED_BY.0] == MANAGED_BY.1
}

/// A channel as found: whether this tool made it.
#[derive(Debug, Clone)]
pub struct FoundChannel {
    pub channel: Value,
    pub ours: bool,
}

impl FoundChannel {
    pub fn name(&self) -> &str {
        self.channel["name"].as_str().unwrap_or_default()
    }
}

pub struct EmailChannel<'a> {
    pub project: String,
    pub email: String,
    pub display_name: String,
    /// The project's channels, listed once by the step.
    pub listed: &'a [Value],
}

impl<'a> EmailChannel<'a> {
    pub fn new(project: &str, email: &str, listed: &'a [Value]) -> Self {
        EmailChannel {
            project: project.to_string(),
            email: email.to_string(),
            display_name: display_name(email),
            listed,
        }
    }

    pub fn want(&self) -> Value {
        json!({
            "type": "email",
            "displayName": self.display_name,
            "description": "E-mail of the WhatsApp keepalive's alert policies (made by the provisioner from [alerts] emails).",
            "labels": {"email_address": self.email},
            "userLabels": {MANAGED_BY.0: MANAGED_BY.1},
            "enabled": true,
        })
    }

    /// Ours by label and display name, else any e-mail channel for the address.
    pub fn find(&self) -> Option<FoundChannel> {
        let ours = self
            .listed
            .iter()
            .find(|c| is_ours(c) && c["displayName"] == self.display_name.as_str());
        if let Some(c) = ours {
            return Some(FoundChannel {
                channel: c.clone(),
                ours: true,
            });
        }
        self.listed
            .iter()
            .find(|c| {
                c["type"] == "email"
                    && c["labels"]["email_address"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&self.email))
            })
            .map(|c| FoundChannel {
                channel: c.clone(),
                ours: false,
            })
    }
}

/// The display name of the channel this tool makes for `email`.
pub fn display_name(email: &str) -> String {
    format!("WhatsApp keepalive: {email}")
}

impl Resource for EmailChannel<'_> {
    type State = FoundChannel;

    fn kind(&self) -> &'static str {
        "notification channel"
    }

    fn name(&self) -> &str {
        &self.email
    }

    async fn read(&self, _prov: &Provisioner) -> Result<Option<FoundChannel>, StepError> {
        Ok(self.find())
    }

    fn plan(&self) -> Option<String> {
        Some(format!("e-mail to {}", self.email))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<FoundChannel>, StepError> {
        let made = prov
            .google
            .monitoring
            .create_notification_channel(&self.project, &self.want(), Some(prov.call_deadline()))
            .await
            .map_err(super::alert_policy::monitoring_failed(
                prov,
                self.resource(),
                &self.project,
            ))?;
        Ok(Created::New(FoundChannel {
            channel: made,
            ours: true,
        }))
    }

    fn differences(&self, have: &FoundChannel, check: Check) -> Vec<Difference> {
        if !have.ours {
            return Vec::new();
        }
        let c = &have.channel;
        let mut d = Vec::new();
        if c["enabled"] == false {
            d.push(Difference::update(
                "enabled",
                format!(
                    "disabled: {}",
                    check.say("enabled again", "would be enabled again")
                ),
            ));
        }
        if c["labels"]["email_address"] != self.email.as_str() {
            d.push(Difference::update(
                "labels",
                format!(
                    "sends to {}, wanted {}",
                    super::show(&c["labels"]["email_address"]),
                    self.email
                ),
            ));
        }
        d
    }

    async fn update(
        &self,
        prov: &Provisioner,
        have: &FoundChannel,
        diffs: &[Difference],
    ) -> Result<FoundChannel, StepError> {
        let mask = crate::ensure::fields(diffs).join(",");
        let now = prov
            .google
            .monitoring
            .patch_notification_channel(
                have.name(),
                &self.want(),
                &mask,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(super::alert_policy::monitoring_failed(
                prov,
                self.resource(),
                &self.project,
            ))?;
        Ok(FoundChannel {
            channel: now,
            ours: true,
        })
    }

    fn detail(&self, have: &FoundChannel) -> Option<String> {
        Some(if have.ours {
            have.name().to_string()
        } else {
            format!("{}: not made by this tool, used as it is", have.name())
        })
    }
}

/// Reads each of `[alerts] channels` once: a name that does not exist is a configuration
/// error naming the key.
pub async fn read_named(prov: &Provisioner, names: &[String]) -> Result<(), StepError> {
    for name in names {
        let project = name.split('/').nth(1).unwrap_or_default().to_string();
        let found = prov
            .google
            .monitoring
            .get_notification_channel(name, Some(prov.call_deadline()))
            .await
            .map_err(super::alert_policy::monitoring_failed(
                prov,
                format!("notification channel {name}"),
                &project,
            ))?;
        match found {
            Some(c) => prov.report.add(
                "notification channel",
                name,
                crate::report::Action::Exists,
                Some(format!(
                    "{} {}: from [alerts] channels, used as it is",
                    super::show(&c["type"]),
                    super::show(&c["displayName"])
                )),
            ),
            None => {
                return Err(StepError::Config(format!(
                    "`alerts.channels`: {name} does not exist (gcloud beta monitoring channels list --project {project} lists the channels)"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_found_by_label_and_name_else_any_channel_for_the_address() {
        let theirs = json!({"name": "projects/p/notificationChannels/1", "type": "email",
            "displayName": "ops", "labels": {"email_address": "Ops@Example.com"}});
        let listed = vec![theirs.clone()];
        let c = EmailChannel::new("p", "ops@example.com", &listed);
        let found = c.find().unwrap();
        assert!(!found.ours);
        assert!(c
            .differences(
                &found,
                Check {
                    adopted: false,
                    dry_run: false
                }
            )
            .is_empty());

        let mut ours = c.want();
        ours["name"] = json!("projects/p/notificationChannels/2");
        ours["enabled"] = json!(false);
        let listed = vec![theirs, ours];
        let c = EmailChannel::new("p", "ops@example.com", &listed);
        let found = c.find().unwrap();
        assert!(found.ours);
        assert_eq!(found.name(), "projects/p/notificationChannels/2");
        let d = c.differences(
            &found,
            Check {
                adopted: false,
                dry_run: false,
            },
        );
        assert_eq!(crate::ensure::fields(&d), ["enabled"]);
    }
}
