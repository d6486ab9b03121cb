//! The names of this number's resources ([`Names`], all derived from
//! `whatsapp-<cc><number>`) and of the keepalive's ([`KeepaliveNames`], mostly per project).

use crate::config::NumberConfig;

/// The names of this number's resources.
#[derive(Debug, Clone)]
pub struct Names {
    pub base: String,
    pub sql_instance: String,
    pub address: String,
    pub firewall: String,
    pub vm: String,
    pub network_tag: String,
    pub db_user: String,
    pub db_password_secret: String,
    pub tls_pin_secret: String,
    pub admin_password_secret: String,
    pub api_password_secret: String,
}

impl Names {
    pub fn of(cfg: &NumberConfig) -> Names {
        let base = cfg.resource_name();
        Names {
            sql_instance: base.clone(),
            address: base.clone(),
            firewall: format!("{base}-allow-web"),
            vm: base.clone(),
            network_tag: base.clone(),
            db_user: "whatsapp".into(),
            db_password_secret: format!("{base}-db-password"),
            tls_pin_secret: format!("{base}-tls-certificate"),
            admin_password_secret: format!("{base}-admin-password"),
            api_password_secret: format!("{base}-api-password"),
            base,
        }
    }
}

/// The names step 6 (`keepalive`) works with.
#[derive(Debug, Clone)]
pub struct KeepaliveNames {
    pub project: String,
    /// Cloud Run and Cloud Scheduler location.
    pub region: String,
    pub image: String,
    pub topic: String,
    /// The topic's id (`whatsapp-keepalive`), as `scheduler.yaml` takes it.
    pub topic_id: String,
    pub dead_letter_topic: String,
    pub subscription: String,
    pub dead_letter_subscription: String,
    pub service: String,
    pub service_account: String,
    pub invoker: String,
    /// `projects/P/topics/T` for the keepalive's events, if configured.
    pub events_topic: Option<String>,
    pub job: String,
    /// The Secret Manager version the job's payload names.
    pub password_version: String,
}

impl KeepaliveNames {
    pub fn of(cfg: &NumberConfig) -> KeepaliveNames {
        let k = &cfg.keepalive;
        let p = &cfg.project;
        let region = if k.region.is_empty() {
            cfg.region.clone()
        } else {
            k.region.clone()
        };
        let or = |v: &str, default: String| {
            if v.is_empty() {
                default
            } else {
                v.to_string()
            }
        };
        let n = Names::of(cfg);
        KeepaliveNames {
            image: or(
                &k.image,
                format!("{region}-docker.pkg.dev/{p}/keepalive/keepalive:latest"),
            ),
            topic: format!("projects/{p}/topics/{}", k.topic),
            topic_id: k.topic.clone(),
            dead_letter_topic: format!("projects/{p}/topics/{}-dead-letter", k.topic),
            subscription: format!("projects/{p}/subscriptions/{}-push", k.topic),
            dead_letter_subscription: format!("projects/{p}/subscriptions/{}-dead-letter", k.topic),
            service: k.service.clone(),
            service_account: or(
                &k.service_account,
                format!("whatsapp-keepalive@{p}.iam.gserviceaccount.com"),
            ),
            invoker: or(
                &k.invoker_service_account,
                format!("whatsapp-keepalive-invoker@{p}.iam.gserviceaccount.com"),
            ),
            events_topic: match k.events_topic.as_str() {
                "" => None,
                t if t.starts_with("projects/") => Some(t.to_string()),
                t => Some(format!("projects/{p}/topics/{t}")),
            },
            job: format!("keepalive-{}", n.vm),
            password_version: format!(
                "projects/{p}/secrets/{}/versions/latest",
                n.admin_password_secret
            ),
            project: p.clone(),
            region,
        }
    }

    /// The events topic when it is in this project (step 6 creates and grants it).
    pub fn own_events_topic(&self) -> Option<&str> {
        self.events_topic
            .as_deref()
            .filter(|t| t.starts_with(&format!("projects/{}/", self.project)))
    }

    pub fn job_name(&self) -> String {
        self.job_name_of(&self.job)
    }

    /// `projects/P/locations/R/jobs/{job}`.
    pub fn job_name_of(&self, job: &str) -> String {
        format!(
            "projects/{}/locations/{}/jobs/{job}",
            self.project, self.region
        )
    }

    /// The id of the fleet job (`provisioner fleet`) of this project's and region's Cloud API
    /// numbers whose token is in `access_token_secret` (a version name):
    /// `keepalive-fleet-<secret id>-<8 hex digits>`. The same for the same group on every run;
    /// the digits (of a SHA-256 of project, region and version name) keep two groups apart
    /// even when a long secret id is cut. Letters, digits, `-` and `_` only, as Cloud
    /// Scheduler requires, and far below its 500 characters.
    pub fn fleet_job(&self, access_token_secret: &str) -> String {
        let secret_id = access_token_secret
            .split('/')
            .nth(3)
            .unwrap_or("token")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect::<String>();
        let group = format!("{}/{}/{access_token_secret}", self.project, self.region);
        let digest = ring::digest::digest(&ring::digest::SHA256, group.as_bytes());
        let hex: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("keepalive-fleet-{secret_id}-{hex}")
    }

    pub fn service_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        )
    }
}

#[cfg(test)]
impl KeepaliveNames {
    /// The names of +49 15112345678 in `acme-prod`, for tests.
    pub fn example() -> KeepaliveNames {
        KeepaliveNames {
            project: "acme-prod".into(),
            region: "europe-west3".into(),
            image: "europe-west3-docker.pkg.dev/acme-prod/keepalive/keepalive:1".into(),
            topic: "projects/acme-prod/topics/whatsapp-keepalive".into(),
            topic_id: "whatsapp-keepalive".into(),
            dead_letter_topic: "projects/acme-prod/topics/whatsapp-keepalive-dead-letter".into(),
            subscription: "projects/acme-prod/subscriptions/whatsapp-keepalive-push".into(),
            dead_letter_subscription:
                "projects/acme-prod/subscriptions/whatsapp-keepalive-dead-letter".into(),
            service: "whatsapp-keepalive".into(),
            service_account: "whatsapp-keepalive@acme-prod.iam.gserviceaccount.com".into(),
            invoker: "whatsapp-keepalive-invoker@acme-prod.iam.gserviceaccount.com".into(),
            events_topic: None,
            job: "keepalive-whatsapp-4915112345678".into(),
            password_version:
                "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest"
                    .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_job_name_is_stable_per_group_and_valid_for_cloud_scheduler() {
        let k = KeepaliveNames::example();
        let token = "projects/acme-prod/secrets/meta-token/versions/latest";
        let name = k.fleet_job(token);
        assert_eq!(name, k.fleet_job(token));
        assert!(name.starts_with("keepalive-fleet-meta-token-"), "{name}");
        assert_ne!(
            name,
            k.fleet_job("projects/acme-prod/secrets/meta-token-2/versions/latest")
        );
        let mut other_region = k.clone();
        other_region.region = "europe-west1".into();
        assert_ne!(name, other_region.fleet_job(token));
        let long = format!("projects/p/secrets/{}/versions/latest", "s".repeat(255));
        for n in [name, k.fleet_job(&long)] {
            assert!(n.len() <= 500 && n.len() < 80, "{n}");
            assert!(n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
}
