//! Graph batch requests: up to 50 requests in one `POST /{version}/`, one result per request
//! in order. A failed item carries its own code and body; a `null` item was not finished.

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::client::{check_id, RequestBody};
use super::{GraphClient, GraphError, PHONE_NUMBER_FIELDS};

/// Meta's limit of requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 50;

/// One request of a batch; `relative_url` is relative to the version (`1234?fields=id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    pub method: Method,
    pub relative_url: String,
    /// A form-encoded body, for POSTs.
    pub body: Option<String>,
}

/// One result per request of a batch, in order.
pub type BatchResults = Vec<Result<Value, GraphError>>;

impl BatchRequest {
    pub fn get(relative_url: impl Into<String>) -> Self {
        BatchRequest {
            method: Method::GET,
            relative_url: relative_url.into(),
            body: None,
        }
    }

    /// The number's read of [`GraphClient::phone_number`]; decode the answer into
    /// [`PhoneNumber`](super::PhoneNumber).
    pub fn phone_number(phone_number_id: &str) -> Result<Self, GraphError> {
        check_id("phone number id", phone_number_id)?;
        Ok(Self::get(format!(
            "{phone_number_id}?fields={PHONE_NUMBER_FIELDS}"
        )))
    }

    /// The WABA's `subscribed_apps`; read the answer with
    /// [`SubscribedApp::parse_list`](super::SubscribedApp::parse_list).
    pub fn subscribed_apps(waba_id: &str) -> Result<Self, GraphError> {
        check_id("WABA id", waba_id)?;
        Ok(Self::get(format!("{waba_id}/subscribed_apps")))
    }

    /// `GET 1234` for messages: the path without its query.
    pub fn what(&self) -> String {
        let path = self.relative_url.split('?').next().unwrap_or_default();
        format!("{} {path} (batch)", self.method)
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"method": self.method.as_str(), "relative_url": self.relative_url});
        if let Some(b) = &self.body {
            v["body"] = Value::String(b.clone());
        }
        v
    }
}

