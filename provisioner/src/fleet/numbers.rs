//! What `provisioner fleet --dir DIR` works on: every `number.toml` under DIR, read and
//! checked before anything is changed. On-Premises numbers are only listed (each keeps its
//! own job); Cloud API numbers are grouped by project, region and access-token secret, one
//! fleet job per group, rendered here so that a group that does not fit one job stops the
//! command before its first change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cloud_api::job::target_of;
use crate::config::{NumberConfig, Platform};
use crate::names::KeepaliveNames;
use crate::resources::job::SchedulerJob;
use crate::resources::job_payload::{CloudApiTarget, FleetTarget, JobPayload, MAX_JOB_BYTES};
use crate::StepError;

/// How deep under DIR `number.toml` files are looked for (DIR itself is depth 0).
pub const MAX_DEPTH: usize = 4;

/// One `number.toml` under DIR.
pub struct Number {
    pub file: PathBuf,
    pub cfg: NumberConfig,
}

/// A Cloud API number in a fleet job.
pub struct Member {
    pub file: PathBuf,
    pub target: CloudApiTarget,
    /// The id of the number's own job (`keepalive-whatsapp-<cc><number>`), if it has one.
    pub single_job: String,
}

/// The numbers of one project, region and token: one fleet job.
pub struct Group {
    pub job: SchedulerJob,
    pub members: Vec<Member>,
}

/// The Cloud API numbers of one project: its keepalive (the same settings for all, checked)
/// and its fleet jobs.
pub struct Project {
    /// The configuration of its first number: what the project's keepalive is made from.
    pub cfg: NumberConfig,
    pub k: KeepaliveNames,
    pub groups: Vec<Group>,
}

/// Everything under DIR, checked.
pub struct Fleet {
    pub on_premises: Vec<Number>,
    pub projects: Vec<Project>,
}

