//! Whom the keepalive trusts, through the real binary against the fakes: only a VM labelled
//! `whatsapp-keepalive=enabled` is reset or sent a password; a password from Secret Manager
//! goes only to one of the VM's own addresses; a payload may name only the projects of
//! `KEEPALIVE_PROJECTS`; refused credentials, a refused certificate and a redirect are alerts
//! that end the check at once; `whatsAppTlsFingerprint` pins the client's certificate;
//! `SSL_CERT_FILE` names the roots of every unpinned HTTPS client, Google's APIs included.

mod common;

use common::{post_push, World, PASSWORD, USER, VM, ZONE};
use keepalive_tests::binaries::Served;
use keepalive_tests::tls_front::TlsFront;
use keepalive_tests::{Behaviour, FakeWhatsApp, Health, SelfSignedCert, FAKE_PROJECT};
use serde_json::{json, Value};
use shared::tls_pin::Fingerprint;

/// A secret of the project that has nothing to do with WhatsApp.
const UNRELATED_SECRET: &str = "Db-R00t!-an-unrelated-secret-of-the-project";

fn reason(o: &Value) -> &str {
    o["reason"].as_str().unwrap_or_default()
}

/// A world whose client is down, so that a reset would be due if anything let it through.
async fn down_world() -> World {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.wa.set_health(Health::Single("disconnected"));
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attackers_payload_gets_no_secret_and_resets_nothing() {
    let w = down_world().await;
    let attacker = FakeWhatsApp::start(USER, UNRELATED_SECRET).await;
    let version = w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/sql-root-password"),
        UNRELATED_SECRET,
    );
    // The VM is a real, labelled one of the project; the host is the attacker's.
    for host in [
        attacker.host_port(),
        format!(
            "http://{}",
            attacker.host_port().replace("127.0.0.1", "localhost")
        ),
    ] {
        let payload = json!({
            "whatsAppHostname": host,
            "whatsAppUsername": USER,
            "whatsAppPasswordSecret": version,
            "vm": VM,
            "zone": ZONE,
            "project": FAKE_PROJECT,
        });
        let run = w.check(&payload, &[]).await;
        assert_eq!(run.code, Some(1), "{host}: {}", run.stderr);
        let o = run.outcome();
        assert_eq!(o["verdict"], "alert", "{host}: {o}");
        assert!(
            reason(&o).contains("is not one of the VM's addresses")
                && reason(&o).contains("was not sent"),
            "{o}"
        );
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(UNRELATED_SECRET), "{host}: {text}");
        }
    }
    assert!(attacker.requests().is_empty(), "the attacker was contacted");
    assert_eq!(w.wa.login_count(), 0);
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_password_goes_to_the_vms_address_only() {
    let w = down_world().await;
    w.wa.set_health(Health::Single("connected"));
    let version = w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/wa-admin"),
        PASSWORD,
    );
    let mut p = w.payload();
    p.as_object_mut().unwrap().remove("whatsAppPassword");
    p["whatsAppPasswordSecret"] = json!(version);
    // The VM's external address is the client's: the password goes there.
    w.g.compute.set_nat_ip(FAKE_PROJECT, ZONE, VM, "127.0.0.1");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(w.wa.successful_login_count(), 1);
    // An inline password is its sender's own: no address rule.
    w.g.compute
        .set_nat_ip(FAKE_PROJECT, ZONE, VM, "203.0.113.7");
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(w.wa.successful_login_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlabelled_vm_is_never_reset_nor_sent_a_password() {
    let w = down_world().await;
    for labels in [
        vec![],
        vec![("app", "whatsapp")],
        vec![("whatsapp-keepalive", "disabled")],
    ] {
        w.g.compute.set_labels(FAKE_PROJECT, ZONE, VM, &labels);
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(run.code, Some(1), "{labels:?}");
        let o = run.outcome();
        assert_eq!(o["verdict"], "alert", "{labels:?}: {o}");
        assert!(
            reason(&o).contains("whatsapp-keepalive=enabled"),
            "{labels:?}: {o}"
        );
    }
    assert!(w.wa.requests().is_empty(), "the client was contacted");
    assert_eq!(w.resets(), 0);
    // Labelled: the same client is reset.
    w.g.compute
        .set_labels(FAKE_PROJECT, ZONE, VM, &[("whatsapp-keepalive", "enabled")]);
    assert_eq!(
        w.check(&w.payload(), &[]).await.outcome()["verdict"],
        "reset"
    );
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_outside_keepalive_projects_is_a_400() {
    let mut w = down_world().await;
    let mut elsewhere = w.payload();
    elsewhere["project"] = json!("someone-elses-project");

    // Unset: only the default project (here the credentials').
    let run = w.check(&elsewhere, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert_eq!(run.outcome()["field"], "project", "{}", run.stdout);

    w.set_env("KEEPALIVE_PROJECTS", &format!("acme-test, {FAKE_PROJECT}"));
    let s = Served::start(&w.env);
    let (status, answer) = post_push(&s.url(), &elsewhere).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["field"], "project", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("someone-elses-project"),
        "{answer}"
    );
    assert!(w.g.compute.requests().is_empty(), "Compute was called");
    assert!(w.wa.requests().is_empty(), "the client was contacted");
    // A listed project is checked (and its down client reset).
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("reset")), "{o}");
    // Without `project`, the default project must be listed too.
    w.set_env("KEEPALIVE_PROJECTS", "acme-test");
    let mut no_project = w.payload();
    no_project.as_object_mut().unwrap().remove("project");
    let run = w.check(&no_project, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert_eq!(run.outcome()["field"], "project");
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_an_alert_at_once() {
    let mut w = down_world().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "3");
    let mut p = w.payload();
    p["whatsAppPassword"] = json!("a-rotated-password");
    let run = w.check(&p, &[]).await;
    assert_eq!(run.code, Some(1));
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("401"), "{o}");
    assert!(reason(&o).contains("1005"), "{o}");
    assert!(reason(&o).contains("credentials were refused"), "{o}");
    assert_eq!(o["attempts"], 1, "no further attempt: {o}");
    assert_eq!(w.wa.login_count(), 1);
    // 403 the same.
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(403));
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("403"), "{o}");
    assert_eq!(w.wa.login_count(), 2);
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_an_alert_and_never_followed() {
    let mut w = down_world().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "3");
    let elsewhere = FakeWhatsApp::start(USER, PASSWORD).await;
    w.wa.set_behaviour(
        "/v1/users/login",
        Behaviour::Redirect(format!("{}/v1/users/login", elsewhere.url())),
    );
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("302"), "{o}");
    assert!(reason(&o).contains("redirect"), "{o}");
    assert_eq!(o["attempts"], 1, "{o}");
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    assert_eq!(w.resets(), 0);
}

