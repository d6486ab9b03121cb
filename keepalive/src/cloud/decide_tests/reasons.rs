//! The texts: the reason line (quoted and bounded) and findings' details that name what a person
//! needs (Meta's code, message and solution; why a repair is impossible).

use super::*;

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
