//! The Pub/Sub/CloudEvent decoder's targets: valid envelopes round trip, any data arrives
//! unchanged, arbitrary and mutated requests never panic.

use crate::corpus::*;
use crate::envelope_gen::*;
use crate::fuzz;
use crate::mutation::*;
use crate::oracles::*;
use crate::payload_gen::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shared::envelope;
use shared::payload::Payload;

#[test]
fn envelope_valid_round_trips() {
    fuzz(
        "envelope_valid_round_trips",
        (envelope_spec(), payload_spec()),
        |(env, spec)| {
            let data = spec.to_bytes(false);
            let (headers, body) = env.build(&data);
            let m = match envelope::decode(&headers, &body) {
                Ok(m) => m,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "valid {:?} refused: {e}\n{headers:?}\n{}",
                        env.form,
                        String::from_utf8_lossy(&body)
                    )))
                }
            };
            env.check(&m, &data)?;
            match Payload::parse(&m.data) {
                Ok(p) => spec.check(&p),
                Err(e) => Err(TestCaseError::fail(format!("payload refused: {e}"))),
            }
        },
    );
}

#[test]
fn envelope_carries_any_data_unchanged() {
    // Whatever bytes the message holds reach the payload parser unchanged (and it copes).
    let seeds = payload_seeds();
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..128),
        (0..seeds.len(), prop::collection::vec(mutation(), 0..4))
            .prop_map(|(i, ms)| mutate(seeds[i].1.clone(), &ms)),
    ]
    .prop_filter("empty", |d| !d.is_empty());
    fuzz(
        "envelope_carries_any_data_unchanged",
        (envelope_spec(), data),
        |(env, data)| {
            let (headers, body) = env.build(&data);
            match envelope::decode(&headers, &body) {
                Ok(m) => env.check(&m, &data)?,
                Err(e) => return Err(TestCaseError::fail(format!("refused: {e}"))),
            }
            check_result(&Payload::parse(&data))
        },
    );
}

#[test]
fn envelope_arbitrary_requests_never_panic() {
    let seeds = envelope_seeds();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (0..seeds.len(), prop::collection::vec(mutation(), 0..6))
            .prop_map(|(i, ms)| mutate(seeds[i].1.body.clone(), &ms)),
    ];
    let headers = prop::collection::vec((header_name(), header_value()), 0..8);
    fuzz(
        "envelope_arbitrary_requests_never_panic",
        (headers, body),
        |(headers, body)| {
            let req = Request { headers, body };
            let map = req.header_map();
            check_decoded(&map, &envelope::decode(&map, &req.body))
        },
    );
}

#[test]
fn envelope_mutated_seeds_never_panic() {
    // A seed request with its body mutated, and some headers dropped, changed or added.
    let seeds = envelope_seeds();
    let input = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 0..6),
        prop::collection::vec(
            (
                any::<usize>(),
                prop::option::of((header_name(), header_value())),
            ),
            0..3,
        ),
    );
    fuzz(
        "envelope_mutated_seeds_never_panic",
        input,
        |(i, ms, header_edits)| {
            let mut req = seeds[i].1.clone();
            req.body = mutate(req.body, &ms);
            for (at, edit) in header_edits {
                match edit {
                    Some(h) => req.headers.push(h),
                    None if !req.headers.is_empty() => {
                        let n = req.headers.len();
                        req.headers.remove(at % n);
                    }
                    None => {}
                }
            }
            let map = req.header_map();
            check_decoded(&map, &envelope::decode(&map, &req.body))
        },
    );
}
