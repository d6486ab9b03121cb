//! The contract's table of findings, row by row: what each read says as findings, with their
//! severities (`cloud-api-contract.md`, step 4). Pure; `decide.rs` puts them together.

use serde::Serialize;
use shared::graph::{GraphError, HealthEntity, PhoneNumber, SubscribedApp, TokenInfo};
use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;

use super::decide::{cut_to, Expectations};

/// Quoted texts (Meta's messages, descriptions) are cut to this many characters.
pub const MAX_QUOTE_CHARS: usize = 300;

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
    pub(super) fn alert(kind: Kind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: Severity::Alert,
            detail: detail.into(),
        }
    }
    pub(super) fn warning(kind: Kind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            severity: Severity::Warning,
            detail: detail.into(),
        }
    }
}

/// A Graph error no retry fixes, as a finding; `None`: worth a retry (already retried).
pub(super) fn error_finding(e: &GraphError, exp: &Expectations<'_>) -> Option<Finding> {
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

pub(super) fn expiry(t: &TokenInfo, exp: &Expectations<'_>) -> Option<Finding> {
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

pub(super) fn number_findings(n: &PhoneNumber, exp: &Expectations<'_>, out: &mut Vec<Finding>) {
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

pub(super) fn subscription(
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

pub(super) fn cut(s: &str) -> String {
    cut_to(s, MAX_QUOTE_CHARS)
}

fn human(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}
