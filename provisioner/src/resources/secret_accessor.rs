//! `roles/secretmanager.secretAccessor` for the keepalive's service account on one secret:
//! the secrets a number's job names, and no other (never a project-wide grant).

use serde_json::Value;

use super::iam_policy::with_member;
use crate::report::Action;
use crate::{Provisioner, StepError};

const ROLE: &str = "roles/secretmanager.secretAccessor";
const KIND: &str = "secret grant";

/// `projects/P/secrets/S` of a version name `projects/P/secrets/S/versions/V`.
pub fn secret_of(version: &str) -> &str {
    version
        .split_once("/versions/")
        .map_or(version, |(secret, _)| secret)
}

/// `(P, S)` of `projects/P/secrets/S[/versions/V]`.
fn project_and_secret(version: &str) -> Option<(&str, &str)> {
    match secret_of(version).split('/').collect::<Vec<_>>()[..] {
        ["projects", p, "secrets", s] => Some((p, s)),
        _ => None,
    }
}

/// Grants `member` read access to the secret of `version`: read, added when missing, read
/// back. A secret that does not exist yet is a step that comes first (named in `missing`).
pub async fn ensure(
    prov: &Provisioner,
    version: &str,
    member: &str,
    missing: &str,
) -> Result<(), StepError> {
    let secret = secret_of(version);
    let resource = format!("IAM policy of {secret}");
    let (project, id) = project_and_secret(version)
        .ok_or_else(|| StepError::failed(&resource, "is not a projects/P/secrets/S name"))?;
    let deadline = Some(prov.call_deadline());
    let sm = &prov.google.secrets;
    let policy: Value = match sm.get_iam_policy(project, id, deadline).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() && prov.dry_run => {
            prov.report
                .add(KIND, secret, Action::Blocked(missing.into()), None);
            return Ok(());
        }
        Err(e) if e.is_not_found() => {
            return Err(StepError::failed(resource, format!("{e}\n  {missing}")))
        }
        Err(e) => return Err(prov.google_failed(resource)(e)),
    };
    let what = format!("{ROLE} for {member}");
    let Some(new) = with_member(&policy, ROLE, member) else {
        prov.report.add(KIND, secret, Action::Exists, Some(what));
        return Ok(());
    };
    if prov.dry_run {
        prov.report
            .add(KIND, secret, Action::WouldUpdate(what), None);
        return Ok(());
    }
    sm.set_iam_policy(project, id, &new, deadline)
        .await
        .map_err(prov.google_failed(&resource))?;
    let now = sm
        .get_iam_policy(project, id, deadline)
        .await
        .map_err(prov.google_failed(&resource))?;
    if with_member(&now, ROLE, member).is_some() {
        return Err(StepError::failed(
            resource,
            "the grant was answered but does not read back; run the command again",
        ));
    }
    prov.report.add(
        KIND,
        secret,
        Action::Updated(format!("{what} granted")),
        None,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_of_a_version() {
        assert_eq!(
            secret_of("projects/p/secrets/meta-token/versions/latest"),
            "projects/p/secrets/meta-token"
        );
        assert_eq!(secret_of("projects/p/secrets/s"), "projects/p/secrets/s");
        assert_eq!(
            project_and_secret("projects/p/secrets/s/versions/3"),
            Some(("p", "s"))
        );
        assert_eq!(project_and_secret("s"), None);
    }
}
