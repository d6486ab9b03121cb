use std::time::Duration;

use super::*;

const P: &str = "proj";
const ROOT_PW: &str = "r00t-Pa55word!xyz";

struct Fixture {
    sql: FakeSqlAdmin,
    token: String,
    client: reqwest::Client,
}

async fn fixture() -> Fixture {
    let tokens = TokenRegistry::new();
    let token = tokens.issue();
    let sql = FakeSqlAdmin::start(tokens).await;
    Fixture {
        sql,
        token,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

impl Fixture {
    /// `method` on `/v1/projects/{P}/{rest}`; answers the status and the body as text.
    async fn raw(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, String) {
        let mut req = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/v1/projects/{P}/{rest}", self.sql.url()),
            )
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn call(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.raw(method, rest, body).await;
        assert!(!text.contains(ROOT_PW), "password echoed: {text}");
        assert!(!text.contains("Us3r-Pa55!"), "password echoed: {text}");
        (status, serde_json::from_str(&text).unwrap())
    }

    /// Polls an operation until DONE (at most 10 GETs).
    async fn wait(&self, op: &Value) -> Value {
        let name = op["name"].as_str().unwrap();
        for _ in 0..10 {
            let (status, op) = self.call("GET", &format!("operations/{name}"), None).await;
            assert_eq!(status, 200);
            if op["status"] == "DONE" {
                return op;
            }
        }
        panic!("operation {name} not DONE after 10 polls");
    }
}

fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "databaseVersion": "POSTGRES_13",
        "region": "europe-west3",
        "rootPassword": ROOT_PW,
        "settings": {
            "tier": "db-custom-1-3840",
            "ipConfiguration": {
                "ipv4Enabled": true,
                "authorizedNetworks": [{"name": "vm", "value": "203.0.113.10/32"}],
                "sslMode": "ENCRYPTED_ONLY"
            },
            "databaseFlags": [{"name": "max_connections", "value": "1000"}],
            "backupConfiguration": {"enabled": true, "startTime": "02:00"}
        }
    })
}

