//! What a fleet check reads (`cloud-api-contract.md`, "Fleet messages"): the same
//! observation per entry as `observe.rs` gives one number, gathered the cheap way.
//!
//! - each Secret Manager version once, however many entries name it;
//! - per token: every number and each WABA's `subscribed_apps` once, in Graph batches of at
//!   most 50 (`GraphClient::batch_read` retries the items that failed retryably), and
//!   `debug_token` once;
//! - the handshakes, each entry's own;
//!
//! all at once, each batch, `debug_token` and handshake holding one turn of
//! `KEEPALIVE_MAX_CONCURRENT_PROBES`. A batch item that fails is its number's (or its WABA's)
//! error only; a batch call that fails is the error of every item in it.

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use secrecy::SecretString;
use shared::google::GoogleError;
use shared::graph::{
    BatchRequest, GraphError, PhoneNumber, SubscribedApp, TokenInfo, MAX_BATCH_REQUESTS,
};
use shared::payload::cloud::CloudPayload;
use shared::payload::SecretVersion;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::observe::{shake, GraphReads, Handshake, Observation, Read, Readers, Secrets};

/// Secret Manager reads in flight at once (a fleet names few secrets; a bound all the same).
const SECRET_READS_AT_ONCE: usize = 16;

/// What one batch item is about.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Number(&'a str),
    Waba(&'a str),
}

/// One batch call: which token, what each item is about, the requests.
struct Batch<'a> {
    token: &'a str,
    items: Vec<Item<'a>>,
    requests: Vec<BatchRequest>,
}

/// Reads everything the decisions of `numbers` need; one observation (and the secrets, when
/// the token was read) per entry, in order.
pub async fn observe_fleet(
    r: &Readers<'_>,
    turns: &Semaphore,
    numbers: &[CloudPayload],
    deadline: Instant,
) -> Vec<(Observation, Option<Secrets>)> {
    let secrets = read_secrets(r, numbers, deadline).await;
    let tokens: BTreeMap<&str, &SecretString> = numbers
        .iter()
        .filter_map(|p| {
            let name = p.access_token_secret.as_str();
            secrets.get(name)?.as_ref().ok().map(|t| (name, t))
        })
        .collect();
    let batches = plan_batches(numbers, &tokens);
    let dl = Some(deadline);
    let tokens = &tokens;
    let batch_reads = join_all(batches.iter().map(|b| async move {
        let _turn = turns.acquire().await.ok();
        r.graph.batch_read(tokens[b.token], &b.requests, dl).await
    }));
    let token_reads = join_all(tokens.iter().map(|(name, token)| async move {
        let _turn = turns.acquire().await.ok();
        (*name, r.graph.debug_token(token, dl).await)
    }));
    let handshakes = join_all(numbers.iter().map(|p| {
        let verify = p
            .webhook
            .as_ref()
            .and(p.verify_token_secret.as_ref())
            .and_then(|v| secrets.get(v.as_str()));
        async move {
            match (&p.webhook, verify) {
                (Some(hook), Some(Ok(vt))) => {
                    let _turn = turns.acquire().await.ok();
                    shake(r, hook, vt, deadline).await
                }
                (_, Some(Err(e))) => Handshake::NoVerifyToken {
                    retryable: e.is_retryable(),
                    error: e.to_string(),
                },
                _ => Handshake::NotAsked,
            }
        }
    }));
    let (batch_results, token_results, handshakes) =
        tokio::join!(batch_reads, token_reads, handshakes);
    let token_infos: HashMap<&str, Read<TokenInfo>> = token_results.into_iter().collect();
    let mut phones: HashMap<&str, Read<PhoneNumber>> = HashMap::new();
    let mut apps: HashMap<(&str, &str), Read<Vec<SubscribedApp>>> = HashMap::new();
    for (batch, result) in batches.iter().zip(batch_results) {
        let results = match result {
            Ok(items) => items,
            Err(e) => vec![Err(e); batch.items.len()],
        };
        for ((item, request), result) in batch.items.iter().zip(&batch.requests).zip(results) {
            match *item {
                Item::Number(id) => {
                    phones.insert(id, result.and_then(|v| decode_number(request, v)));
                }
                Item::Waba(id) => {
                    apps.insert(
                        (batch.token, id),
                        result.and_then(|v| decode_apps(request, &v)),
                    );
                }
            }
        }
    }
    numbers
        .iter()
        .zip(handshakes)
        .map(|(p, handshake)| {
            let name = p.access_token_secret.as_str();
            let access_token = match secrets.get(name) {
                Some(Ok(t)) => t.clone(),
                Some(Err(e)) => return (Observation::NoAccessToken(e.clone()), None),
                None => return (Observation::NoAccessToken(not_read(name)), None),
            };
            let verify_token = p
                .webhook
                .as_ref()
                .and(p.verify_token_secret.as_ref())
                .and_then(|v| secrets.get(v.as_str())?.as_ref().ok().cloned());
            let reads = GraphReads {
                number: phones
                    .remove(p.phone_number_id.as_str())
                    .unwrap_or_else(|| Err(unfinished(format!("GET {}", p.phone_number_id)))),
                apps: apps
                    .get(&(name, p.waba_id.as_str()))
                    .cloned()
                    .unwrap_or_else(|| {
                        Err(unfinished(format!("GET {}/subscribed_apps", p.waba_id)))
                    }),
                token: token_infos
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Err(unfinished("GET debug_token".into()))),
                handshake,
            };
            (
                Observation::Read(Box::new(reads)),
                Some(Secrets {
                    access_token,
                    verify_token,
                }),
            )
        })
        .collect()
}

