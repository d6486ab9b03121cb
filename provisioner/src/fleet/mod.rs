//! `provisioner fleet --dir DIR`: one Cloud Scheduler job per project, region and access-token
//! secret checks all the Cloud API numbers of DIR at once (the fleet payload of
//! `cloud-api-contract.md`), instead of one job per number.
//!
//! In order, so that a run stopped at any point leaves every number checked at least once:
//! 1. every `number.toml` is read and checked, and the fleet jobs rendered ([`numbers`]):
//!    a problem stops the command before any change;
//! 2. per project, the keepalive every number shares, exactly as `provisioner keepalive`
//!    ensures it ([`steps::keepalive::ensure_project`]);
//! 3. per group, the secrets its numbers name must exist, the service's account is granted
//!    read access to the token and each verify token (and to no other secret), and its fleet
//!    job is written; a job that gives numbers up to another group of this run is written
//!    after the jobs that take them;
//! 4. only then each number's own job is deleted ([`singles`]), and only one that publishes
//!    the Cloud API payload of that same number.
//!
//! On-Premises numbers keep their own jobs (`provisioner keepalive` manages them).

pub mod numbers;
mod singles;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cloud_api::job::{grant_token, grant_verify_token, missing_secrets};
use crate::ensure::{ensure, Ensured, Resource};
use crate::environment::Environment;
use crate::report::Action;
use crate::resources::job_payload::decoded_payload;
use crate::steps;
use crate::{Provisioner, StepError};
use numbers::{Group, Project};

/// What a run leaves for the exit status.
pub struct Outcome {
    /// Resources that differ from the numbers' files and were not changed.
    pub differences: usize,
}

/// Runs the command on the numbers under `dir`.
pub async fn run(dir: &Path, env: &Environment, dry_run: bool) -> Result<Outcome, StepError> {
    let fleet = numbers::read(dir)?;
    for n in &fleet.on_premises {
        println!(
            "fleet: {} (+{}{}) is an On-Premises number: it keeps its own job {}; `provisioner keepalive --config {}` manages it",
            n.file.display(),
            n.cfg.country_code,
            n.cfg.phone_number,
            crate::names::KeepaliveNames::of(&n.cfg).job,
            n.file.display()
        );
    }
    if fleet.projects.is_empty() {
        println!("fleet: no Cloud API number under {}: no fleet job", dir.display());
        return Ok(Outcome { differences: 0 });
    }

    let mut provs = Vec::new();
    for p in &fleet.projects {
        let prov = Provisioner::new(p.cfg.clone(), env.clone(), "fleet", dry_run)
            .map_err(|e| StepError::Config(e.to_string()))?;
        println!(
            "fleet: project {}: service {} in {}, topic {}; {} fleet job(s) for {} Cloud API number(s)",
            p.k.project,
            p.k.service,
            p.k.region,
            p.k.topic,
            p.groups.len(),
            p.groups.iter().map(|g| g.members.len()).sum::<usize>()
        );
        steps::keepalive::ensure_project(&prov, &p.k).await?;
        // The lead's place for #17: `steps::alerts::run(&prov).await?;` per project, here.
        for g in &p.groups {
            prepare(&prov, p, g).await?;
        }
        provs.push(prov);
    }

    // Which numbers each group's job lists now: a job that lists a number another group of
    // this run takes over is written after that group's job.
    let mut listed = Vec::new();
    for (prov, p) in provs.iter().zip(&fleet.projects) {
        for g in &p.groups {
            listed.push(listed_numbers(&g.job.read(prov).await?));
        }
    }
    let owner: BTreeMap<&str, usize> = groups(&fleet.projects)
        .enumerate()
        .flat_map(|(i, (_, g))| {
            g.members
                .iter()
                .map(move |m| (m.target.phone_number_id.as_str(), i))
        })
        .collect();
    let gives_up = |i: usize| {
        listed[i]
            .iter()
            .any(|id| owner.get(id.as_str()).is_some_and(|&o| o != i))
    };
    let mut written: Vec<Option<Value>> = vec![None; listed.len()];
    for later in [false, true] {
        for (i, (p, g)) in groups(&fleet.projects).enumerate() {
            if gives_up(i) == later {
                let prov = &provs[project_index(&fleet.projects, p)];
                written[i] = write_job(prov, g, &listed[i], dir).await?;
            }
        }
    }

    for (i, (p, g)) in groups(&fleet.projects).enumerate() {
        let prov = &provs[project_index(&fleet.projects, p)];
        singles::remove(prov, &p.k, g, written[i].as_ref()).await?;
    }
    Ok(Outcome {
        differences: provs.iter().map(|p| p.report.differences().len()).sum(),
    })
}

/// Every group with its project, in order.
fn groups(projects: &[Project]) -> impl Iterator<Item = (&Project, &Group)> {
    projects
        .iter()
        .flat_map(|p| p.groups.iter().map(move |g| (p, g)))
}

fn project_index(projects: &[Project], p: &Project) -> usize {
    projects
        .iter()
        .position(|q| std::ptr::eq(q, p))
        .unwrap_or_default()
}

/// Before a group's job is written: the secrets its numbers name exist (under `--dry-run` a
/// missing one is reported), and the service's account may read them, and no other.
async fn prepare(prov: &Provisioner, p: &Project, g: &Group) -> Result<(), StepError> {
    let mut blocked = Vec::new();
    for m in &g.members {
        for why in missing_secrets(prov, &m.target).await? {
            blocked.push(format!("{}: {why}", m.file.display()));
        }
    }
    if !blocked.is_empty() {
        if prov.dry_run {
            prov.report.add(
                "Cloud Scheduler job",
                &g.job.job,
                Action::Blocked(blocked.join("; ")),
                None,
            );
            return Ok(());
        }
        return Err(StepError::failed(g.job.resource(), blocked.join("; ")));
    }
    let token = &g.members[0].target.access_token_secret;
    grant_token(prov, &p.k, token).await?;
    for m in &g.members {
        grant_verify_token(prov, &p.k, &m.target.webhook_verify_token_secret).await?;
    }
    Ok(())
}

/// The phone number ids a fleet job's payload lists (none for another kind of job).
fn listed_numbers(job: &Option<Value>) -> BTreeSet<String> {
    job.as_ref()
        .and_then(|j| decoded_payload(&j["pubsubTarget"]))
        .and_then(|p| p["numbers"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|n| n["phoneNumberId"].as_str().map(str::to_string))
        .collect()
}

/// Writes the group's job; says which numbers it no longer lists. Answers the job as it is
/// now (`None` under `--dry-run` when it would be created).
async fn write_job(
    prov: &Provisioner,
    g: &Group,
    listed: &BTreeSet<String>,
    dir: &Path,
) -> Result<Option<Value>, StepError> {
    let now = match ensure(prov, &g.job).await? {
        Ensured::Present(job) => Some(job),
        Ensured::Planned => None,
    };
    let wanted: BTreeSet<&str> = g
        .members
        .iter()
        .map(|m| m.target.phone_number_id.as_str())
        .collect();
    for gone in listed.iter().filter(|id| !wanted.contains(id.as_str())) {
        println!(
            "fleet: {} {} Cloud API number {gone}: it is not (or no longer) under {} with this token; if it should still be checked, run `provisioner keepalive --config FILE` with its number.toml for a job of its own",
            g.job.job,
            if prov.dry_run { "would drop" } else { "dropped" },
            dir.display()
        );
    }
    Ok(now)
}
