//! The tables of cases of `decide.rs`: every finding of the contract with its severity, the
//! repairs each allows, and the verdict after them.

use super::*;
use serde_json::{json, Value};
use shared::google::GoogleError;
use shared::graph::SubscribedApp;
use shared::webhook::HandshakeFailure;
use time::macros::datetime;
use url::Url;

const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);
const APP: &str = "6349";
const BOT: &str = "https://bot.example.com/hook";

fn bot() -> &'static WebhookTarget {
    Box::leak(Box::new(WebhookTarget {
        given: BOT.into(),
        url: Url::parse(BOT).unwrap(),
    }))
}

fn exp() -> Expectations<'static> {
    Expectations {
        phone_number_id: "1111",
        waba_id: "9999",
        app_id: None,
        webhook: Some(bot()),
        has_verify_token: true,
        repair: true,
        now: NOW,
        token_warn: Duration::from_secs(7 * 86_400),
    }
}

fn number_json() -> Value {
    json!({
        "id": "1111", "display_phone_number": "+49 151 1234", "status": "CONNECTED",
        "quality_rating": "GREEN", "platform_type": "CLOUD_API",
        "webhook_configuration": {"application": BOT},
        "health_status": {"can_send_message": "AVAILABLE", "entities": [
            {"entity_type": "PHONE_NUMBER", "id": "1111", "can_send_message": "AVAILABLE"},
            {"entity_type": "WABA", "id": "9999", "can_send_message": "AVAILABLE"},
            {"entity_type": "APP", "id": APP, "can_send_message": "AVAILABLE"}
        ]}
    })
}

fn apps(ids: &[&str]) -> Vec<SubscribedApp> {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"whatsapp_business_api_data": {"id": id, "name": "Bot"}}))
        .collect();
    SubscribedApp::parse_list(&json!({ "data": data })).unwrap()
}

fn healthy() -> GraphReads {
    GraphReads {
        number: Ok(serde_json::from_value(number_json()).unwrap()),
        apps: Ok(apps(&[APP])),
        token: Ok(serde_json::from_value(
            json!({"app_id": APP, "is_valid": true, "expires_at": 0, "type": "SYSTEM_USER"}),
        )
        .unwrap()),
        handshake: Handshake::Passed,
    }
}