/// Every Secret Manager version the entries name (the access tokens, and the verify tokens of
/// entries with a `webhookUrl`), each read once.
async fn read_secrets(
    r: &Readers<'_>,
    numbers: &[CloudPayload],
    deadline: Instant,
) -> HashMap<String, Result<SecretString, GoogleError>> {
    let mut names: BTreeMap<&str, &SecretVersion> = BTreeMap::new();
    for p in numbers {
        names.insert(p.access_token_secret.as_str(), &p.access_token_secret);
        if let (Some(_), Some(v)) = (&p.webhook, &p.verify_token_secret) {
            names.insert(v.as_str(), v);
        }
    }
    let names: Vec<&SecretVersion> = names.into_values().collect();
    let names = &names;
    // By index: a closure over borrowed items trips the compiler's Send check in `serve`.
    stream::iter(0..names.len())
        .map(|i| async move {
            (
                names[i].as_str().to_string(),
                r.secrets.access(names[i], Some(deadline)).await,
            )
        })
        .buffer_unordered(SECRET_READS_AT_ONCE)
        .collect()
        .await
}

/// Per token: its numbers, then its WABAs (each once), in batches of at most 50.
fn plan_batches<'a>(
    numbers: &'a [CloudPayload],
    tokens: &BTreeMap<&'a str, &SecretString>,
) -> Vec<Batch<'a>> {
    let mut per_token: BTreeMap<&'a str, (Vec<&'a str>, BTreeSet<&'a str>)> = BTreeMap::new();
    for p in numbers {
        let name = p.access_token_secret.as_str();
        if tokens.contains_key(name) {
            let (ids, wabas) = per_token.entry(name).or_default();
            ids.push(&p.phone_number_id);
            wabas.insert(&p.waba_id);
        }
    }
    let mut batches = Vec::new();
    for (token, (ids, wabas)) in per_token {
        let items: Vec<Item<'a>> = ids
            .into_iter()
            .map(Item::Number)
            .chain(wabas.into_iter().map(Item::Waba))
            .collect();
        for chunk in items.chunks(MAX_BATCH_REQUESTS) {
            // Ids are digits (the payload says so), so each request is well formed.
            let (items, requests): (Vec<Item<'a>>, Vec<BatchRequest>) = chunk
                .iter()
                .filter_map(|item| {
                    let request = match *item {
                        Item::Number(id) => BatchRequest::phone_number(id),
                        Item::Waba(id) => BatchRequest::subscribed_apps(id),
                    };
                    request.ok().map(|r| (*item, r))
                })
                .unzip();
            if !requests.is_empty() {
                batches.push(Batch {
                    token,
                    items,
                    requests,
                });
            }
        }
    }
    batches
}

fn decode_number(request: &BatchRequest, v: serde_json::Value) -> Read<PhoneNumber> {
    serde_json::from_value(v).map_err(|e| GraphError::Decode {
        what: request.what(),
        detail: e.to_string(),
    })
}

fn decode_apps(request: &BatchRequest, v: &serde_json::Value) -> Read<Vec<SubscribedApp>> {
    SubscribedApp::parse_list(v).map_err(|detail| GraphError::Decode {
        what: request.what(),
        detail,
    })
}

/// A read the batches did not answer (cannot happen: every item has a result).
fn unfinished(what: String) -> GraphError {
    GraphError::Unfinished { what }
}

/// A secret that was not in the reads (cannot happen: every named one is read).
fn not_read(name: &str) -> GoogleError {
    GoogleError::Deadline {
        what: format!("reading {name}"),
    }
}
