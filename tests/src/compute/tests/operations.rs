//! Operation lists and their filters, and scripted faults.

use super::*;

#[tokio::test]
async fn zone_lists_take_only_the_keepalives_filters() {
    let f = fixture().await;
    let id = f
        .compute
        .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
    f.compute
        .add_instance(P, Z, "other", "RUNNING", OffsetDateTime::now_utc());
    let (_, body) = f.get("operations").await;
    assert_eq!(body["kind"], "compute#operationList");
    assert!(body.get("items").is_none());

    let now = OffsetDateTime::now_utc();
    let hour_ago = now - time::Duration::hours(1);
    let seeded = f
        .compute
        .add_operation(P, Z, "vm", "reset", "DONE", hour_ago);
    f.compute
        .add_operation(P, Z, "vm", "reset", "DONE", now - time::Duration::days(2));
    f.compute
        .add_operation(P, Z, "other", "reset", "DONE", hour_ago);
    f.compute
        .add_operation(P, Z, "vm", "stop", "DONE", hour_ago);
    f.compute
        .add_operation(P, "other-zone", "vm", "reset", "DONE", hour_ago);
    let (_, newest) = f.post("instances/vm/reset").await;

    let q = |filter: &str| {
        let enc: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        format!("operations?filter={enc}&orderBy=creationTimestamp%20desc")
    };
    // What guard::reset_filter sends: this VM's resets of this zone since the bound.
    let since = now - time::Duration::days(1);
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let resets = format!(r#"operationType = "reset" AND insertTime > "{since}""#);
    let (status, body) = f
        .get(&q(&format!(r#"{resets} AND targetId = "{id}""#)))
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    assert_eq!(items[0]["name"], newest["name"], "newest first");
    assert_eq!(items[1]["name"], seeded.as_str());
    // Without the instance's id: every reset of the zone since the bound.
    let (_, body) = f.get(&q(&resets)).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 3, "{body}");

    let (_, body) = f.get("operations?maxResults=2").await;
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert_eq!(body["nextPageToken"], "2");
    let (_, body) = f.get("operations?maxResults=2&pageToken=4").await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "five in the zone");
    assert!(body.get("nextPageToken").is_none());

    // Any other filter, even one the real API would take: 400 as for one it cannot parse.
    for filter in [
        format!(r#"operationType = "reset" AND targetId = "{id}""#),
        r#"operationType = "reset"#.to_owned(),
    ] {
        let (status, body) = f.get(&q(&filter)).await;
        assert_eq!(status, 400, "{filter}");
        assert_eq!(body["error"]["errors"][0]["reason"], "invalid");
        assert_eq!(
            body["error"]["message"],
            format!(
                "Invalid value for field 'filter': '{filter}'. Invalid list filter expression."
            )
        );
    }
}

#[tokio::test]
async fn aggregated_operations_span_every_zone() {
    let f = fixture().await;
    let now = OffsetDateTime::now_utc();
    f.compute
        .add_operation(P, Z, "a", "reset", "DONE", now - time::Duration::minutes(1));
    f.compute.add_operation(
        P,
        "us-east1-b",
        "b",
        "reset",
        "DONE",
        now - time::Duration::minutes(2),
    );
    f.compute
        .add_operation(P, Z, "c", "reset", "DONE", now - time::Duration::hours(3));
    f.compute
        .add_operation(P, Z, "a", "stop", "DONE", now - time::Duration::minutes(1));
    f.compute
        .add_operation("other-project", Z, "d", "reset", "DONE", now);
    let url = |query: &str| {
        format!(
            "{}/compute/v1/projects/{P}/aggregated/operations{query}",
            f.compute.url()
        )
    };
    let get = |u: String| {
        let req = f.client.get(u).bearer_auth(&f.token);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let since = compute_timestamp(now - time::Duration::minutes(10));
    let filter = format!(r#"operationType = "reset" AND insertTime > "{since}""#);
    let enc: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let (status, body) = get(url(&format!("?filter={enc}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "compute#operationAggregatedList");
    let names = |scope: &str| -> Vec<String> {
        body["items"][scope]["operations"]
            .as_array()
            .map(|ops| {
                ops.iter()
                    .map(|o| {
                        o["targetLink"]
                            .as_str()
                            .unwrap()
                            .rsplit('/')
                            .next()
                            .unwrap()
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&format!("zones/{Z}")), ["a"]);
    assert_eq!(names("zones/us-east1-b"), ["b"]);
    let (_, body) = get(url("?maxResults=2")).await;
    assert_eq!(body["nextPageToken"], "2");
    f.compute
        .fail_next(ComputeRoute::AggregatedOperations, 1, 403);
    let (status, body) = get(url("")).await;
    assert_eq!(status, 403);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("compute.globalOperations.list"));
}

#[tokio::test]
async fn scripted_errors() {
    let f = fixture().await;
    f.compute
        .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
    f.compute.fail_next(ComputeRoute::Reset, 2, 429);
    let (status, body) = f.post("instances/vm/reset").await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["errors"][0]["reason"], "rateLimitExceeded");
    assert_eq!(f.post("instances/vm/reset").await.0, 429);
    assert_eq!(f.post("instances/vm/reset").await.0, 200);
    assert_eq!(f.compute.resets("vm"), 1);

    f.compute.fail_always(ComputeRoute::Reset, 403);
    for _ in 0..2 {
        let (status, body) = f.post("instances/vm/reset").await;
        assert_eq!(status, 403);
        assert_eq!(body["error"]["errors"][0]["reason"], "forbidden");
        assert_eq!(
                body["error"]["message"],
                format!("Required 'compute.instances.reset' permission for 'projects/{P}/zones/{Z}/instances/vm'")
            );
    }
    f.compute.fail_always(ComputeRoute::GetInstance, 503);
    let (status, body) = f.get("instances/vm").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["errors"][0]["reason"], "backendError");
    assert_eq!(body["error"]["message"], "Service unavailable");
    f.compute.fail_next(ComputeRoute::ListOperations, 1, 500);
    assert_eq!(f.get("operations").await.0, 500);
    assert_eq!(f.get("operations").await.0, 200);
    f.compute.clear_faults();
    assert_eq!(f.get("instances/vm").await.0, 200);
    assert_eq!(f.compute.resets("vm"), 1);

    f.compute.hang_always(ComputeRoute::GetInstance);
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .get(f.url("instances/vm"))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    f.compute.clear_faults();
    assert_eq!(f.get("instances/vm").await.0, 200);
}