fn graph_error(status: u16, code: i64) -> GraphError {
    GraphError::from_response(
        "GET 1111",
        status,
        json!({"error": {"message": format!("(#{code}) message from Meta"), "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}})
            .to_string()
            .as_bytes(),
    )
}

fn edit_number(r: &mut GraphReads, f: impl FnOnce(&mut Value)) {
    let mut v = number_json();
    f(&mut v);
    r.number = Ok(serde_json::from_value(v).unwrap());
}

fn set_entity(r: &mut GraphReads, i: usize, entity: Value) {
    edit_number(r, |v| v["health_status"]["entities"][i] = entity);
}

type Edit = Box<dyn Fn(&mut GraphReads, &mut Expectations<'static>)>;
/// (case, edit of a healthy number, findings as (kind, severity), repairs possible).
type Case = (&'static str, Edit, Vec<(Kind, Severity)>, Vec<Kind>);

fn judged(obs: &Observation, e: &Expectations<'_>) -> Judged {
    match assess(obs, e) {
        Assessment::Judged(j) => j,
        Assessment::Incomplete(why) => panic!("incomplete: {why}"),
    }
}

/// Every finding of the table: (case, edit, findings as (kind, severity), repairs possible).
#[test]
fn findings_table() {
    use Kind::{
        Blocked, Expiry, Limited, Permission, Platform, Quality, Request, Status, Subscription,
        Token, Webhook,
    };
    use Severity::{Alert as A, Warning as W};
    let cases: Vec<Case> = vec![
        ("healthy", Box::new(|_, _| {}), vec![], vec![]),
        (
            "token invalid (190) on every read: one finding",
            Box::new(|r, _| {
                r.number = Err(graph_error(401, 190));
                r.apps = Err(graph_error(401, 190));
                r.token = Err(graph_error(401, 190));
            }),
            vec![(Token, A)],
            vec![],
        ),
        (
            "debug_token says invalid",
            Box::new(|r, _| {
                r.token =
                    Ok(serde_json::from_value(json!({"app_id": APP, "is_valid": false})).unwrap())
            }),
            vec![(Token, A)],
            vec![],
        ),
        (
            "permission (10) on the number",
            Box::new(|r, _| r.number = Err(graph_error(403, 10))),
            vec![(Permission, A)],
            vec![],
        ),
        (
            "permission (200) on the WABA",
            Box::new(|r, _| r.apps = Err(graph_error(403, 200))),
            vec![(Permission, A)],
            vec![],
        ),
        (
            "permission (299) on both",
            Box::new(|r, _| {
                r.number = Err(graph_error(403, 299));
                r.apps = Err(graph_error(403, 299));
            }),
            vec![(Permission, A), (Permission, A)],
            vec![],
        ),
        (
            "unknown id (100)",
            Box::new(|r, _| r.number = Err(graph_error(400, 100))),
            vec![(Request, A)],
            vec![],
        ),
        (
            "debug_token failing otherwise: expiry unknown, nothing else",
            Box::new(|r, _| r.token = Err(graph_error(403, 10))),
            vec![],
            vec![],
        ),
        (
            "debug_token throttled: expiry unknown, not incomplete",
            Box::new(|r, _| r.token = Err(graph_error(400, 4))),
            vec![],
            vec![],
        ),
        (
            "On-Premises number",
            Box::new(|r, _| edit_number(r, |v| v["platform_type"] = json!("ON_PREMISE"))),
            vec![(Platform, A)],
            vec![],
        ),
        (
            "registered on neither",
            Box::new(|r, _| edit_number(r, |v| v["platform_type"] = json!("NOT_APPLICABLE"))),
            vec![(Platform, A)],
            vec![],
        ),
        (
            "WABA blocked",
            Box::new(|r, _| {
                set_entity(
                    r,
                    1,
                    json!({"entity_type": "WABA", "id": "9999", "can_send_message": "BLOCKED",
                      "errors": [{"error_code": 141000, "error_description": "Account restricted", "possible_solution": "Appeal"}]}),
                )
            }),
            vec![(Blocked, A)],
            vec![],
        ),
        (
            "two entities blocked: one finding each",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["health_status"]["entities"][0]["can_send_message"] = json!("BLOCKED");
                    v["health_status"]["entities"][2]["can_send_message"] = json!("BLOCKED");
                })
            }),
            vec![(Blocked, A), (Blocked, A)],
            vec![],
        ),
        (
            "overall BLOCKED for calling only: no finding",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["health_status"]["can_send_message"] = json!("BLOCKED");
                    v["health_status"]["entities"][0]["can_receive_call_sip"] = json!("BLOCKED");
                    v["health_status"]["entities"][0]["errors"] =
                        json!([{"error_code": 138024, "error_description": "SIP not set up"}]);
                })
            }),
            vec![],
            vec![],
        ),
        (
            "flagged",
            Box::new(|r, _| edit_number(r, |v| v["status"] = json!("FLAGGED"))),
            vec![(Status, A)],
            vec![],
        ),
        (
            "restricted, quality red",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["status"] = json!("RESTRICTED");
                    v["quality_rating"] = json!("RED");
                })
            }),
            vec![(Status, A), (Quality, W)],
            vec![],
        ),
        (
            "app not subscribed",
            Box::new(|r, _| r.apps = Ok(apps(&["77"]))),
            vec![(Subscription, A)],
            vec![Subscription],
        ),
        (
            "appId given, subscribed",
            Box::new(|r, e| {
                e.app_id = Some("77");
                r.apps = Ok(apps(&[APP, "77"]));
            }),
            vec![],
            vec![],
        ),
        (
            "appId not the token's app: not repairable",
            Box::new(|r, e| {
                e.app_id = Some("77");
                r.apps = Ok(apps(&[APP]));
            }),
            vec![(Subscription, A)],
            vec![],
        ),
        (
            "token's app unknown, appId missing from the WABA: not repairable",
            Box::new(|r, e| {
                e.app_id = Some("77");
                r.apps = Ok(apps(&[APP]));
                r.token = Err(graph_error(500, 2));
            }),
            vec![(Subscription, A)],
            vec![],
        ),
        (
            "token's app unknown, no app subscribed: repairable",
            Box::new(|r, _| {
                r.apps = Ok(apps(&[]));
                r.token = Err(graph_error(500, 2));
            }),
            vec![(Subscription, A)],
            vec![Subscription],
        ),
        (
            "token's app unknown, some app subscribed: nothing to say",
            Box::new(|r, _| {
                r.apps = Ok(apps(&["77"]));
                r.token = Err(graph_error(500, 2));
            }),
            vec![],
            vec![],
        ),
        (
            "number's override elsewhere",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["webhook_configuration"]["phone_number"] = json!("https://old.example.com/")
                })
            }),
            vec![(Webhook, A)],
            vec![Webhook],
        ),
        (
            "WABA's override elsewhere",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["webhook_configuration"]["whatsapp_business_account"] =
                        json!("https://old.example.com/")
                })
            }),
            vec![(Webhook, A)],
            vec![Webhook],
        ),
        (
            "no callback at all",
            Box::new(|r, _| edit_number(r, |v| v["webhook_configuration"] = json!({}))),
            vec![(Webhook, A)],
            vec![Webhook],
        ),
        (
            "the same URL written differently",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["webhook_configuration"]["phone_number"] =
                        json!("HTTPS://BOT.example.com:443/hook")
                })
            }),
            vec![],
            vec![],
        ),
        (
            "no webhookUrl: the callback is not judged",
            Box::new(|r, e| {
                e.webhook = None;
                r.handshake = Handshake::NotAsked;
                edit_number(r, |v| v["webhook_configuration"] = json!({}));
            }),
            vec![],
            vec![],
        ),
        (
            "webhook wrong without a verify token: not repairable",
            Box::new(|r, e| {
                e.has_verify_token = false;
                r.handshake = Handshake::NotAsked;
                edit_number(r, |v| v["webhook_configuration"] = json!({}));
            }),
            vec![(Webhook, A)],
            vec![],
        ),
        (
            "webhook wrong and the handshake failing: not repairable",
            Box::new(|r, _| {
                r.handshake = Handshake::Failed(HandshakeFailure::Status {
                    status: 403,
                    excerpt: "Forbidden".into(),
                });
                edit_number(r, |v| v["webhook_configuration"] = json!({}));
            }),
            vec![(Webhook, A), (Kind::Handshake, A)],
            vec![],
        ),
        (
            "subscription and webhook both: subscription first",
            Box::new(|r, _| {
                r.apps = Ok(apps(&[]));
                edit_number(r, |v| v["webhook_configuration"] = json!({}));
            }),
            vec![(Webhook, A), (Subscription, A)],
            vec![Subscription, Webhook],
        ),
        (
            "webhook wrong, subscription not repairable: override not tried",
            Box::new(|r, e| {
                e.app_id = Some("77");
                r.apps = Ok(apps(&[APP]));
                edit_number(r, |v| v["webhook_configuration"] = json!({}));
            }),
            vec![(Webhook, A), (Subscription, A)],
            vec![],
        ),
        (
            "handshake timed out",
            Box::new(|r, _| {
                r.handshake = Handshake::Failed(HandshakeFailure::Timeout {
                    after: Duration::from_millis(400),
                })
            }),
            vec![(Kind::Handshake, A)],
            vec![],
        ),
        (
            "handshake answered the wrong body",
            Box::new(|r, _| {
                r.handshake = Handshake::Failed(HandshakeFailure::WrongBody {
                    excerpt: "hello".into(),
                })
            }),
            vec![(Kind::Handshake, A)],
            vec![],
        ),
        (
            "verify token secret missing",
            Box::new(|r, e| {
                e.has_verify_token = false;
                r.handshake = Handshake::NoVerifyToken {
                    error: "Secret Manager answered 404".into(),
                    retryable: false,
                };
            }),
            vec![(Kind::Handshake, A)],
            vec![],
        ),
        (
            "limited number",
            Box::new(|r, _| {
                set_entity(
                    r,
                    0,
                    json!({"entity_type": "PHONE_NUMBER", "id": "1111", "can_send_message": "LIMITED", "additional_info": ["Messaging limit lowered"]}),
                )
            }),
            vec![(Limited, W)],
            vec![],
        ),
        (
            "quality yellow",
            Box::new(|r, _| edit_number(r, |v| v["quality_rating"] = json!("YELLOW"))),
            vec![(Quality, W)],
            vec![],
        ),
        (
            "quality unknown: no finding",
            Box::new(|r, _| edit_number(r, |v| v["quality_rating"] = json!("UNKNOWN"))),
            vec![],
            vec![],
        ),
        (
            "token expires in 3 days",
            Box::new(|r, _| {
                r.token = Ok(
                    serde_json::from_value(json!({"app_id": APP, "is_valid": true,
                    "expires_at": (NOW + time::Duration::days(3)).unix_timestamp()}))
                    .unwrap(),
                )
            }),
            vec![(Expiry, W)],
            vec![],
        ),
        (
            "token expires in 30 days: no finding",
            Box::new(|r, _| {
                r.token = Ok(
                    serde_json::from_value(json!({"app_id": APP, "is_valid": true,
                    "expires_at": (NOW + time::Duration::days(30)).unix_timestamp()}))
                    .unwrap(),
                )
            }),
            vec![],
            vec![],
        ),
        (
            "everything at once: alerts before warnings in the conclusion",
            Box::new(|r, _| {
                edit_number(r, |v| {
                    v["status"] = json!("FLAGGED");
                    v["quality_rating"] = json!("YELLOW");
                    v["platform_type"] = json!("ON_PREMISE");
                })
            }),
            vec![(Platform, A), (Status, A), (Quality, W)],
            vec![],
        ),
    ];
    for (name, edit, want, want_repairs) in cases {
        let mut reads = healthy();
        let mut e = exp();
        edit(&mut reads, &mut e);
        let j = judged(&Observation::Read(Box::new(reads)), &e);
        let got: Vec<(Kind, Severity)> = j.findings.iter().map(|f| (f.kind, f.severity)).collect();
        let mut got_sorted = got.clone();
        let mut want_sorted = want.clone();
        got_sorted.sort_by_key(|(k, s)| (k.as_str(), *s));
        want_sorted.sort_by_key(|(k, s)| (k.as_str(), *s));
        assert_eq!(got_sorted, want_sorted, "{name}: {:#?}", j.findings);
        let repairs: Vec<Kind> = j.repairs.iter().map(Repair::kind).collect();
        assert_eq!(repairs, want_repairs, "{name}");
        for f in &j.findings {
            assert!(!f.detail.is_empty(), "{name}");
        }
        // Without repairs, the verdict follows the worst severity.
        let c = match conclude(j.clone(), Repairs::NotAsked, &e) {
            Conclusion::Done(c) => c,
            Conclusion::Incomplete(w) => panic!("{name}: {w}"),
        };
        let want_verdict = if want.iter().any(|(_, s)| *s == Severity::Alert) {
            Verdict::Alert
        } else if want.is_empty() {
            Verdict::Healthy
        } else {
            Verdict::Warning
        };
        assert_eq!(c.verdict, want_verdict, "{name}: {}", c.reason);
        assert!(c.repairs.is_empty(), "{name}");
        assert!(
            c.findings
                .windows(2)
                .all(|w| w[0].severity <= w[1].severity),
            "{name}: most severe first"
        );
    }
}