#[tokio::test]
async fn create_goes_from_pending_create_to_runnable() {
    let f = fixture().await;
    let (status, op) = f
        .call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["kind"], "sql#operation");
    assert_eq!(op["status"], "PENDING");
    assert_eq!(op["operationType"], "CREATE");
    assert_eq!(op["targetId"], "wa-db");
    assert_eq!(op["targetProject"], P);
    assert_eq!(
        op["targetLink"],
        format!("{SQL_LINK_PREFIX}/projects/{P}/instances/wa-db")
    );
    let name = op["name"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&name).is_ok());
    assert_eq!(
        op["selfLink"],
        format!("{SQL_LINK_PREFIX}/projects/{P}/operations/{name}")
    );
    assert!(op["insertTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(f.sql.created_count(), 1);

    // Default 3 polls: the instance GET counts as one.
    let (_, inst) = f.call("GET", "instances/wa-db", None).await;
    assert_eq!(inst["state"], "PENDING_CREATE");
    assert!(inst.get("ipAddresses").is_none());
    let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
    assert_eq!(op["status"], "RUNNING");
    assert!(op["startTime"].is_string() && op.get("endTime").is_none());
    let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
    assert_eq!(op["status"], "DONE");
    assert!(op.get("error").is_none());
    assert!(op["endTime"].is_string());

    let (status, inst) = f.call("GET", "instances/wa-db", None).await;
    assert_eq!(status, 200);
    assert_eq!(inst["kind"], "sql#instance");
    assert_eq!(inst["state"], "RUNNABLE");
    assert_eq!(inst["databaseVersion"], "POSTGRES_13");
    assert_eq!(inst["connectionName"], "proj:europe-west3:wa-db");
    assert_eq!(inst["ipAddresses"][0]["type"], "PRIMARY");
    let ip = inst["ipAddresses"][0]["ipAddress"].as_str().unwrap();
    assert!(ip.starts_with("198.51.100."), "{ip}");
    assert!(inst["serverCaCert"]["cert"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let settings = &inst["settings"];
    assert_eq!(settings["tier"], "db-custom-1-3840");
    assert_eq!(
        settings["databaseFlags"],
        json!([{"name": "max_connections", "value": "1000"}])
    );
    assert_eq!(settings["ipConfiguration"]["sslMode"], "ENCRYPTED_ONLY");
    assert_eq!(settings["ipConfiguration"]["requireSsl"], false);
    assert_eq!(
        settings["ipConfiguration"]["authorizedNetworks"][0]["value"],
        "203.0.113.10/32"
    );
    assert_eq!(settings["backupConfiguration"]["enabled"], true);
    assert_eq!(settings["backupConfiguration"]["startTime"], "02:00");
    assert_eq!(settings["activationPolicy"], "ALWAYS");
    assert!(inst.get("rootPassword").is_none());
    assert_eq!(f.sql.instance(P, "wa-db").unwrap(), inst);
    assert_eq!(f.sql.state(P, "wa-db").as_deref(), Some("RUNNABLE"));
    assert_eq!(
        f.sql.user_password("wa-db", "postgres").as_deref(),
        Some(ROOT_PW)
    );

    // Duplicate: 409 in the documented shape, nothing new.
    let (status, err) = f
        .call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        err,
        json!({"error": {"code": 409, "message": "The Cloud SQL instance already exists.", "errors": [{"domain": "global", "reason": "instanceAlreadyExists", "message": "The Cloud SQL instance already exists."}]}})
    );
    assert_eq!(f.sql.created_count(), 1);
    let (status, err) = f.call("GET", "instances/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], 404);
    assert_eq!(
        err["error"]["message"],
        "The Cloud SQL instance does not exist."
    );
    assert_eq!(err["error"]["errors"][0]["reason"], "instanceDoesNotExist");
    assert_eq!(f.call("GET", "operations/nope", None).await.0, 404);

    // Listing operations.
    let (_, ops) = f.call("GET", "operations?instance=wa-db", None).await;
    assert_eq!(ops["items"][0]["name"], name.as_str());

    // Wait at most; bad bodies.
    f.sql.set_create_polls(0);
    let (_, op) = f
        .call("POST", "instances", Some(&create_body("fast")))
        .await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(f.sql.state(P, "fast").as_deref(), Some("RUNNABLE"));
    let mut bad = create_body("bad");
    bad["settings"]["databaseFlags"][0]["value"] = json!(1000);
    assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
    let mut bad = create_body("bad");
    bad["settings"]["ipConfiguration"]["requireSsl"] = json!(true);
    let (status, err) = f.call("POST", "instances", Some(&bad)).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sslMode value ENCRYPTED_ONLY and requireSsl value true are conflicting"));
    let mut bad = create_body("bad");
    bad["settings"].as_object_mut().unwrap().remove("tier");
    assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
    let mut bad = create_body("bad");
    bad["settings"]["ipConfiguration"]["authorizedNetworks"][0]["value"] = json!("vm-ip");
    assert_eq!(f.call("POST", "instances", Some(&bad)).await.0, 400);
    assert_eq!(
        f.call("POST", "instances", Some(&create_body("Bad_Name")))
            .await
            .0,
        400
    );
    assert!(f.sql.instance(P, "bad").is_none());
    assert_eq!(f.sql.created_count(), 2);
    assert_eq!(f.sql.route_count(SqlRoute::InsertInstance), 8);
}

#[tokio::test]
async fn seeded_instances_can_be_edited() {
    let f = fixture().await;
    let mut seeded = create_body("old-db");
    seeded["settings"]["databaseFlags"][0]["value"] = json!("500");
    f.sql.seed_instance(P, seeded);
    assert_eq!(f.sql.state(P, "old-db").as_deref(), Some("RUNNABLE"));
    assert_eq!(f.sql.created_count(), 0);
    f.sql
        .set_instance_setting(P, "old-db", "/settings/userLabels/team", json!("x"));
    let (status, inst) = f.call("GET", "instances/old-db", None).await;
    assert_eq!(status, 200);
    assert_eq!(inst["settings"]["userLabels"]["team"], "x");
    assert_eq!(inst["settings"]["databaseFlags"][0]["value"], "500");
}

#[tokio::test]
async fn users_never_show_passwords() {
    let f = fixture().await;
    f.sql.set_create_polls(0);
    f.call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    let (status, op) = f
        .call(
            "POST",
            "instances/wa-db/users",
            Some(&json!({"name": "wa", "password": "Us3r-Pa55!one"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(op["operationType"], "CREATE_USER");
    let done = f.wait(&op).await;
    assert!(done.get("error").is_none());
    let (_, users) = f.call("GET", "instances/wa-db/users", None).await;
    let names: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["postgres", "wa"]);
    assert!(users["items"][1].get("password").is_none());
    assert_eq!(
        f.sql.user_password("wa-db", "wa").as_deref(),
        Some("Us3r-Pa55!one")
    );

    // Inserting it again: the operation fails with ERROR_OTHER, the password stays.
    let (status, op) = f
        .call(
            "POST",
            "instances/wa-db/users",
            Some(&json!({"name": "wa", "password": "Us3r-Pa55!two"})),
        )
        .await;
    assert_eq!(status, 200);
    let done = f.wait(&op).await;
    assert_eq!(done["error"]["errors"][0]["code"], "ERROR_OTHER");
    assert_eq!(
        f.sql.user_password("wa-db", "wa").as_deref(),
        Some("Us3r-Pa55!one")
    );

    // The password change.
    let (status, op) = f
        .call(
            "PUT",
            "instances/wa-db/users?name=wa",
            Some(&json!({"name": "wa", "password": "Us3r-Pa55!three"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(op["operationType"], "UPDATE_USER");
    assert!(f.wait(&op).await.get("error").is_none());
    assert_eq!(
        f.sql.user_password("wa-db", "wa").as_deref(),
        Some("Us3r-Pa55!three")
    );
    let (_, op) = f
        .call(
            "PUT",
            "instances/wa-db/users?name=ghost",
            Some(&json!({"password": "Us3r-Pa55!four"})),
        )
        .await;
    assert_eq!(
        f.wait(&op).await["error"]["errors"][0]["code"],
        "ERROR_OTHER"
    );
    assert!(f.sql.user_password("wa-db", "ghost").is_none());

    assert_eq!(f.call("GET", "instances/nope/users", None).await.0, 404);
    // Whatever was asked, no answer carried a password (checked in `call`); and the
    // recorded requests do carry them (they are what the provisioner sent).
    assert!(f
        .sql
        .requests()
        .iter()
        .any(|r| r.body_text().contains("Us3r-Pa55!one")));
}

#[tokio::test]
async fn databases_appear() {
    let f = fixture().await;
    f.sql.set_create_polls(0);
    f.call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    let list = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
    assert_eq!(status, 200);
    assert_eq!(dbs["kind"], "sql#databasesList");
    assert_eq!(dbs["items"][0]["kind"], "sql#database");
    assert_eq!(list(&dbs), ["postgres"]);
    f.sql.add_database("wa-db", "wa");
    let (_, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
    assert_eq!(list(&dbs), ["postgres", "wa"]);

    f.sql.auto_databases_after(2, &["wa", "wa_messages"]);
    f.call("POST", "instances", Some(&create_body("other")))
        .await;
    for _ in 0..2 {
        let (_, dbs) = f.call("GET", "instances/other/databases", None).await;
        assert_eq!(list(&dbs), ["postgres"]);
    }
    let (_, dbs) = f.call("GET", "instances/other/databases", None).await;
    assert_eq!(list(&dbs), ["postgres", "wa", "wa_messages"]);
    // The first instance had been listed twice already: it gets them now, without
    // a duplicate `wa`.
    let (_, dbs) = f.call("GET", "instances/wa-db/databases", None).await;
    assert_eq!(list(&dbs), ["postgres", "wa", "wa_messages"]);
    assert_eq!(f.call("GET", "instances/nope/databases", None).await.0, 404);
}

#[tokio::test]
async fn authentication_is_checked() {
    let f = fixture().await;
    f.call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    let resp = f
        .client
        .get(format!("{}/v1/projects/{P}/instances/wa-db", f.sql.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    let resp = f
        .client
        .get(format!("{}/v1/projects/{P}/instances/wa-db", f.sql.url()))
        .bearer_auth("ya29.not-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(f.sql.created_count(), 1);
    assert_eq!(f.sql.route_count(SqlRoute::GetInstance), 2);
}

#[tokio::test]
async fn a_slow_create_can_be_finished_later() {
    let f = fixture().await;
    f.sql.set_create_polls(1_000_000);
    let (_, op) = f
        .call("POST", "instances", Some(&create_body("wa-db")))
        .await;
    for _ in 0..3 {
        let (_, inst) = f.call("GET", "instances/wa-db", None).await;
        assert_eq!(inst["state"], "PENDING_CREATE");
    }
    // Finish in the background: at most one more poll.
    f.sql.set_create_polls(1);
    let (_, inst) = f.call("GET", "instances/wa-db", None).await;
    assert_eq!(inst["state"], "RUNNABLE");
    let name = op["name"].as_str().unwrap();
    let (_, op) = f.call("GET", &format!("operations/{name}"), None).await;
    assert_eq!(op["status"], "DONE");
    // 0: at once, without a poll.
    f.sql.set_create_polls(1_000_000);
    f.call("POST", "instances", Some(&create_body("other")))
        .await;
    assert_eq!(f.sql.state(P, "other").as_deref(), Some("PENDING_CREATE"));
    f.sql.set_create_polls(0);
    assert_eq!(f.sql.state(P, "other").as_deref(), Some("RUNNABLE"));
    assert_eq!(f.sql.created_count(), 2);
}
