//! Every finding of the contract's table through `keepalive check` (the real binary): its kind,
//! its severity, the verdict, the exit status, and that nothing was changed without `repair`.

use crate::world::*;
use keepalive_tests::{Entity, FakeToken, WebhookFault};
use serde_json::json;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_number() {
    let w = World::new().await;
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "healthy");
    assert_eq!(o["phoneNumberId"], PHONE);
    assert_eq!(o["wabaId"], WABA);
    assert_eq!(o["name"], "acme-de");
    assert_eq!(o["displayPhoneNumber"], DISPLAY);
    assert_eq!(o["qualityRating"], "GREEN");
    assert_eq!(o["platformType"], "CLOUD_API");
    assert_eq!(o["findings"], json!([]));
    assert_eq!(o["repairs"], json!([]));
    assert!(o["checkedAt"].as_str().unwrap().ends_with('Z'), "{o}");
    assert!(o["durationMs"].is_u64(), "{o}");
    assert!(!o["reason"].as_str().unwrap().is_empty());
    // The four reads, once each; the handshake once; nothing written.
    assert_eq!(w.graph.count("GET", PHONE), 1);
    assert_eq!(w.graph.count("GET", &format!("{WABA}/subscribed_apps")), 1);
    assert_eq!(w.graph.count("GET", "debug_token"), 1);
    assert_eq!(w.hook.handshake_count(), 1);
    assert!(w.writes().is_empty(), "{:?}", w.writes());
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_defaults_to_the_display_number() {
    let w = World::new().await;
    let mut p = w.payload();
    p.as_object_mut().unwrap().remove("name");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["name"], DISPLAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_version_is_the_path_prefix() {
    let mut w = World::new().await;
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0));
    assert!(w
        .graph
        .requests()
        .iter()
        .all(|r| r.path.starts_with("/v26.0/")));
    w.set_env("KEEPALIVE_GRAPH_VERSION", "v25.0");
    w.graph.clear_requests();
    assert_eq!(w.check(&w.payload(), &[]).await.code, Some(0));
    assert!(w
        .graph
        .requests()
        .iter()
        .all(|r| r.path.starts_with("/v25.0/")));
}

/// How a case breaks a healthy number.
type Breakage = Box<dyn Fn(&World)>;

/// One case of the table: the kinds and verdict expected.
struct Case {
    name: &'static str,
    kinds: &'static [&'static str],
    verdict: &'static str,
}