#[test]
fn what_needs_a_retry_is_incomplete() {
    let cases: Vec<(&str, Edit, bool)> = vec![
        (
            "number throttled (4)",
            Box::new(|r, _| r.number = Err(graph_error(400, 4))),
            true,
        ),
        (
            "WABA throttled (80007)",
            Box::new(|r, _| r.apps = Err(graph_error(400, 80007))),
            true,
        ),
        (
            "number 5xx",
            Box::new(|r, _| {
                r.number = Err(GraphError::from_response("GET 1111", 502, b"bad gateway"))
            }),
            true,
        ),
        (
            "number timed out",
            Box::new(|r, _| {
                r.number = Err(GraphError::Timeout {
                    what: "GET 1111".into(),
                    timeout: Duration::from_millis(400),
                })
            }),
            true,
        ),
        (
            "throttled, but the token is dead: alert",
            Box::new(|r, _| {
                r.number = Err(graph_error(400, 4));
                r.apps = Err(graph_error(401, 190));
            }),
            false,
        ),
        (
            "verify token secret unavailable",
            Box::new(|r, _| {
                r.handshake = Handshake::NoVerifyToken {
                    error: "503".into(),
                    retryable: true,
                }
            }),
            true,
        ),
        (
            "debug_token throttled",
            Box::new(|r, _| r.token = Err(graph_error(400, 613))),
            false,
        ),
    ];
    for (name, edit, incomplete) in cases {
        let mut reads = healthy();
        let mut e = exp();
        edit(&mut reads, &mut e);
        let a = assess(&Observation::Read(Box::new(reads)), &e);
        assert_eq!(
            matches!(a, Assessment::Incomplete(_)),
            incomplete,
            "{name}: {a:?}"
        );
    }
}

