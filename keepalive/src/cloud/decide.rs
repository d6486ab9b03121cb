//! What a Cloud API check concludes, as pure functions of what was observed. Two steps:
//! [`assess`] turns the reads into findings (the contract's table, with severities) and the
//! repairs that could put some right; [`conclude`] takes what the repairs did and gives the
//! verdict. No I/O here: every rule is in the tables of tests below (the findings themselves,
//! row by row, are `findings.rs`).

use serde::Serialize;
use shared::graph::GraphError;
use shared::payload::cloud::WebhookTarget;
use std::fmt::Write as _;
use std::time::Duration;
use time::OffsetDateTime;

use super::findings::{cut, error_finding, expiry, number_findings, subscription};
pub use super::findings::{Finding, Kind, Severity};
use super::observe::{GraphReads, Handshake, Observation};
use crate::verdict::Verdict;
/// The reason is cut to this many characters.
pub const MAX_REASON_CHARS: usize = 2048;

/// A change the keepalive may make (only with `"repair": true`, never under `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// `POST {wabaId}/subscribed_apps`: subscribes the token's app. `app`: the id to find on
    /// reading back (unknown when neither `appId` nor `debug_token` gave it).
    Subscribe { app: Option<String> },
    /// `POST {phoneNumberId}` with `webhook_configuration`: the number's override.
    WebhookOverride,
}

impl Repair {
    pub fn kind(&self) -> Kind {
        match self {
            Repair::Subscribe { .. } => Kind::Subscription,
            Repair::WebhookOverride => Kind::Webhook,
        }
    }
}

/// What became of one repair (`act.rs` reports it; it never sets a verdict).
#[derive(Debug, Clone)]
pub enum RepairResult {
    /// Made, and the read-back shows it.
    Done,
    /// Made, but the read-back shows otherwise (what it shows).
    NotTaken(String),
    /// Graph refused it, or it could not be confirmed.
    Failed(GraphError),
    /// Not tried (why): a repair before it failed.
    NotAttempted(String),
}

/// What the check expects of the number, from the payload and the settings.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub phone_number_id: &'a str,
    pub waba_id: &'a str,
    pub app_id: Option<&'a str>,
    pub webhook: Option<&'a WebhookTarget>,
    /// The verify token could be read (the webhook override needs it).
    pub has_verify_token: bool,
    /// `"repair": true` in the payload.
    pub repair: bool,
    pub now: OffsetDateTime,
    /// `KEEPALIVE_TOKEN_WARN_S`.
    pub token_warn: Duration,
}

/// The first step's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// A read still failed with an error a retry may fix (503, `check` exit 2).
    Incomplete(String),
    Judged(Judged),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Every finding, in the order found.
    pub findings: Vec<Finding>,
    /// Repairs that would put right some of them, in the order to make them.
    pub repairs: Vec<Repair>,
    /// One line on the number when all is well.
    pub summary: String,
}

/// Step one: the findings and the possible repairs.
pub fn assess(obs: &Observation, exp: &Expectations<'_>) -> Assessment {
    match obs {
        Observation::NoAccessToken(e) => {
            if e.is_retryable()
                || e.status() == Some(401)
                || matches!(e, shared::google::GoogleError::Deadline { .. })
            {
                Assessment::Incomplete(format!("cannot read accessTokenSecret: {e}"))
            } else {
                Assessment::Judged(Judged {
                    findings: vec![Finding::alert(
                        Kind::Token,
                        format!("cannot read accessTokenSecret: {}", cut(&e.to_string())),
                    )],
                    repairs: vec![],
                    summary: String::new(),
                })
            }
        }
        Observation::Read(reads) => assess_reads(reads, exp),
    }
}