/// Every `number.toml` under `dir` (at most [`MAX_DEPTH`] deep, hidden directories and
/// symbolic links to directories skipped), sorted by path.
pub fn find(dir: &Path) -> Result<Vec<PathBuf>, StepError> {
    let mut found = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| {
            StepError::Config(format!("--dir {}: cannot read it: {e}", d.display()))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                StepError::Config(format!("--dir {}: cannot read it: {e}", d.display()))
            })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| {
                StepError::Config(format!("{}: cannot read it: {e}", path.display()))
            })?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if kind.is_dir() && depth < MAX_DEPTH && !hidden {
                todo.push((path, depth + 1));
            } else if !kind.is_dir() && entry.file_name() == "number.toml" {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Reads and checks every number under `dir`, and renders the fleet jobs; the first problem
/// stops it, naming the file (or both files) and the key.
pub fn read(dir: &Path) -> Result<Fleet, StepError> {
    let files = find(dir)?;
    if files.is_empty() {
        return Err(StepError::Config(format!(
            "--dir {}: no number.toml in it or below (at most {MAX_DEPTH} levels deep)",
            dir.display()
        )));
    }
    let mut numbers = Vec::with_capacity(files.len());
    for file in files {
        let cfg = NumberConfig::load(&file).map_err(|e| StepError::Config(e.to_string()))?;
        numbers.push(Number { file, cfg });
    }
    check_unique(&numbers)?;
    let (cloud, on_premises): (Vec<Number>, Vec<Number>) = numbers
        .into_iter()
        .partition(|n| n.cfg.platform == Platform::Cloud);
    check_project_settings(&cloud)?;
    Ok(Fleet {
        projects: projects(cloud)?,
        on_premises,
    })
}

/// No number twice (by its digits or its phone number id).
fn check_unique(numbers: &[Number]) -> Result<(), StepError> {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for n in numbers {
        let mut keys = vec![format!("the number +{}{}", n.cfg.country_code, n.cfg.phone_number)];
        if n.cfg.platform == Platform::Cloud && !n.cfg.cloud.phone_number_id.is_empty() {
            keys.push(format!("`cloud.phone_number_id` {}", n.cfg.cloud.phone_number_id));
        }
        for key in keys {
            if let Some(first) = seen.insert(key.clone(), &n.file) {
                return Err(StepError::Config(format!(
                    "{} and {} both describe {key}: keep one of them",
                    first.display(),
                    n.file.display()
                )));
            }
        }
    }
    Ok(())
}

/// The keepalive settings one project's numbers share (one service checks them all), by the
/// key of `number.toml` they come from.
fn project_settings(k: &KeepaliveNames) -> [(&'static str, String); 6] {
    [
        ("keepalive.region", k.region.clone()),
        ("keepalive.image", k.image.clone()),
        ("keepalive.topic", k.topic.clone()),
        ("keepalive.service", k.service.clone()),
        ("keepalive.service_account", k.service_account.clone()),
        ("keepalive.events_topic", k.events_topic.clone().unwrap_or_default()),
    ]
}

/// The Cloud API numbers of a project agree on [`project_settings`] (and the invoker).
fn check_project_settings(cloud: &[Number]) -> Result<(), StepError> {
    let mut first: BTreeMap<&str, (&Path, KeepaliveNames)> = BTreeMap::new();
    for n in cloud {
        let k = KeepaliveNames::of(&n.cfg);
        let Some((file, other)) = first.get(n.cfg.project.as_str()) else {
            first.insert(&n.cfg.project, (&n.file, k));
            continue;
        };
        let mut ours = project_settings(&k).to_vec();
        ours.push(("keepalive.invoker_service_account", k.invoker.clone()));
        let mut theirs = project_settings(other).to_vec();
        theirs.push(("keepalive.invoker_service_account", other.invoker.clone()));
        for ((key, a), (_, b)) in theirs.iter().zip(&ours) {
            if a != b {
                return Err(StepError::Config(format!(
                    "{} and {}: `{key}` differs ({a:?} and {b:?}), but one keepalive serves the numbers of project {}: make them agree",
                    file.display(),
                    n.file.display(),
                    n.cfg.project
                )));
            }
        }
    }
    Ok(())
}

/// The Cloud API numbers by project, then by (region, token): one rendered job per group.
fn projects(cloud: Vec<Number>) -> Result<Vec<Project>, StepError> {
    let mut by_project: BTreeMap<String, Vec<Number>> = BTreeMap::new();
    for n in cloud {
        by_project.entry(n.cfg.project.clone()).or_default().push(n);
    }
    let mut projects = Vec::new();
    for (_, numbers) in by_project {
        let cfg = numbers[0].cfg.clone();
        let k = KeepaliveNames::of(&cfg);
        let mut by_token: BTreeMap<String, Vec<Member>> = BTreeMap::new();
        for n in numbers {
            let target = target_of(&n.cfg).map_err(|e| StepError::Config(e.to_string()))?;
            let single_job = KeepaliveNames::of(&n.cfg).job;
            by_token
                .entry(target.access_token_secret.clone())
                .or_default()
                .push(Member {
                    file: n.file,
                    target,
                    single_job,
                });
        }
        let groups = by_token
            .into_iter()
            .map(|(token, members)| group(&k, token, members))
            .collect::<Result<_, _>>()?;
        projects.push(Project { cfg, k, groups });
    }
    Ok(projects)
}

/// The fleet job of `members` (all with the token in `token`), refused when it does not fit.
fn group(k: &KeepaliveNames, token: String, members: Vec<Member>) -> Result<Group, StepError> {
    let target = FleetTarget {
        access_token_secret: token,
        numbers: members.iter().map(|m| m.target.clone()).collect(),
    };
    let job_id = k.fleet_job(&target.access_token_secret);
    let job = SchedulerJob::named(k, &job_id, JobPayload::Fleet(target))?;
    fits(&job, members.len())?;
    Ok(Group { job, members })
}

/// A job that Cloud Scheduler would refuse (over [`MAX_JOB_BYTES`]) is an error here: the
/// fleet is not split over several jobs, since a number moving between them could be left
/// unchecked by a run stopped half-way.
fn fits(job: &SchedulerJob, count: usize) -> Result<(), StepError> {
    let bytes = serde_json::to_vec(&job.want).map_or(usize::MAX, |b| b.len());
    if bytes <= MAX_JOB_BYTES {
        return Ok(());
    }
    Err(StepError::Config(format!(
        "the fleet job {} would hold {count} numbers in {bytes} bytes, more than Cloud Scheduler takes for one job (1 MB, of which {MAX_JOB_BYTES} bytes are used here): give part of these numbers another access-token secret (one fleet job per token)",
        job.full_name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(dir: &Path, sub: &str, digits: &str, id: &str, token: &str, extra: &str) {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("number.toml"),
            format!(
                "project = \"acme-prod\"\nregion = \"europe-west3\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"{digits}\"\nplatform = \"cloud\"\n{extra}\n[cloud]\nphone_number_id = \"{id}\"\nwaba_id = \"900\"\naccess_token_secret = \"projects/acme-prod/secrets/{token}/versions/latest\"\nwebhook_url = \"https://bot.example.com/hook/{id}\"\n"
            ),
        )
        .unwrap();
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn numbers_group_by_token_in_a_stable_order() {
        let d = dir("groups");
        number(&d, "b", "1510000002", "2002", "token-a", "");
        number(&d, "a/deeper", "1510000001", "2001", "token-a", "");
        number(&d, "c", "1510000003", "2003", "token-b", "");
        let fleet = read(&d).unwrap();
        assert_eq!(fleet.projects.len(), 1);
        let groups = &fleet.projects[0].groups;
        let ids = |g: &Group| -> Vec<String> {
            g.members
                .iter()
                .map(|m| m.target.phone_number_id.clone())
                .collect()
        };
        assert_eq!(ids(&groups[0]), ["2001", "2002"]);
        assert_eq!(ids(&groups[1]), ["2003"]);
        assert_eq!(groups[0].members[0].single_job, "keepalive-whatsapp-491510000001");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn disagreeing_settings_and_duplicates_name_both_files() {
        let d = dir("disagree");
        number(&d, "a", "1510000001", "2001", "token-a", "");
        number(&d, "b", "1510000002", "2002", "token-a", "[keepalive]\nservice = \"other\"\n");
        let Err(StepError::Config(e)) = read(&d) else {
            panic!("accepted")
        };
        assert!(e.contains("keepalive.service") && e.contains("a/number.toml") && e.contains("b/number.toml"), "{e}");
        let d = dir("dupe");
        number(&d, "a", "1510000001", "2001", "token-a", "");
        number(&d, "b", "1510000002", "2001", "token-a", "");
        let Err(StepError::Config(e)) = read(&d) else {
            panic!("accepted")
        };
        assert!(e.contains("phone_number_id") && e.contains("2001"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_group_too_large_for_one_job_is_refused() {
        let k = KeepaliveNames::example();
        let member = |i: usize| Member {
            file: PathBuf::from(format!("{i}/number.toml")),
            target: CloudApiTarget {
                phone_number_id: format!("{}", 100_000_000_000_000u64 + i as u64),
                waba_id: "102290129340398".into(),
                access_token_secret: "projects/acme-prod/secrets/t/versions/latest".into(),
                app_id: String::new(),
                webhook_url: format!("https://bot-{i}.example.com/whatsapp/cloud/webhook"),
                webhook_verify_token_secret: format!(
                    "projects/acme-prod/secrets/whatsapp-49151{i:08}-webhook-verify-token/versions/latest"
                ),
                name: format!("+49151{i:08}"),
            },
            single_job: format!("keepalive-whatsapp-49151{i:08}"),
        };
        let token = "projects/acme-prod/secrets/t/versions/latest".to_string();
        let fine = group(&k, token.clone(), (0..1_000).map(member).collect()).unwrap();
        assert!(serde_json::to_vec(&fine.job.want).unwrap().len() <= MAX_JOB_BYTES);
        let Err(StepError::Config(e)) = group(&k, token, (0..3_000).map(member).collect()) else {
            panic!("a job over 1 MB was accepted")
        };
        assert!(e.contains("3000 numbers") && e.contains("1 MB"), "{e}");
    }
}