#[test]
fn an_unreadable_token_secret() {
    let e = exp();
    let gone = GoogleError::Api {
        api: "Secret Manager",
        status: 404,
        reason: Some("NOT_FOUND".into()),
        message: "Secret [projects/p/secrets/t] not found".into(),
    };
    let j = judged(&Observation::NoAccessToken(gone), &e);
    assert_eq!(j.findings[0].kind, Kind::Token);
    assert!(j.findings[0].detail.contains("accessTokenSecret"));
    let busy = GoogleError::Api {
        api: "Secret Manager",
        status: 503,
        reason: None,
        message: "unavailable".into(),
    };
    assert!(matches!(
        assess(&Observation::NoAccessToken(busy), &e),
        Assessment::Incomplete(_)
    ));
}

fn both_broken() -> (Judged, Expectations<'static>) {
    let mut r = healthy();
    r.apps = Ok(apps(&[]));
    edit_number(&mut r, |v| v["webhook_configuration"] = json!({}));
    let e = exp();
    (judged(&Observation::Read(Box::new(r)), &e), e)
}

fn done(c: Conclusion) -> Concluded {
    match c {
        Conclusion::Done(c) => c,
        Conclusion::Incomplete(w) => panic!("incomplete: {w}"),
    }
}

/// What the repairs did → the verdict.
#[test]
fn repairs_table() {
    let refused = || RepairResult::Failed(graph_error(400, 100));
    let cases: Vec<(&str, Repairs, Verdict, Vec<&str>)> = vec![
        ("not asked", Repairs::NotAsked, Verdict::Alert, vec![]),
        (
            "dry run",
            Repairs::DryRun,
            Verdict::Alert,
            vec!["dry run", "dry run"],
        ),
        (
            "both done",
            Repairs::Made(vec![RepairResult::Done, RepairResult::Done]),
            Verdict::Repaired,
            vec!["done", "done"],
        ),
        (
            "the override did not take",
            Repairs::Made(vec![
                RepairResult::Done,
                RepairResult::NotTaken("webhooks go to https://old".into()),
            ]),
            Verdict::Alert,
            vec!["done", "not taken"],
        ),
        (
            "the subscription refused, the override not attempted",
            Repairs::Made(vec![
                refused(),
                RepairResult::NotAttempted("the subscription was not put back".into()),
            ]),
            Verdict::Alert,
            vec!["failed", "not attempted"],
        ),
    ];
    for (name, repairs, verdict, results) in cases {
        let (j, e) = both_broken();
        let c = done(conclude(j, repairs, &e));
        assert_eq!(c.verdict, verdict, "{name}: {}", c.reason);
        let got: Vec<&str> = c.repairs.iter().map(|r| r.result).collect();
        assert_eq!(got, results, "{name}");
    }
}