fn assess_reads(r: &GraphReads, exp: &Expectations<'_>) -> Assessment {
    let mut findings = Vec::new();
    let mut retry: Vec<String> = Vec::new();
    let mut refused = |e: &GraphError, findings: &mut Vec<Finding>| {
        if let Some(f) = error_finding(e, exp) {
            if !(f.kind == Kind::Token && findings.iter().any(|g: &Finding| g.kind == Kind::Token))
            {
                findings.push(f);
            }
        } else {
            retry.push(e.to_string());
        }
    };
    if let Err(e) = &r.number {
        refused(e, &mut findings);
    }
    if let Err(e) = &r.apps {
        refused(e, &mut findings);
    }
    // debug_token only gives the expiry and the app: only a dead token counts.
    if let Err(e) = &r.token {
        if e.is_token_invalid() {
            refused(e, &mut findings);
        }
    }
    if let Handshake::NoVerifyToken {
        retryable: true,
        error,
    } = &r.handshake
    {
        retry.push(format!("cannot read webhookVerifyTokenSecret: {error}"));
    }
    let blocking = findings
        .iter()
        .any(|f| matches!(f.kind, Kind::Token | Kind::Permission | Kind::Request));
    if !retry.is_empty() && !blocking {
        return Assessment::Incomplete(format!(
            "still failing after retries: {}",
            retry.join("; ")
        ));
    }
    let token = r.token.as_ref().ok();
    if let Some(t) = token {
        if !t.is_valid && !findings.iter().any(|f| f.kind == Kind::Token) {
            findings.push(Finding::alert(
                Kind::Token,
                "debug_token says the access token is not valid",
            ));
        }
        if let Some(f) = expiry(t, exp) {
            findings.push(f);
        }
    }
    let mut summary = Vec::new();
    if let Ok(n) = &r.number {
        number_findings(n, exp, &mut findings);
        summary.push(format!(
            "{} is {} on {}, quality {}",
            n.display_phone_number
                .as_deref()
                .unwrap_or(exp.phone_number_id),
            n.status.as_deref().unwrap_or("?"),
            n.platform_type.as_deref().unwrap_or("?"),
            n.quality_rating.as_deref().unwrap_or("?"),
        ));
    }
    let token_app = token.and_then(|t| t.app_id.as_deref());
    let wanted_app = exp.app_id.or(token_app);
    let mut subscription_ok = true;
    if let Ok(apps) = &r.apps {
        if let Some(f) = subscription(apps, wanted_app, exp) {
            subscription_ok = false;
            findings.push(f);
        } else {
            summary.push(match wanted_app {
                Some(app) => format!("app {app} subscribed to WABA {}", exp.waba_id),
                None => format!("WABA {} has a subscribed app", exp.waba_id),
            });
        }
    }
    match &r.handshake {
        Handshake::Failed(f) => findings.push(Finding::alert(
            Kind::Handshake,
            format!(
                "{} {f}: Meta cannot verify the bot's endpoint",
                exp.webhook.map(|w| w.url.as_str()).unwrap_or("the webhook")
            ),
        )),
        Handshake::NoVerifyToken {
            retryable: false,
            error,
        } => findings.push(Finding::alert(
            Kind::Handshake,
            format!(
                "not performed: cannot read webhookVerifyTokenSecret: {}",
                cut(error)
            ),
        )),
        Handshake::Passed => summary.push("handshake passed".into()),
        _ => {}
    }
    let repairs = plan(&mut findings, r, exp, token_app, subscription_ok);
    Assessment::Judged(Judged {
        findings,
        repairs,
        summary: summary.join("; "),
    })
}

/// Which findings a repair could put right, and why not for the others (said in their
/// detail, only when repairs were asked for).
fn plan(
    findings: &mut [Finding],
    r: &GraphReads,
    exp: &Expectations<'_>,
    token_app: Option<&str>,
    subscription_ok: bool,
) -> Vec<Repair> {
    let mut repairs = Vec::new();
    let mut subscribe_planned = false;
    let mut why_not = Vec::new();
    if let Some(f) = findings.iter().position(|f| f.kind == Kind::Subscription) {
        // The POST subscribes the token's own app: never another than the one asked for.
        match (exp.app_id, token_app) {
            (Some(want), Some(own)) if want != own => why_not.push((
                f,
                format!("not put back: appId {want} is not the token's app {own}, which a subscription would add"),
            )),
            (Some(_), None) => why_not.push((
                f,
                "not put back: the token's app is unknown (debug_token failed), so a subscription might add another app than appId".to_string(),
            )),
            _ => {
                subscribe_planned = true;
                repairs.push(Repair::Subscribe {
                    app: exp.app_id.or(token_app).map(str::to_string),
                });
            }
        }
    }
    if let Some(f) = findings.iter().position(|f| f.kind == Kind::Webhook) {
        let why = if !exp.has_verify_token {
            Some("not put back: it needs the verify token (webhookVerifyTokenSecret)")
        } else if r.handshake != Handshake::Passed {
            Some("not put back: the endpoint fails the handshake, so Meta would refuse it")
        } else if !subscription_ok && !subscribe_planned {
            Some("not put back: the app's subscription, which Meta requires first, cannot be put back")
        } else {
            None
        };
        match why {
            Some(w) => why_not.push((f, w.to_string())),
            None => repairs.push(Repair::WebhookOverride),
        }
    }
    if exp.repair {
        for (i, w) in why_not {
            findings[i].detail = format!("{}; {w}", findings[i].detail);
        }
    }
    repairs
}

