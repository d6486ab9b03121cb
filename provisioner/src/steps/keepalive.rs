//! Runbook step 6: the keepalive in production.
//!
//! Per project, shared by every number: the Pub/Sub topic the scheduler jobs publish to, its
//! dead-letter topic (with a pull subscription that keeps what could not be delivered for a
//! week), the Cloud Run service from `keepalive.image` (not public: only the push identity
//! may invoke it), the push subscription that calls it with an OIDC token, and the grants
//! dead letters and events need. Per number: the Cloud Scheduler job whose payload names the
//! password's Secret Manager version, never the password (or, for a Cloud API number, the
//! ids and the versions of its access token and verify token, which the service's account
//! is granted to read). A second number adds only its job.
//!
//! Each resource is in [`crate::resources`]; this step says in which order, and hands each
//! the state it needs (the service's URL to the push subscription, what is only planned to
//! the grants).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;

use crate::cloud_api;
use crate::config::Platform;
use crate::ensure::{ensure, planned, Resource};
use crate::names::KeepaliveNames;
use crate::report::Action;
use crate::resources::address;
use crate::resources::grant::{ensure_grants, foreign_events_grant, grants_of};
use crate::resources::invoker::InvokerBinding;
use crate::resources::job::SchedulerJob;
use crate::resources::job_payload::{JobPayload, OnPremisesTarget};
use crate::resources::secret::read_newest;
use crate::resources::secret_accessor;
use crate::resources::service::KeepaliveService;
use crate::resources::subscription::PubSubSubscription;
use crate::resources::topic::PubSubTopic;
use crate::{Provisioner, StepError};

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let k = KeepaliveNames::of(&prov.cfg);
    println!(
        "keepalive: service {} in {}, topic {}, job {}",
        k.service, k.region, k.topic, k.job
    );
    let payload = match prov.cfg.platform {
        Platform::OnPrem => on_premises_payload(prov, &k).await?,
        Platform::Cloud => cloud_api::job::payload(prov, &k).await?,
    };
    ensure_project(prov, &k).await?;

    // Read access to the secrets the job names, and to no other.
    if prov.cfg.platform == Platform::OnPrem {
        grant_secret_access(prov, &k).await?;
    }

    match payload {
        Ok(payload) => {
            // A Cloud API job names two secrets the service must read: granted first.
            if let JobPayload::CloudApi(t) = &payload {
                cloud_api::job::grant_secrets(prov, &k, t).await?;
            }
            ensure(prov, &SchedulerJob::new(&k, payload)?).await?;
        }
        Err(blocked) => prov.report.add(
            "Cloud Scheduler job",
            &k.job,
            Action::Blocked(blocked),
            None,
        ),
    }
    // Last: who hears of a number that stays broken.
    crate::steps::alerts::run(prov).await
}

/// What every number of the project shares, in `k`'s names: the topics, the service and who
/// may invoke it, the subscriptions and the grants dead letters and events need. `keepalive`
/// (one number) and `fleet` (each project of a directory of numbers) both call it.
pub async fn ensure_project(prov: &Provisioner, k: &KeepaliveNames) -> Result<(), StepError> {
    let pubsub = &prov.google.pubsub;
    let topics = pubsub
        .topic_admin()
        .await
        .map_err(prov.google_failed("Pub/Sub client"))?;
    let subscriptions = pubsub
        .subscription_admin()
        .await
        .map_err(prov.google_failed("Pub/Sub client"))?;
    let topic = |name: &str| PubSubTopic {
        admin: &topics,
        name: name.to_string(),
    };

    ensure(prov, &topic(&k.topic)).await?;
    let dead_letters = ensure(prov, &topic(&k.dead_letter_topic)).await?;
    let events = match k.own_events_topic() {
        Some(events) => ensure(prov, &topic(events)).await?.is_planned(),
        None => false,
    };

    let service = KeepaliveService::of(k);
    let deployed = ensure(prov, &service).await?;
    let url = deployed.as_present().and_then(KeepaliveService::url);
    let invoker = InvokerBinding::of(k);
    match &deployed.as_present() {
        Some(s) if url.is_none() && !prov.dry_run => {
            return Err(StepError::failed(service.resource(), never_ready(s)));
        }
        Some(_) => {
            ensure(prov, &invoker).await?;
        }
        None => planned(prov, &invoker),
    }

    ensure(prov, &PubSubSubscription::dead_letter(&subscriptions, k)).await?;
    let push_planned = match &url {
        Some(url) => ensure(prov, &PubSubSubscription::push(&subscriptions, k, url))
            .await?
            .is_planned(),
        None => {
            planned(prov, &PubSubSubscription::push_planned(&subscriptions, k));
            true
        }
    };

    // The grants first: a job this step cannot fix (DISABLED) stops it, and what dead
    // letters and events need should be in place all the same.
    if let Some((topic, how)) = foreign_events_grant(k) {
        prov.report
            .add("events grant", &topic, Action::ByHand(how), None);
    }
    let planned_only = dead_letters.is_planned() || push_planned || events;
    ensure_grants(prov, k, &grants_of(k), planned_only).await
}

