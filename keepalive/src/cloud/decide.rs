//! What a Cloud API check concludes, as pure functions of what was observed. Two steps:
//! [`assess`] turns the reads into findings (the contract's table, with severities) and the
//! repairs that could put some right; [`conclude`] takes what the repairs did and gives the
//! verdict. No I/O here: every rule is in the tables of tests below.

use serde::Serialize;
use shared::graph::{GraphError, HealthEntity, PhoneNumber, SubscribedApp, TokenInfo};
use shared::payload::cloud::WebhookTarget;
use std::fmt::Write as _;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::observe::{GraphReads, Handshake, Observation};
use crate::verdict::Verdict;

/// Quoted texts (Meta's messages, descriptions) are cut to this many characters.
const MAX_QUOTE_CHARS: usize = 300;
/// The reason is cut to this many characters.
pub const MAX_REASON_CHARS: usize = 2048;

/// The kinds of finding (`cloud-api-contract.md`, step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Token,
    Permission,
    Request,
    Platform,
    Blocked,
    Status,
    Subscription,
    Webhook,
    Handshake,
    Limited,
    Quality,
    Expiry,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Permission => "permission",
            Kind::Request => "request",
            Kind::Platform => "platform",
            Kind::Blocked => "blocked",
            Kind::Status => "status",
            Kind::Subscription => "subscription",
            Kind::Webhook => "webhook",
            Kind::Handshake => "handshake",
            Kind::Limited => "limited",
            Kind::Quality => "quality",
            Kind::Expiry => "expiry",
        }
    }
}

/// How much a finding weighs; `Repaired`: it was an alert, and a repair put it right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Alert,
    Repaired,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Alert => "alert",
            Severity::Repaired => "repaired",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub detail: String,
}

impl Finding {
    fn alert(kind: Kind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: Severity::Alert,
            detail: detail.into(),
        }
    }
    fn warning(kind: Kind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: Severity::Warning,
            detail: detail.into(),
        }
    }
}

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

/// A Graph error no retry fixes, as a finding; `None`: worth a retry (already retried).
fn error_finding(e: &GraphError, exp: &Expectations<'_>) -> Option<Finding> {
    if e.is_retryable() || matches!(e, GraphError::Deadline { .. }) {
        return None;
    }
    let quoted = cut(&e.to_string());
    Some(if e.is_token_invalid() {
        Finding::alert(
            Kind::Token,
            format!("the access token is invalid or expired: {quoted}"),
        )
    } else if e.is_permission() {
        Finding::alert(
            Kind::Permission,
            format!(
                "a permission is missing: {quoted} (the system user needs \
                 whatsapp_business_management, whatsapp_business_messaging and access to \
                 WABA {})",
                exp.waba_id
            ),
        )
    } else if e.is_unknown_request() {
        Finding::alert(
            Kind::Request,
            format!("unknown id or field: {quoted} (check phoneNumberId and wabaId)"),
        )
    } else {
        Finding::alert(Kind::Request, format!("Graph refused the read: {quoted}"))
    })
}

fn expiry(t: &TokenInfo, exp: &Expectations<'_>) -> Option<Finding> {
    let at = t.expires_at?;
    let left = at - exp.now;
    if left > time::Duration::try_from(exp.token_warn).unwrap_or(time::Duration::MAX) {
        return None;
    }
    let when = at.format(&Rfc3339).unwrap_or_else(|_| at.to_string());
    let detail = if left.is_negative() {
        format!("the access token expired at {when}")
    } else {
        format!(
            "the access token expires at {when}, in {}: put a new one in the secret",
            human(left)
        )
    };
    Some(Finding::warning(Kind::Expiry, detail))
}