/// The second step's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// A repair failed with an error a retry may fix (503, `check` exit 2).
    Incomplete(String),
    Done(Concluded),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concluded {
    pub verdict: Verdict,
    pub reason: String,
    /// Most severe first.
    pub findings: Vec<Finding>,
    pub repairs: Vec<RepairReport>,
}

/// One repair as the outcome shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    pub kind: Kind,
    /// The call, e.g. `POST 9999/subscribed_apps`.
    pub action: String,
    /// `done`, `not taken`, `failed`, `not attempted` or `dry run`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How the repairs went: made (with each result, in plan order), or not made and why.
#[derive(Debug, Clone)]
pub enum Repairs {
    /// `repair` was not asked for.
    NotAsked,
    /// `--dry-run`: the verdict is what it would be without repairs.
    DryRun,
    Made(Vec<RepairResult>),
}

/// Step two: the verdict, given what the repairs did.
pub fn conclude(judged: Judged, repairs: Repairs, exp: &Expectations<'_>) -> Conclusion {
    let Judged {
        mut findings,
        repairs: planned,
        summary,
    } = judged;
    let mut reports = Vec::new();
    let results: Vec<Option<RepairResult>> = match &repairs {
        Repairs::Made(r) => planned
            .iter()
            .enumerate()
            .map(|(i, _)| r.get(i).cloned())
            .collect(),
        _ => vec![None; planned.len()],
    };
    for (repair, result) in planned.iter().zip(results) {
        let action = match repair {
            Repair::Subscribe { .. } => format!("POST {}/subscribed_apps", exp.waba_id),
            Repair::WebhookOverride => {
                format!("POST {} webhook_configuration", exp.phone_number_id)
            }
        };
        let finding = findings.iter_mut().find(|f| f.kind == repair.kind());
        let (result, detail) = match (&repairs, result) {
            (Repairs::NotAsked, _) => continue,
            (Repairs::DryRun, _) => {
                if let Some(f) = finding {
                    f.detail.push_str("; dry run: would be put back");
                }
                ("dry run", None)
            }
            (Repairs::Made(_), Some(RepairResult::Done)) => {
                if let Some(f) = finding {
                    f.severity = Severity::Repaired;
                    f.detail.push_str("; put back and read back");
                }
                ("done", None)
            }
            (Repairs::Made(_), Some(RepairResult::Failed(e)))
                if e.is_retryable() || matches!(e, GraphError::Deadline { .. }) =>
            {
                return Conclusion::Incomplete(format!("{action} failed: {e}"));
            }
            (Repairs::Made(_), Some(r)) => {
                let (word, text) = match r {
                    RepairResult::NotTaken(s) => {
                        ("not taken", format!("the repair did not take: {}", cut(&s)))
                    }
                    RepairResult::Failed(e) => (
                        "failed",
                        format!("the repair failed: {}", cut(&e.to_string())),
                    ),
                    RepairResult::NotAttempted(s) => {
                        ("not attempted", format!("not put back: {}", cut(&s)))
                    }
                    RepairResult::Done => unreachable!("handled above"),
                };
                if let Some(f) = finding {
                    let _ = write!(f.detail, "; {text}");
                }
                (word, Some(text))
            }
            (Repairs::Made(_), None) => ("not attempted", Some("no result".to_string())),
        };
        reports.push(RepairReport {
            kind: repair.kind(),
            action,
            result,
            detail,
        });
    }
    findings.sort_by_key(|f| f.severity);
    let verdict = if findings.iter().any(|f| f.severity == Severity::Alert) {
        Verdict::Alert
    } else if findings.iter().any(|f| f.severity == Severity::Repaired) {
        Verdict::Repaired
    } else if findings.iter().any(|f| f.severity == Severity::Warning) {
        Verdict::Warning
    } else {
        Verdict::Healthy
    };
    let reason = if findings.is_empty() {
        if summary.is_empty() {
            "healthy".to_string()
        } else {
            summary
        }
    } else {
        findings
            .iter()
            .map(|f| format!("{}: {}", f.kind.as_str(), f.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Conclusion::Done(Concluded {
        verdict,
        reason: cut_to(&one_line(&reason), MAX_REASON_CHARS),
        findings,
        repairs: reports,
    })
}

/// At most `max` characters, the last of them `…` when cut.
pub(super) fn cut_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
#[path = "decide_tests/mod.rs"]
mod tests;