/// The job's payload for this number's On-Premises client; `Err`: what earlier step is
/// missing (an error unless this is a dry run). What it names must exist: the static
/// address (step 2) and the admin password (step 3).
async fn on_premises_payload(
    prov: &Provisioner,
    k: &KeepaliveNames,
) -> Result<Result<JobPayload, String>, StepError> {
    let n = prov.names();
    let ip = address::read_ip(prov).await?;
    let fingerprint = pinned_fingerprint(prov).await?;
    // A disabled or destroyed newest version is an error here too: the job would name it.
    let password_exists = read_newest(prov, &n.admin_password_secret).await?.is_some();
    let mut blocked = Vec::new();
    if ip.is_none() {
        blocked.push(format!(
            "the static address {} does not exist yet: run `provisioner vm` first",
            n.address
        ));
    }
    if !password_exists {
        blocked.push(format!(
            "the WhatsApp password secret {} does not exist yet: run `provisioner whatsapp` first",
            n.admin_password_secret
        ));
    }
    if fingerprint.is_none() {
        blocked.push(format!(
            "no certificate of the WhatsApp client is pinned in {} yet: run `provisioner vm` first (it pins it on first contact)",
            n.tls_pin_secret
        ));
    }
    match (ip, fingerprint) {
        (Some(ip), Some(tls_fingerprint)) if blocked.is_empty() => {
            Ok(Ok(JobPayload::OnPremises(OnPremisesTarget {
                whatsapp_hostname: format!("https://{ip}"),
                tls_fingerprint,
                whatsapp_username: "admin".into(),
                password_secret: k.password_version.clone(),
                vm: n.vm,
                zone: prov.cfg.zone.clone(),
            })))
        }
        _ if prov.dry_run => Ok(Err(blocked.join("; "))),
        _ => Err(StepError::failed(
            format!("Cloud Scheduler job {}", k.job),
            blocked.join("; "),
        )),
    }
}

/// The service's account may read this number's admin password, on that secret only (never
/// project-wide): `roles/secretmanager.secretAccessor` in the secret's own IAM policy.
async fn grant_secret_access(prov: &Provisioner, k: &KeepaliveNames) -> Result<(), StepError> {
    secret_accessor::ensure(
        prov,
        &k.password_version,
        &format!("serviceAccount:{}", k.service_account),
        "the secret does not exist yet: run `provisioner whatsapp` first",
    )
    .await
}

/// `sha256:` + the hex SHA-256 of the certificate pinned in Secret Manager (by `vm` or the
/// first contact of a later step); `None` while none is pinned.
async fn pinned_fingerprint(prov: &Provisioner) -> Result<Option<String>, StepError> {
    let secret = prov.names().tls_pin_secret;
    let Some((_, b64)) = read_newest(prov, &secret).await? else {
        return Ok(None);
    };
    let der = STANDARD.decode(b64.expose_secret().trim()).map_err(|_| {
        StepError::failed(
            format!("secret {secret}"),
            "does not hold a base64 certificate",
        )
    })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(format!("sha256:{hex}")))
}

/// Why a deployed service has no URL, and what to do.
fn never_ready(service: &serde_json::Value) -> String {
    match crate::resources::service::failed_deployment(service) {
        Some(why) => format!("it has never been ready: its latest revision failed ({why}); run `provisioner keepalive` again to deploy it again"),
        None => "the service has no URL yet (still deploying?); run `provisioner keepalive` again in a minute".into(),
    }
}