fn number_findings(n: &PhoneNumber, exp: &Expectations<'_>, out: &mut Vec<Finding>) {
    if !n.is_cloud_api() {
        let platform = n.platform_type.as_deref().unwrap_or("not reported");
        let why = match platform {
            "ON_PREMISE" => "an On-Premises number delivers nothing since 23 October 2025: migrate it to the Cloud API",
            "NOT_APPLICABLE" => "the number is registered on neither API: register it on the Cloud API",
            _ => "the number must be registered on the Cloud API",
        };
        out.push(Finding::alert(
            Kind::Platform,
            format!("platform_type is {platform}, not CLOUD_API: {why}"),
        ));
    }
    if let Some(h) = &n.health_status {
        for e in h.blocked() {
            out.push(Finding::alert(Kind::Blocked, blocked_detail(e)));
        }
    }
    if !n.is_connected() {
        out.push(Finding::alert(
            Kind::Status,
            format!(
                "status is {}, not CONNECTED: the number cannot send messages",
                n.status.as_deref().unwrap_or("not reported")
            ),
        ));
    }
    if let Some(hook) = exp.webhook {
        let cfg = &n.webhook_configuration;
        match cfg.effective() {
            Some(url) if hook.is(url) => {}
            found => {
                let level = if nonempty(&cfg.phone_number) {
                    "the number's override"
                } else if nonempty(&cfg.whatsapp_business_account) {
                    "the WABA's override"
                } else {
                    "the app's callback URL"
                };
                let detail = match found {
                    Some(url) => {
                        format!("webhooks go to {} ({level}), not {}", cut(url), hook.given)
                    }
                    None => format!("no callback URL is set at any level, not {}", hook.given),
                };
                out.push(Finding::alert(Kind::Webhook, detail));
            }
        }
    }
    if let Some(h) = &n.health_status {
        for e in h.limited() {
            let info = if e.additional_info.is_empty() {
                String::from("no details given")
            } else {
                cut(&e.additional_info.join("; "))
            };
            out.push(Finding::warning(
                Kind::Limited,
                format!("{} can send only with limits: {info}", entity_name(e)),
            ));
        }
    }
    if let Some(q @ ("YELLOW" | "RED")) = n.quality_rating.as_deref() {
        out.push(Finding::warning(
            Kind::Quality,
            format!("quality rating is {q}"),
        ));
    }
}

fn nonempty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn entity_name(e: &HealthEntity) -> String {
    match (&e.entity_type, &e.id) {
        (Some(t), Some(id)) => format!("{t} {id}"),
        (Some(t), None) => t.clone(),
        (None, Some(id)) => format!("entity {id}"),
        (None, None) => "an entity".into(),
    }
}

fn blocked_detail(e: &HealthEntity) -> String {
    let mut d = format!("{} cannot send messages (BLOCKED)", entity_name(e));
    for (i, err) in e.errors.iter().enumerate() {
        d.push_str(if i == 0 { ": " } else { "; " });
        if let Some(c) = err.error_code {
            let _ = write!(d, "{c} ");
        }
        d.push_str(&cut(err
            .error_description
            .as_deref()
            .unwrap_or("no description")));
        if let Some(s) = err.possible_solution.as_deref().filter(|s| !s.is_empty()) {
            let _ = write!(d, " (possible solution: {})", cut(s));
        }
    }
    d
}

fn subscription(
    apps: &[SubscribedApp],
    wanted: Option<&str>,
    exp: &Expectations<'_>,
) -> Option<Finding> {
    let listed = if apps.is_empty() {
        "none".to_string()
    } else {
        apps.iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing = match wanted {
        Some(app) => !apps.iter().any(|a| a.id == app),
        // The token's app is unknown: only a WABA with no app at all is surely wrong.
        None => apps.is_empty(),
    };
    missing.then(|| {
        let who = wanted.map_or("no app".to_string(), |a| format!("app {a}"));
        let who = if wanted.is_some() {
            format!("{who} is not")
        } else {
            format!("{who} is")
        };
        Finding::alert(
            Kind::Subscription,
            format!(
                "{who} subscribed to WABA {} (subscribed: {listed}): the number's webhooks \
                 reach no bot",
                exp.waba_id
            ),
        )
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

fn cut(s: &str) -> String {
    cut_to(s, MAX_QUOTE_CHARS)
}

/// At most `max` characters, the last of them `…` when cut.
fn cut_to(s: &str, max: usize) -> String {
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

fn human(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
