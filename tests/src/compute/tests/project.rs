//! The project: its number, auth and faults.

use super::*;

#[tokio::test]
async fn get_project_number_auth_and_faults() {
    let f = fixture().await;
    let url = format!("{}/compute/v1/projects/{P}", f.compute.url());
    let number = f.compute.project_number(P);
    assert_eq!(number.len(), 12);
    assert!(number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0'));
    // Stable: the same in another fake, different for another name.
    let other = FakeCompute::start(TokenRegistry::new()).await;
    assert_eq!(other.project_number(P), number);
    assert_ne!(other.project_number("other-proj"), number);

    let resp = f
        .client
        .get(&url)
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "compute#project");
    assert_eq!(body["id"], number);
    assert_eq!(body["name"], P);
    assert_eq!(body["selfLink"], format!("{LINK_PREFIX}/projects/{P}"));
    assert_eq!(
        body["defaultServiceAccount"],
        format!("{number}-compute@developer.gserviceaccount.com")
    );
    assert_eq!(body["xpnProjectStatus"], "UNSPECIFIED_XPN_PROJECT_STATUS");
    let ts = body["creationTimestamp"].as_str().unwrap();
    assert!(ts.ends_with("-08:00"));
    assert!(parse_rfc3339(ts).is_some());
    assert_eq!(f.call("GET", "", None).await.1, body);
    // Other methods on the project are not routes.
    assert_eq!(f.call("POST", "", None).await.0, 404);

    // Bad or missing token: 401, as for other routes.
    let resp = f.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    let resp = f
        .client
        .get(&url)
        .bearer_auth("ya29.not-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Scripted faults.
    f.compute.fail_next(ComputeRoute::GetProject, 1, 403);
    let (status, body) = f.call("GET", "", None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["errors"][0]["reason"], "forbidden");
    assert_eq!(
        body["error"]["message"],
        format!("Required 'compute.projects.get' permission for 'projects/{P}'")
    );
    assert_eq!(f.call("GET", "", None).await.0, 200);
    f.compute.fail_always(ComputeRoute::GetProject, 503);
    assert_eq!(f.call("GET", "", None).await.0, 503);
    assert_eq!(f.call("GET", "", None).await.0, 503);
    f.compute.clear_faults();
    // Counted (the POST is no route), and recorded.
    assert_eq!(f.compute.route_count(ComputeRoute::GetProject), 8);
    let requests = f.compute.requests();
    assert_eq!(requests.len(), 9);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, format!("/compute/v1/projects/{P}"));
    other.stop().await;
}
