use serde_json::json;
use time::Duration;

use super::{cron::parse_cron, *};
use crate::rest::send;

const PARENT: &str = "projects/p/locations/europe-west1";
const NAME: &str = "projects/p/locations/europe-west1/jobs/keepalive-tick";

async fn fixture() -> (FakeScheduler, String, reqwest::Client) {
    let tokens = TokenRegistry::new();
    let token = tokens.issue();
    (
        FakeScheduler::start(tokens).await,
        token,
        reqwest::Client::new(),
    )
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn job_body() -> Value {
    json!({
        "name": NAME,
        "description": "Keepalive tick",
        "schedule": "*/5 * * * *",
        "pubsubTarget": {
            "topicName": "projects/p/topics/keepalive-tick",
            "data": b64("{\"tick\":true}"),
            "attributes": {"source": "scheduler"}
        },
        "retryConfig": {"retryCount": 1, "maxDoublings": 2},
        "attemptDeadline": "60s"
    })
}

async fn create(
    s: &FakeScheduler,
    token: &str,
    client: &reqwest::Client,
    body: Value,
) -> (u16, Value) {
    send(
        client,
        reqwest::Method::POST,
        format!("{}/v1/{PARENT}/jobs", s.url()),
        token,
        Some(body),
    )
    .await
}

#[test]
fn cron_expressions() {
    for ok in [
        "*/5 * * * *",
        "0 9 * * 1-5",
        "0 0 1 JAN,jul *",
        "30 2 * * SUN",
        "0 0 * * 7",
        "1,2,3-10/2 0-23/6 1-31 1-12 0-6",
    ] {
        assert!(parse_cron(ok).is_some(), "{ok}");
    }
    for bad in [
        "",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "every 5 minutes",
        "a * * * *",
    ] {
        assert!(parse_cron(bad).is_none(), "{bad}");
    }
    let t = |s: &str| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let every5 = parse_cron("*/5 * * * *").unwrap();
    assert_eq!(
        every5.next_after(t("2026-03-01T10:02:30Z")),
        Some(t("2026-03-01T10:05:00Z"))
    );
    assert_eq!(
        every5.next_after(t("2026-03-01T10:05:00Z")),
        Some(t("2026-03-01T10:10:00Z"))
    );
    // Mondays to Fridays at 09:00: from a Saturday, the Monday.
    let weekdays = parse_cron("0 9 * * MON-FRI").unwrap();
    assert_eq!(
        weekdays.next_after(t("2026-02-28T12:00:00Z")),
        Some(t("2026-03-02T09:00:00Z"))
    );
    // Day of month OR day of week when both are restricted.
    let either = parse_cron("0 0 13 * FRI").unwrap();
    assert_eq!(
        either.next_after(t("2026-03-01T00:00:00Z")),
        Some(t("2026-03-06T00:00:00Z"))
    );
    let leap = parse_cron("0 0 29 2 *").unwrap();
    assert_eq!(
        leap.next_after(t("2026-03-01T00:00:00Z")),
        Some(t("2028-02-29T00:00:00Z"))
    );
}

#[tokio::test]
async fn create_get_list_and_delete() {
    let (s, token, client) = fixture().await;
    let (status, empty) = send(
        &client,
        reqwest::Method::GET,
        format!("{}/v1/{PARENT}/jobs", s.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(empty, json!({}));

    let (status, job) = create(&s, &token, &client, job_body()).await;
    assert_eq!(status, 200);
    assert_eq!(job["name"], NAME);
    assert_eq!(job["state"], "ENABLED");
    assert_eq!(job["timeZone"], "Etc/UTC");
    assert_eq!(job["schedule"], "*/5 * * * *");
    assert_eq!(job["description"], "Keepalive tick");
    assert_eq!(job["pubsubTarget"], job_body()["pubsubTarget"]);
    assert_eq!(
        job["retryConfig"],
        json!({"retryCount": 1, "maxDoublings": 2, "maxRetryDuration": "0s", "minBackoffDuration": "5s", "maxBackoffDuration": "3600s"})
    );
    assert_eq!(job["attemptDeadline"], "60s");
    assert!(job["userUpdateTime"].as_str().unwrap().ends_with('Z'));
    let next = crate::server::parse_rfc3339(job["scheduleTime"].as_str().unwrap()).unwrap();
    assert!(next > now() && next <= now() + Duration::minutes(5));
    assert_eq!(next.minute() % 5, 0);
    assert_eq!(next.second(), 0);
    assert!(job.get("lastAttemptTime").is_none());

    let (status, got) = send(
        &client,
        reqwest::Method::GET,
        format!("{}/v1/{NAME}", s.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], NAME);
    assert_eq!(got["userUpdateTime"], job["userUpdateTime"]);
    assert_eq!(s.job(NAME).unwrap()["pubsubTarget"], job["pubsubTarget"]);
    assert_eq!(s.jobs(), vec![NAME.to_owned()]);

    let (_, list) = send(
        &client,
        reqwest::Method::GET,
        format!("{}/v1/{PARENT}/jobs", s.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["name"], NAME);

    let (status, err) = send(
        &client,
        reqwest::Method::GET,
        format!("{}/v1/{PARENT}/jobs/nope", s.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");

    let (status, _) = send(
        &client,
        reqwest::Method::DELETE,
        format!("{}/v1/{NAME}", s.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(s.jobs().is_empty());
}

#[tokio::test]
async fn duplicate_create_is_already_exists() {
    let (s, token, client) = fixture().await;
    assert_eq!(create(&s, &token, &client, job_body()).await.0, 200);
    let (status, err) = create(&s, &token, &client, job_body()).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], 409);
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
}

#[tokio::test]
async fn invalid_jobs_are_refused() {
    let (s, token, client) = fixture().await;
    let with = |pointer: &str, value: Value| {
        let mut b = job_body();
        let mut v = &mut b;
        for key in pointer.trim_start_matches('/').split('/') {
            v = &mut v[key];
        }
        *v = value;
        b
    };
    let without = |key: &str| {
        let mut b = job_body();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    for body in [
        with("/pubsubTarget/data", json!("not base64!!")),
        with("/pubsubTarget/data", json!("abcde")),
        with("/schedule", json!("*/5 * * *")),
        with("/schedule", json!("every 5 minutes")),
        without("schedule"),
        with("/timeZone", json!("")),
        with("/timeZone", json!("Europe / Berlin")),
        with("/pubsubTarget/topicName", json!("keepalive-tick")),
        with(
            "/pubsubTarget/topicName",
            json!("projects/p/subscriptions/keepalive-tick"),
        ),
        with(
            "/pubsubTarget",
            json!({"topicName": "projects/p/topics/keepalive-tick"}),
        ),
        with(
            "/name",
            json!("projects/other/locations/europe-west1/jobs/x"),
        ),
        with("/name", json!("projects/p/locations/us-central1/jobs/x")),
        with("/name", json!("keepalive-tick")),
        with("/name", json!("projects/p/locations/europe-west1/jobs/a b")),
        without("name"),
        without("pubsubTarget"),
        with("/httpTarget", json!({"uri": "https://example.com/tick"})),
        with("/retryConfig/retryCount", json!(6)),
        with("/retryConfig/maxBackoffDuration", json!("1h")),
        with("/attemptDeadline", json!("60")),
    ] {
        let (status, err) = create(&s, &token, &client, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT", "{body}");
        assert_eq!(err["error"]["code"], 400);
    }
    assert!(s.jobs().is_empty());
    // Unpadded and URL-safe base64 are accepted (proto3 JSON), and so is an HTTP target.
    let (status, _) = create(
        &s,
        &token,
        &client,
        with("/pubsubTarget/data", json!("eyJ0aWNrIjp0cnVlfQ")),
    )
    .await;
    assert_eq!(status, 200);
    let mut http = without("pubsubTarget");
    http["name"] = json!(format!("{PARENT}/jobs/http"));
    http["httpTarget"] = json!({"uri": "https://example.com/tick", "httpMethod": "POST"});
    assert_eq!(create(&s, &token, &client, http).await.0, 200);
}

#[tokio::test]
async fn patch_with_an_update_mask_changes_only_the_named_fields() {
    let (s, token, client) = fixture().await;
    s.add_job(job_body());
    let before = s.job(NAME).unwrap();
    let mut body = job_body();
    body["schedule"] = json!("0 * * * *");
    body["description"] = json!("changed");
    body["pubsubTarget"]["data"] = json!(b64("new"));
    let patch = |mask: &str, body: Value| {
        send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v1/{NAME}{mask}", s.url()),
            &token,
            Some(body),
        )
    };
    let (status, job) = patch("?updateMask=schedule", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(job["schedule"], "0 * * * *");
    assert_eq!(job["description"], "Keepalive tick");
    assert_eq!(job["pubsubTarget"], before["pubsubTarget"]);
    assert_eq!(job["retryConfig"], before["retryConfig"]);
    assert_eq!(s.job(NAME).unwrap()["schedule"], "0 * * * *");
    let next = crate::server::parse_rfc3339(job["scheduleTime"].as_str().unwrap()).unwrap();
    assert_eq!((next.minute(), next.second()), (0, 0));

    // Dotted and snake_case paths.
    let (status, job) = patch("?updateMask=pubsubTarget.data,time_zone", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(job["pubsubTarget"]["data"], b64("new"));
    assert_eq!(
        job["pubsubTarget"]["attributes"],
        json!({"source": "scheduler"})
    );
    // timeZone was in the mask but not in the body: cleared, then the default again.
    assert_eq!(job["timeZone"], "Etc/UTC");
    assert_eq!(job["description"], "Keepalive tick");

    // The merged job is validated.
    let mut bad = body.clone();
    bad["schedule"] = json!("nope");
    assert_eq!(patch("?updateMask=schedule", bad).await.0, 400);
    assert_eq!(patch("?updateMask=state", body.clone()).await.0, 400);
    assert_eq!(s.job(NAME).unwrap()["schedule"], "0 * * * *");

    // Without a mask, every user field is replaced.
    let mut replace = body.clone();
    replace.as_object_mut().unwrap().remove("description");
    let (status, job) = patch("", replace).await;
    assert_eq!(status, 200);
    assert!(job.get("description").is_none());
    assert_eq!(job["pubsubTarget"]["data"], b64("new"));

    let (status, err) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v1/{PARENT}/jobs/nope?updateMask=schedule", s.url()),
        &token,
        Some(body),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn run_pause_and_resume() {
    let (s, token, client) = fixture().await;
    s.add_job(job_body());
    let verb = |v: &str| {
        send(
            &client,
            reqwest::Method::POST,
            format!("{}/v1/{NAME}:{v}", s.url()),
            &token,
            Some(json!({})),
        )
    };
    assert_eq!(s.runs(NAME), 0);
    let (status, job) = verb("run").await;
    assert_eq!(status, 200);
    assert_eq!(job["name"], NAME);
    assert!(job["lastAttemptTime"].as_str().is_some());
    assert_eq!(job["status"], json!({}));
    verb("run").await;
    assert_eq!(s.runs(NAME), 2);
    let (_, job) = verb("pause").await;
    assert_eq!(job["state"], "PAUSED");
    let (status, err) = verb("pause").await;
    assert_eq!(status, 400, "only an enabled job can be paused");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    let (_, job) = verb("resume").await;
    assert_eq!(job["state"], "ENABLED");
    let (status, err) = verb("resume").await;
    assert_eq!(status, 400, "only a paused job can be resumed");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    s.set_state(NAME, "PAUSED");
    assert_eq!(s.job(NAME).unwrap()["state"], "PAUSED");
    let (status, _) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/{PARENT}/jobs/nope:run", s.url()),
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(s.runs(&format!("{PARENT}/jobs/nope")), 0);
}

#[tokio::test]
async fn tokens_and_scripted_failures() {
    let (s, token, client) = fixture().await;
    s.add_job(job_body());
    let resp = client
        .get(format!("{}/v1/{NAME}", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let get = || {
        send(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/{NAME}", s.url()),
            &token,
            None,
        )
    };
    s.fail_next(429);
    let (status, err) = get().await;
    assert_eq!(status, 429);
    assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(get().await.0, 200);
    s.fail_next(503);
    s.fail_next(500);
    assert_eq!(get().await.1["error"]["status"], "UNAVAILABLE");
    assert_eq!(get().await.1["error"]["status"], "INTERNAL");
    s.fail_always(403);
    assert_eq!(get().await.1["error"]["status"], "PERMISSION_DENIED");
    s.clear_failures();
    assert_eq!(get().await.0, 200);
    assert_eq!(s.requests().len(), 7);
    assert_eq!(s.requests()[0].path, format!("/v1/{NAME}"));
    s.clear_requests();
    assert!(s.requests().is_empty());
}