#[test]
fn a_repair_still_failing_after_retries_is_incomplete() {
    let (j, e) = both_broken();
    let c = conclude(
        j,
        Repairs::Made(vec![RepairResult::Failed(graph_error(400, 4))]),
        &e,
    );
    assert!(matches!(c, Conclusion::Incomplete(_)), "{c:?}");
}

#[test]
fn repaired_with_a_warning_left_is_repaired() {
    let mut r = healthy();
    r.apps = Ok(apps(&[]));
    edit_number(&mut r, |v| v["quality_rating"] = json!("YELLOW"));
    let e = exp();
    let j = judged(&Observation::Read(Box::new(r)), &e);
    let c = done(conclude(j, Repairs::Made(vec![RepairResult::Done]), &e));
    assert_eq!(c.verdict, Verdict::Repaired);
    assert_eq!(c.findings[0].severity, Severity::Repaired);
    assert_eq!(c.findings[1].kind, Kind::Quality);
    assert!(c.reason.starts_with("subscription: "), "{}", c.reason);
}

#[test]
fn reasons() {
    let e = exp();
    let c = done(conclude(
        judged(&Observation::Read(Box::new(healthy())), &e),
        Repairs::NotAsked,
        &e,
    ));
    assert_eq!(
        c.reason,
        "+49 151 1234 is CONNECTED on CLOUD_API, quality GREEN; app 6349 subscribed to WABA 9999; handshake passed"
    );
    // A huge description from Meta: quoted to 300 characters, the reason to 2,048.
    let mut r = healthy();
    let errors: Vec<Value> = (0..20)
        .map(|i| json!({"error_code": i, "error_description": "d".repeat(5000)}))
        .collect();
    set_entity(
        &mut r,
        1,
        json!({"entity_type": "WABA", "id": "9999", "can_send_message": "BLOCKED", "errors": errors}),
    );
    let j = judged(&Observation::Read(Box::new(r)), &e);
    assert!(j.findings[0]
        .detail
        .contains(&format!("{}…", "d".repeat(299))));
    assert!(!j.findings[0].detail.contains(&"d".repeat(300)));
    let c = done(conclude(j, Repairs::NotAsked, &e));
    assert_eq!(c.reason.chars().count(), MAX_REASON_CHARS);
    assert!(!c.reason.contains('\n'));
}