impl GraphClient {
    /// One batch call, never retried (its items may change things). The outer `Err` is the
    /// call's own failure (e.g. the token is invalid); otherwise one result per request.
    pub async fn batch(
        &self,
        token: &SecretString,
        requests: &[BatchRequest],
        deadline: Option<Instant>,
    ) -> Result<BatchResults, GraphError> {
        check_batch(requests)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "batch",
                &Value::Array(requests.iter().map(BatchRequest::to_json).collect()).to_string(),
            )
            .append_pair("include_headers", "false")
            .finish();
        let what = format!("POST batch of {}", requests.len());
        let answer = self
            .attempt(
                token,
                Method::POST,
                &self.url(&[""]),
                &what,
                Some(RequestBody::Form(&form)),
                deadline,
            )
            .await?;
        parse_batch_answer(requests, &answer).map_err(|detail| GraphError::Decode { what, detail })
    }

    /// A batch of GETs, retried within the policy and `deadline`: the whole call when it
    /// fails retryably, then only the items that failed retryably (or were unfinished).
    /// Items still failing keep their last error.
    pub async fn batch_read(
        &self,
        token: &SecretString,
        requests: &[BatchRequest],
        deadline: Option<Instant>,
    ) -> Result<BatchResults, GraphError> {
        if let Some(r) = requests.iter().find(|r| r.method != Method::GET) {
            return Err(GraphError::Invalid {
                what: r.what(),
                detail: "batch_read sends only GETs; use batch".into(),
            });
        }
        check_batch(requests)?;
        let mut results: Vec<Option<Result<Value, GraphError>>> = vec![None; requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let policy = self.retry_policy();
        let mut attempt = 1;
        loop {
            let subset: Vec<BatchRequest> = pending.iter().map(|&i| requests[i].clone()).collect();
            let outcome = self.batch(token, &subset, deadline).await;
            let last_error = match outcome {
                Ok(items) => {
                    for (&i, item) in pending.iter().zip(items) {
                        results[i] = Some(item);
                    }
                    pending.retain(|&i| matches!(&results[i], Some(Err(e)) if e.is_retryable()));
                    None
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => Some(e),
            };
            let pause = policy.backoff(attempt);
            let out_of_time = deadline.is_some_and(|d| Instant::now() + pause >= d);
            if pending.is_empty() || attempt >= policy.max_attempts || out_of_time {
                if let Some(e) = last_error {
                    if results.iter().all(Option::is_none) {
                        return Err(e);
                    }
                    for &i in &pending {
                        results[i] = Some(Err(e.clone()));
                    }
                }
                return Ok(results
                    .into_iter()
                    .map(|r| {
                        r.unwrap_or_else(|| {
                            Err(GraphError::Unfinished {
                                what: "batch item".into(),
                            })
                        })
                    })
                    .collect());
            }
            tracing::warn!(
                pending = pending.len(),
                attempt,
                pause_ms = pause.as_millis() as u64,
                "retrying Graph batch items"
            );
            self.pause(pause).await;
            attempt += 1;
        }
    }
}

fn check_batch(requests: &[BatchRequest]) -> Result<(), GraphError> {
    let what = || format!("POST batch of {}", requests.len());
    if requests.is_empty() || requests.len() > MAX_BATCH_REQUESTS {
        return Err(GraphError::Invalid {
            what: what(),
            detail: format!("a batch holds 1 to {MAX_BATCH_REQUESTS} requests"),
        });
    }
    // The token goes only in the header, never in a URL or a body.
    if requests.iter().any(|r| {
        r.relative_url.contains("access_token")
            || r.body
                .as_deref()
                .is_some_and(|b| b.contains("access_token"))
    }) {
        return Err(GraphError::Invalid {
            what: what(),
            detail: "a batch request carries `access_token`".into(),
        });
    }
    Ok(())
}

/// Reads Meta's answer: an array, in order, of `{"code", "headers", "body": "<JSON>"}` or
/// `null` (not finished). An answer of another length is an error for the whole batch.
pub fn parse_batch_answer(
    requests: &[BatchRequest],
    answer: &Value,
) -> Result<BatchResults, String> {
    let items = answer.as_array().ok_or("the answer is not an array")?;
    if items.len() != requests.len() {
        return Err(format!(
            "{} answers to {} requests",
            items.len(),
            requests.len()
        ));
    }
    Ok(requests
        .iter()
        .zip(items)
        .map(|(req, item)| parse_item(&req.what(), item))
        .collect())
}

fn parse_item(what: &str, item: &Value) -> Result<Value, GraphError> {
    if item.is_null() {
        return Err(GraphError::Unfinished { what: what.into() });
    }
    let bad = |detail: &str| GraphError::Decode {
        what: what.into(),
        detail: detail.into(),
    };
    let code = item
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .ok_or_else(|| bad("an item without a `code`"))?;
    let body = match item.get("body") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => "",
        Some(_) => return Err(bad("an item whose `body` is not a string")),
    };
    if !(200..300).contains(&code) {
        return Err(GraphError::from_response(what, code, body.as_bytes()));
    }
    if body.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(body).map_err(|_| bad("an item whose `body` is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_items_map_in_order() {
        let reqs = vec![
            BatchRequest::phone_number("1").unwrap(),
            BatchRequest::phone_number("2").unwrap(),
            BatchRequest::subscribed_apps("9").unwrap(),
            BatchRequest::get("3"),
        ];
        let answer = json!([
            {"code": 200, "headers": [], "body": "{\"id\":\"1\"}"},
            {"code": 400, "body": "{\"error\":{\"message\":\"(#100) Unknown\",\"code\":100,\"fbtrace_id\":\"t\"}}"},
            {"code": 503, "body": "{\"error\":{\"message\":\"down\",\"code\":2}}"},
            null
        ]);
        let r = parse_batch_answer(&reqs, &answer).unwrap();
        assert_eq!(r[0].as_ref().unwrap()["id"], "1");
        let e = r[1].as_ref().unwrap_err();
        assert!(e.is_unknown_request() && !e.is_retryable());
        assert_eq!(e.status(), Some(400));
        assert!(e.to_string().contains("GET 2 (batch)"), "{e}");
        assert!(!e.to_string().contains("fields"), "{e}");
        assert!(r[2].as_ref().unwrap_err().is_retryable());
        assert!(matches!(r[3], Err(GraphError::Unfinished { .. })));
        assert!(r[3].as_ref().unwrap_err().is_retryable());
    }

    #[test]
    fn malformed_answers() {
        let reqs = vec![BatchRequest::get("1")];
        assert!(parse_batch_answer(&reqs, &json!({})).is_err());
        assert!(parse_batch_answer(&reqs, &json!([])).is_err());
        let r = parse_batch_answer(&reqs, &json!([{"body": "{}"}])).unwrap();
        assert!(matches!(r[0], Err(GraphError::Decode { .. })));
        let r = parse_batch_answer(&reqs, &json!([{"code": 200, "body": "nope"}])).unwrap();
        assert!(matches!(r[0], Err(GraphError::Decode { .. })));
    }

    #[test]
    fn batch_limits() {
        assert!(check_batch(&[]).is_err());
        let fifty = vec![BatchRequest::get("1"); 50];
        assert!(check_batch(&fifty).is_ok());
        let too_many = vec![BatchRequest::get("1"); 51];
        let e = check_batch(&too_many).unwrap_err();
        assert!(e.to_string().contains("1 to 50"), "{e}");
        assert!(check_batch(&[BatchRequest::get("1?access_token=x")]).is_err());
        assert!(BatchRequest::phone_number("12/../x").is_err());
    }
}