/// A world whose client serves HTTPS with its self-signed certificate.
async fn tls_world() -> World {
    let mut w = World::new().await;
    w.wa = FakeWhatsApp::start_tls(USER, PASSWORD).await;
    w.set_env("KEEPALIVE_ATTEMPTS", "2");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w
}

fn https_payload(w: &World, fingerprint: Option<String>) -> Value {
    let mut p = w.payload();
    p["whatsAppHostname"] = json!(format!("https://{}", w.wa.host_port()));
    if let Some(f) = fingerprint {
        p["whatsAppTlsFingerprint"] = json!(f);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_certificate_is_trusted_and_only_it() {
    let w = tls_world().await;
    let pinned = Fingerprint::of(&w.wa.certificate_der()).to_string();
    let o = w
        .check(&https_payload(&w, Some(pinned.clone())), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(w.wa.successful_login_count(), 1);
    // As openssl prints it: upper case, colon-separated pairs.
    let openssl_form = format!(
        "sha256:{}",
        pinned.as_bytes()[7..]
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).to_uppercase())
            .collect::<Vec<_>>()
            .join(":")
    );
    let o = w
        .check(&https_payload(&w, Some(openssl_form)), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");

    // Another certificate's fingerprint: refused before any request, alert at once.
    w.wa.set_health(Health::Single("disconnected"));
    let other = SelfSignedCert::generate("someone else").cert_der;
    let wrong = Fingerprint::of(&other).to_string();
    let run = w.check(&https_payload(&w, Some(wrong)), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("certificate was refused"), "{o}");
    assert!(
        reason(&o).contains(&pinned),
        "names what was presented: {o}"
    );
    assert_eq!(o["attempts"], 1, "{o}");
    // Without a pin the self-signed certificate is not trusted either.
    let o = w.check(&https_payload(&w, None), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("certificate was refused"), "{o}");
    assert_eq!(
        w.wa.successful_login_count(),
        2,
        "no login past a refused certificate"
    );
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_that_cannot_pin_is_a_400() {
    let w = tls_world().await;
    let pinned = Fingerprint::of(&w.wa.certificate_der()).to_string();
    let s = Served::start(&w.env);
    let mut over_http = w.payload();
    over_http["whatsAppTlsFingerprint"] = json!(pinned);
    for (payload, problem) in [
        (over_http, "http://"),
        (https_payload(&w, Some("sha256:not-hex".into())), "sha256:"),
    ] {
        let (status, answer) = post_push(&s.url(), &payload).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], "whatsAppTlsFingerprint", "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(problem),
            "{answer}"
        );
    }
    assert!(w.wa.requests().is_empty());
    assert!(w.g.compute.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_names_the_roots_of_an_unpinned_https_client() {
    let mut w = tls_world().await;
    let roots = w.g.dir().join("roots.pem");
    std::fs::write(&roots, w.wa.certificate_pem()).unwrap();
    w.set_env("SSL_CERT_FILE", &roots.display().to_string());
    let o = w.check(&https_payload(&w, None), &[]).await.outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    // Another certificate as the only root: refused.
    std::fs::write(&roots, SelfSignedCert::generate("someone else").cert_pem).unwrap();
    let o = w.check(&https_payload(&w, None), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("certificate was refused"), "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_names_the_roots_of_googles_apis_too() {
    let mut w = World::new().await;
    // Compute Engine over HTTPS, as compute.googleapis.com is.
    let cert = SelfSignedCert::generate("googleapis-front");
    let front = TlsFront::start(&cert, &w.g.compute.url()).await;
    w.set_env("KEEPALIVE_COMPUTE_ENDPOINT", &front.url);
    let roots = w.g.dir().join("roots.pem");
    std::fs::write(&roots, &cert.cert_pem).unwrap();
    w.set_env("SSL_CERT_FILE", &roots.display().to_string());
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert!(
        !w.g.compute.requests().is_empty(),
        "the instance was read through the front"
    );
    // Another certificate as the only root: the instance cannot be read, so a client that is
    // down is neither logged in to nor reset.
    w.wa.set_health(Health::Single("disconnected"));
    std::fs::write(&roots, SelfSignedCert::generate("someone else").cert_pem).unwrap();
    let logins = w.wa.successful_login_count();
    let o = w.check(&w.payload(), &[]).await.outcome();
    let error = o["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Compute Engine could not be reached") && error.contains("certificate"),
        "{o}"
    );
    assert_eq!(w.wa.successful_login_count(), logins);
    assert_eq!(w.resets(), 0);
}