#[test]
fn findings_name_what_a_person_needs() {
    let mut r = healthy();
    r.number = Err(graph_error(401, 190));
    let e = exp();
    let j = judged(&Observation::Read(Box::new(r)), &e);
    let d = &j.findings[0].detail;
    assert!(d.contains("190") && d.contains("message from Meta"), "{d}");
    let mut r = healthy();
    set_entity(
        &mut r,
        1,
        json!({"entity_type": "WABA", "id": "9999", "can_send_message": "BLOCKED",
          "errors": [{"error_code": 141000, "error_description": "Account restricted", "possible_solution": "Appeal in Business Support Home"}]}),
    );
    let j = judged(&Observation::Read(Box::new(r)), &e);
    let d = &j.findings[0].detail;
    for part in [
        "WABA 9999",
        "141000",
        "Account restricted",
        "Appeal in Business Support Home",
    ] {
        assert!(d.contains(part), "{d}");
    }
    // Repair asked, but impossible: the detail says why.
    let mut r = healthy();
    r.handshake = Handshake::NotAsked;
    edit_number(&mut r, |v| v["webhook_configuration"] = json!({}));
    let mut e = exp();
    e.has_verify_token = false;
    let j = judged(&Observation::Read(Box::new(r)), &e);
    assert!(
        j.findings[0].detail.contains("webhookVerifyTokenSecret"),
        "{:?}",
        j.findings
    );
}