async fn run_case(w: &World, case: &Case) {
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], case.verdict, "{}: {o}", case.name);
    assert_eq!(kinds(&o), case.kinds, "{}: {o}", case.name);
    assert_eq!(run.code, Some(1), "{}", case.name);
    for f in o["findings"].as_array().unwrap() {
        assert!(
            !f["detail"].as_str().unwrap().is_empty(),
            "{}: {f}",
            case.name
        );
    }
    assert!(w.writes().is_empty(), "{}: {:?}", case.name, w.writes());
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_status_and_quality() {
    let cases: Vec<(Case, Breakage)> = vec![
        (
            Case {
                name: "On-Premises",
                kinds: &["platform"],
                verdict: "alert",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.platform_type = "ON_PREMISE".into())
            }),
        ),
        (
            Case {
                name: "not registered",
                kinds: &["platform"],
                verdict: "alert",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.platform_type = "NOT_APPLICABLE".into())
            }),
        ),
        (
            Case {
                name: "flagged",
                kinds: &["status"],
                verdict: "alert",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.status = "FLAGGED".into())
            }),
        ),
        (
            Case {
                name: "restricted",
                kinds: &["status"],
                verdict: "alert",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.status = "RESTRICTED".into())
            }),
        ),
        (
            Case {
                name: "pending",
                kinds: &["status"],
                verdict: "alert",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.status = "PENDING".into())
            }),
        ),
        (
            Case {
                name: "quality yellow",
                kinds: &["quality"],
                verdict: "warning",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.quality_rating = "YELLOW".into())
            }),
        ),
        (
            Case {
                name: "quality red",
                kinds: &["quality"],
                verdict: "warning",
            },
            Box::new(|w| {
                w.graph
                    .update_number(PHONE, |n| n.quality_rating = "RED".into())
            }),
        ),
    ];
    for (case, brk) in cases {
        let w = World::new().await;
        brk(&w);
        run_case(&w, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_is_judged_entity_by_entity() {
    let w = World::new().await;
    w.graph.set_entity(
        PHONE,
        Entity::blocked(
            "WABA",
            WABA,
            &[(
                141000,
                "The WhatsApp Business Account is restricted",
                "Request a review in Business Support Home",
            )],
        ),
    );
    let case = Case {
        name: "WABA blocked",
        kinds: &["blocked"],
        verdict: "alert",
    };
    run_case(&w, &case).await;
    let o = w.check(&w.payload(), &[]).await.outcome();
    let detail = o["findings"][0]["detail"].as_str().unwrap();
    for part in ["WABA", "141000", "is restricted", "Business Support Home"] {
        assert!(detail.contains(part), "{detail}");
    }

    // Calling blocked only: Meta's overall value reads BLOCKED, messaging is fine.
    let w = World::new().await;
    w.graph.set_entity(
        PHONE,
        Entity::available("PHONE_NUMBER", PHONE).sip_blocked(),
    );
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "healthy", "{}", run.stdout);
    assert_eq!(run.code, Some(0));

    let w = World::new().await;
    w.graph.set_entity(
        PHONE,
        Entity::limited("PHONE_NUMBER", PHONE, &["Messaging limit lowered to 250"]),
    );
    run_case(
        &w,
        &Case {
            name: "limited",
            kinds: &["limited"],
            verdict: "warning",
        },
    )
    .await;
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert!(o["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("limit lowered to 250"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_expiring_soon_is_a_warning() {
    let w = World::new().await;
    let soon = OffsetDateTime::now_utc() + time::Duration::days(3);
    w.graph
        .add_token(ACCESS_TOKEN, FakeToken::valid(APP).expiring_at(soon));
    run_case(
        &w,
        &Case {
            name: "expiry",
            kinds: &["expiry"],
            verdict: "warning",
        },
    )
    .await;

    // Beyond KEEPALIVE_TOKEN_WARN_S: nothing to say.
    let mut w = World::new().await;
    w.graph
        .add_token(ACCESS_TOKEN, FakeToken::valid(APP).expiring_at(soon));
    w.set_env("KEEPALIVE_TOKEN_WARN_S", "86400");
    assert_eq!(w.check(&w.payload(), &[]).await.code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_and_webhook_without_repair() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    w.graph.subscribe(WABA, OTHER_APP);
    run_case(
        &w,
        &Case {
            name: "app not subscribed",
            kinds: &["subscription"],
            verdict: "alert",
        },
    )
    .await;

    let w = World::new().await;
    w.graph.update_number(PHONE, |n| {
        n.webhook_override = Some("https://old-bot.example.com/hook".into())
    });
    run_case(
        &w,
        &Case {
            name: "override elsewhere",
            kinds: &["webhook"],
            verdict: "alert",
        },
    )
    .await;
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert!(o["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("old-bot.example.com"));

    let w = World::new().await;
    w.graph
        .set_waba_override(WABA, Some("https://waba-level.example.com/hook"));
    run_case(
        &w,
        &Case {
            name: "WABA override elsewhere",
            kinds: &["webhook"],
            verdict: "alert",
        },
    )
    .await;

    // appId names another app than the token's: judged against appId.
    let w = World::new().await;
    let mut p = w.payload();
    p["appId"] = json!(OTHER_APP);
    let run = w.check(&p, &[]).await;
    assert_eq!(kinds(&run.outcome()), ["subscription"], "{}", run.stdout);
    w.graph.subscribe(WABA, OTHER_APP);
    assert_eq!(w.check(&p, &[]).await.code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake() {
    let faults = [
        ("403", WebhookFault::Status(403)),
        ("500", WebhookFault::Status(500)),
        ("wrong body", WebhookFault::WrongBody),
        ("hang", WebhookFault::Hang),
    ];
    for (name, fault) in faults {
        let w = World::new().await;
        w.hook.fail_always(fault);
        let run = w.check(&w.payload(), &[]).await;
        let o = run.outcome();
        assert_eq!(o["verdict"], "alert", "{name}: {o}");
        assert_eq!(kinds(&o), ["handshake"], "{name}: {o}");
        assert_eq!(run.code, Some(1));
        assert_eq!(w.hook.handshake_count(), 1, "{name}");
        w.assert_tokens_only_where_allowed();
    }
    // The bot expects another verify token.
    let w = World::new().await;
    w.hook.set_verify_token("another-token");
    assert_eq!(
        kinds(&w.check(&w.payload(), &[]).await.outcome()),
        ["handshake"]
    );

    // A fresh challenge each time, digits only.
    let w = World::new().await;
    w.check(&w.payload(), &[]).await;
    w.check(&w.payload(), &[]).await;
    let challenges: Vec<String> = w
        .hook
        .requests()
        .iter()
        .filter_map(|r| {
            form_urlencoded::parse(r.query.as_deref().unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "hub.challenge")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(challenges.len(), 2);
    assert_ne!(challenges[0], challenges[1]);
    assert!(challenges
        .iter()
        .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())));
    let r = &w.hook.requests()[0];
    let q: Vec<(String, String)> =
        form_urlencoded::parse(r.query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    assert!(
        q.contains(&("hub.mode".into(), "subscribe".into())),
        "{q:?}"
    );
    assert!(q.contains(&("hub.verify_token".into(), VERIFY_TOKEN.into())));
    assert_eq!(r.method, "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_fails_the_handshake() {
    let mut w = World::new().await;
    // Trust another bundle: the endpoint's certificate no longer verifies.
    let other = keepalive_tests::SelfSignedCert::generate("someone-else");
    let path = w.g.dir().join("other-ca.pem");
    std::fs::write(&path, &other.cert_pem).unwrap();
    w.set_env("SSL_CERT_FILE", &path.display().to_string());
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(kinds(&o), ["handshake"], "{o}");
    assert!(
        o["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("reached"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_findings_most_severe_first() {
    let w = World::new().await;
    w.graph.update_number(PHONE, |n| {
        n.quality_rating = "YELLOW".into();
        n.status = "FLAGGED".into();
    });
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert");
    assert_eq!(kinds(&o), ["status", "quality"], "{o}");
    let reason = o["reason"].as_str().unwrap();
    assert!(
        reason.find("status").unwrap() < reason.find("quality").unwrap(),
        "{reason}"
    );
}
