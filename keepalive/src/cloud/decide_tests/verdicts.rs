//! What needs a retry is incomplete (also an unreadable token secret, a repair still failing);
//! the verdict after the repairs, from the repairs table.

use super::*;

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
