//! Every finding of the contract through `assess`: its kind, its severity and the repairs it
//! allows, most severe first.

use super::*;

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
