//! A number's Cloud Scheduler job: every 5 minutes it publishes the number's payload
//! ([`JobPayload`], rendered in [`super::job_payload`]) to the keepalive's topic. Ours: a
//! run brings it back to the spec, writes every field again after a failed update, and
//! resumes a paused job; a job Cloud Scheduler disabled stops the command.

use serde_json::{json, Value};

use super::job_payload::{
    decoded_payload, keep_extra_payload_fields, redacted, render_job, JobFields, JobPayload,
};
use super::{duration_s, show};
use crate::ensure::{fields, read_back, Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::{Provisioner, StepError};

/// The job's fields compared as they are (update-mask names).
const PLAIN_JOB_FIELDS: [&str; 4] = ["schedule", "timeZone", "description", "attemptDeadline"];

/// Every field of the job this step owns (update-mask names).
pub const JOB_FIELDS: [&str; 6] = [
    PLAIN_JOB_FIELDS[0],
    PLAIN_JOB_FIELDS[1],
    PLAIN_JOB_FIELDS[2],
    PLAIN_JOB_FIELDS[3],
    "pubsubTarget",
    "retryConfig",
];

/// Not a field: a paused job is resumed, not patched.
const RESUME: &str = "state";

pub struct SchedulerJob {
    pub project: String,
    pub region: String,
    /// The job's id.
    pub job: String,
    pub full_name: String,
    /// `projects/P/topics/T`
    pub topic: String,
    pub payload: JobPayload,
    /// The rendered job.
    pub want: Value,
}

impl SchedulerJob {
    /// The job of `k`'s number publishing `payload`; fails when the template does not render.
    pub fn new(k: &KeepaliveNames, payload: JobPayload) -> Result<SchedulerJob, StepError> {
        Self::named(k, &k.job, payload)
    }

    /// The job `job` (an id) in `k`'s project and region publishing `payload` to `k`'s topic.
    pub fn named(
        k: &KeepaliveNames,
        job: &str,
        payload: JobPayload,
    ) -> Result<SchedulerJob, StepError> {
        let fields = JobFields {
            project: k.project.clone(),
            region: k.region.clone(),
            job: job.to_string(),
            topic_id: k.topic_id.clone(),
            time_zone: "Etc/UTC".into(),
        };
        let want = render_job(&fields, &payload)
            .map_err(|e| StepError::failed(format!("Cloud Scheduler job {}", k.job_name_of(job)), e))?;
        Ok(SchedulerJob {
            project: k.project.clone(),
            region: k.region.clone(),
            job: job.to_string(),
            full_name: k.job_name_of(job),
            topic: k.topic.clone(),
            payload,
            want,
        })
    }

    /// The rendered job with what `have`'s payload adds kept.
    fn want_for(&self, have: &Value) -> Value {
        keep_extra_payload_fields(have, &self.want, &self.payload)
    }
}

impl Resource for SchedulerJob {
    type State = Value;

    fn kind(&self) -> &'static str {
        "Cloud Scheduler job"
    }

    fn name(&self) -> &str {
        &self.job
    }

    fn resource(&self) -> String {
        format!("{} {}", self.kind(), self.full_name)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        prov.google
            .scheduler
            .get_job(
                &self.project,
                &self.region,
                &self.job,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn plan(&self) -> Option<String> {
        self.detail(&self.want)
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Value>, StepError> {
        let create = prov
            .google
            .scheduler
            .create_job(
                &self.project,
                &self.region,
                &self.want,
                Some(prov.call_deadline()),
            )
            .await;
        match create {
            Ok(_) => Ok(Created::New(self.want.clone())),
            Err(e) if e.is_already_exists() => Ok(Created::AlreadyExists),
            Err(e) => Err(prov.google_failed(self.resource())(e)),
        }
    }

    fn differences(&self, have: &Value, check: Check) -> Vec<Difference> {
        let state = have["state"].as_str().unwrap_or("ENABLED");
        if state == "DISABLED" {
            return vec![Difference::stop(
                "Cloud Scheduler disabled the job after errors (state DISABLED): look at its last attempt in the console, delete it (gcloud scheduler jobs delete) and run `provisioner keepalive` again to create it anew",
            )];
        }
        let mut d: Vec<Difference> = job_differences(have, &self.want_for(have))
            .into_iter()
            .map(|(field, words)| Difference::update(field, words))
            .collect();
        // A failed update leaves the job in UPDATE_FAILED until an update succeeds: write
        // every field this step owns again.
        if state == "UPDATE_FAILED" && d.is_empty() {
            let written = check.say("written again", "would be written again");
            d = JOB_FIELDS
                .iter()
                .map(|f| Difference::update(f, format!("{f} {written} after a failed update")))
                .collect();
        }
        // A paused job is a keepalive that does not run: this step is asked to make it run.
        if state == "PAUSED" {
            d.push(Difference::update(
                RESUME,
                format!(
                    "paused (last changed {}): {}",
                    have["userUpdateTime"]
                        .as_str()
                        .unwrap_or("at an unknown time"),
                    check.say("resumed", "would resume")
                ),
            ));
        }
        d
    }

    async fn update(
        &self,
        prov: &Provisioner,
        have: &Value,
        diffs: &[Difference],
    ) -> Result<Value, StepError> {
        let scheduler = &prov.google.scheduler;
        let (project, region, job) = (&self.project, &self.region, &self.job);
        let mask: Vec<&str> = fields(diffs).into_iter().filter(|f| *f != RESUME).collect();
        if !mask.is_empty() {
            scheduler
                .patch_job(
                    project,
                    region,
                    job,
                    &self.want_for(have),
                    &mask.join(","),
                    Some(prov.call_deadline()),
                )
                .await
                .map_err(prov.google_failed(self.resource()))?;
        }
        if fields(diffs).contains(&RESUME) {
            if let Err(e) = scheduler
                .resume_job(project, region, job, Some(prov.call_deadline()))
                .await
            {
                // Refused because it is no longer paused (a retried resume whose first
                // attempt went through, or someone else): fine when it is enabled now.
                let now = self.read(prov).await?;
                if now.as_ref().map(|j| &j["state"]) != Some(&json!("ENABLED")) {
                    return Err(prov.google_failed(self.resource())(e));
                }
            }
        }
        read_back(prov, self, "not found right after it was updated").await
    }

    fn detail(&self, _: &Value) -> Option<String> {
        Some(format!(
            "{} to {}, {}",
            show(&self.want["schedule"]),
            self.topic,
            self.payload.describe()
        ))
    }
}

/// How an existing job differs from the rendered one: (update-mask field, in words) per
/// difference; empty when as wanted. Passwords in a payload are never shown.
pub fn job_differences(have: &Value, want: &Value) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    for field in PLAIN_JOB_FIELDS {
        let (h, w) = (&have[field], &want[field]);
        let optional = matches!(field, "description" | "attemptDeadline");
        if !w.is_null() && h != w && !(optional && h.is_null()) {
            let same_duration = field == "attemptDeadline" && duration_s(h) == duration_s(w);
            if !same_duration {
                d.push((field, format!("{field} is {}, wanted {}", show(h), show(w))));
            }
        }
    }
    let (ht, wt) = (&have["pubsubTarget"], &want["pubsubTarget"]);
    let decoded = |t: &Value| decoded_payload(t).unwrap_or(Value::Null);
    let attrs = |t: &Value| t["attributes"].as_object().cloned().unwrap_or_default();
    if ht["topicName"] != wt["topicName"] || decoded(ht) != decoded(wt) || attrs(ht) != attrs(wt) {
        d.push((
            "pubsubTarget",
            format!(
                "publishes {} to {}, wanted {} to {}",
                redacted(&decoded(ht)),
                show(&ht["topicName"]),
                redacted(&decoded(wt)),
                show(&wt["topicName"])
            ),
        ));
    }
    let retries = |v: &Value| v["retryConfig"]["retryCount"].as_i64().unwrap_or(0);
    if retries(have) != retries(want) {
        d.push((
            "retryConfig",
            format!("retryCount is {}, wanted {}", retries(have), retries(want)),
        ));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::job_payload::tests::{job_fields, on_premises, rendered};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    #[test]
    fn a_rendered_job_matches_itself_and_optional_fields_left_out_are_not_differences() {
        let job = rendered();
        assert!(job_differences(&job, &job).is_empty());
        let mut have = job.clone();
        have.as_object_mut().unwrap().remove("attemptDeadline");
        have.as_object_mut().unwrap().remove("description");
        assert!(job_differences(&have, &job).is_empty());
    }

    #[test]
    fn a_changed_payload_or_schedule_is_a_difference() {
        let want = rendered();
        let mut have = want.clone();
        have["schedule"] = json!("*/10 * * * *");
        let mut t = on_premises();
        t.whatsapp_hostname = "https://34.89.9.9".into();
        have["pubsubTarget"] =
            render_job(&job_fields(), &JobPayload::OnPremises(t)).unwrap()["pubsubTarget"].clone();
        have["state"] = json!("ENABLED");
        let d = job_differences(&have, &want);
        let names: Vec<&str> = d.iter().map(|(f, _)| *f).collect();
        assert_eq!(names, ["schedule", "pubsubTarget"]);
        assert!(d[1].1.contains("34.89.9.9"), "{}", d[1].1);
    }

    #[test]
    fn passwords_in_a_payload_are_never_printed() {
        let want = rendered();
        let mut payload = decoded_payload(&want["pubsubTarget"]).unwrap();
        payload["whatsAppPassword"] = json!("clear-text-pw");
        payload["smtpPassword"] = json!("smtp-secret-pw");
        let mut have = want.clone();
        have["pubsubTarget"]["data"] = json!(STANDARD.encode(payload.to_string()));
        let merged =
            keep_extra_payload_fields(&have, &want, &JobPayload::OnPremises(on_premises()));
        assert_eq!(
            decoded_payload(&merged["pubsubTarget"]).unwrap()["smtpPassword"],
            "smtp-secret-pw"
        );
        let d = job_differences(&have, &merged);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            !d[0].1.contains("clear-text-pw") && !d[0].1.contains("smtp-secret-pw"),
            "{}",
            d[0].1
        );
        assert!(d[0].1.contains("<redacted>"), "{}", d[0].1);
    }

    #[test]
    fn paused_failed_and_disabled_jobs() {
        let job = SchedulerJob::new(
            &KeepaliveNames::example(),
            JobPayload::OnPremises(on_premises()),
        )
        .unwrap();
        let run = Check {
            adopted: false,
            dry_run: false,
        };
        let mut have = job.want.clone();
        have["state"] = json!("PAUSED");
        let d = job.differences(&have, run);
        assert_eq!(fields(&d), [RESUME]);
        assert!(d[0].words.ends_with(": resumed"), "{d:?}");
        let d = job.differences(
            &have,
            Check {
                dry_run: true,
                ..run
            },
        );
        assert!(d[0].words.ends_with(": would resume"), "{d:?}");

        have["state"] = json!("UPDATE_FAILED");
        assert_eq!(fields(&job.differences(&have, run)), JOB_FIELDS);

        have["state"] = json!("DISABLED");
        let d = job.differences(&have, run);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].fix, crate::ensure::Fix::Stop);
    }
}
