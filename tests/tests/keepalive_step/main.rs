//! `provisioner keepalive` (runbook step 6) through the real binary against the stateful
//! fakes: Cloud Run Admin v2 (long-running operations, IAM), Cloud Scheduler, Secret Manager,
//! Compute Engine (the static address), and the real Pub/Sub emulator through
//! `PUBSUB_EMULATOR_HOST` (the `google-cloud-pubsub` crate's REST admin calls). The emulator
//! serves no IAM, so there the Pub/Sub grants are left to a person, with the command; the
//! policy arithmetic is tested in the provisioner's unit tests. The job's payload then runs
//! through the real `keepalive check`.
//!
//! `world`: the fakes and the run; `first_run`, `updates`: what one run and the next do;
//! `payload_and_grants`: the job's payload, the events topic and the grants.

mod first_run;
mod payload_and_grants;
mod updates;
mod world;
