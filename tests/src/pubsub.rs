//! A fake of the Pub/Sub emulator (`PUBSUB_EMULATOR_HOST=127.0.0.1:PORT`): one TCP port on
//! `127.0.0.1` serving both
//!
//! - the Pub/Sub v1 REST API (HTTP/1.1, JSON with camelCase fields) that the admin clients of
//!   the `google-cloud-pubsub` crate use (`TopicAdmin`, `SubscriptionAdmin`, and the IAM
//!   methods of `SchemaService`): topics, subscriptions (with the real API's validation),
//!   update masks, IAM policies;
//! - gRPC over cleartext HTTP/2 (h2c, prior knowledge) for
//!   `google.pubsub.v1.Publisher/Publish`, which the crate's `Publisher` uses.
//!
//! Like the emulator it requires no authentication (the headers are recorded all the same),
//! and it does not deliver anything: published messages are kept for the test to inspect
//! ([`FakePubSub::published`]). Faults can be injected on either protocol
//! ([`FakePubSub::fail_publish_next`], [`FakePubSub::fail_rest_next`],
//! [`FakePubSub::hang_publish`]).
//!
//! It runs on the fakes' shared runtime (see [`crate::server`]), so it keeps answering while
//! a test thread blocks, sets `TCP_NODELAY` on every connection, and shuts down when dropped.
//!
//! Pointing the crate at it: the crate does not read `PUBSUB_EMULATOR_HOST` itself; give
//! every client builder `.with_endpoint(fake.url())` and anonymous credentials
//! (`google_cloud_auth::credentials::anonymous::Builder::new().build()`).

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use prost::Message as _;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use crate::rest::{camel_case, percent_decode};
use crate::server::{lock, runtime, RecordedRequest};

/// The gRPC path of `Publish`.
pub const PUBLISH_PATH: &str = "/google.pubsub.v1.Publisher/Publish";

/// Largest request body the fake reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The etag of a resource without an IAM policy (what the real API answers).
const EMPTY_POLICY_ETAG: &str = "ACAB";

/// Subscription defaults the real API fills in.
const DEFAULT_ACK_DEADLINE_SECONDS: i64 = 10;
const DEFAULT_SUBSCRIPTION_RETENTION: &str = "604800s";

/// gRPC status codes used by the fake.
const GRPC_OK: i32 = 0;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_NOT_FOUND: i32 = 5;
const GRPC_UNIMPLEMENTED: i32 = 12;
const GRPC_INTERNAL: i32 = 13;
const GRPC_UNAVAILABLE: i32 = 14;

/// `google.pubsub.v1.PublishRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishRequest {
    /// Full topic name, `projects/P/topics/T`.
    #[prost(string, tag = "1")]
    pub topic: String,
    /// The messages to publish.
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<PubsubMessage>,
}

/// `google.pubsub.v1.PubsubMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PubsubMessage {
    /// The payload.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    /// The attributes.
    #[prost(btree_map = "string, string", tag = "2")]
    pub attributes: BTreeMap<String, String>,
    /// Set by the server (ignored in a publish request).
    #[prost(string, tag = "3")]
    pub message_id: String,
    /// Set by the server (ignored in a publish request).
    #[prost(message, optional, tag = "4")]
    pub publish_time: Option<Timestamp>,
    /// The ordering key (empty: none).
    #[prost(string, tag = "5")]
    pub ordering_key: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.pubsub.v1.PublishResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishResponse {
    /// The server-assigned ids, in the order of the request's messages.
    #[prost(string, repeated, tag = "1")]
    pub message_ids: Vec<String>,
}

/// Decodes the body of a recorded gRPC `Publish` call (see [`FakePubSub::requests`]): one
/// length-prefixed, uncompressed message.
pub fn decode_publish_request(body: &[u8]) -> Option<PublishRequest> {
    match grpc_messages(body).ok()?.as_slice() {
        [one] => PublishRequest::decode(*one).ok(),
        _ => None,
    }
}

/// A message the fake accepted on `Publish`.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedMessage {
    /// Full topic name, `projects/P/topics/T`.
    pub topic: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: BTreeMap<String, String>,
    /// The id the fake assigned (and answered).
    pub message_id: String,
    /// The ordering key (empty: none).
    pub ordering_key: String,
    /// When the fake accepted it.
    pub publish_time: OffsetDateTime,
}

impl PublishedMessage {
    /// The payload parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.data).ok()
    }

    /// The payload as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
    published: Vec<PublishedMessage>,
    requests: Vec<RecordedRequest>,
    /// gRPC status codes the next `Publish` calls answer, first first.
    publish_faults: VecDeque<i32>,
    /// HTTP statuses the next REST calls answer, first first.
    rest_faults: VecDeque<u16>,
    last_message_id: u64,
    last_etag: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Whether `Publish` hangs (calls already hanging go on when it turns false).
    hang: watch::Sender<bool>,
    /// Turns true when the fake is dropped (releases hanging calls).
    shutdown: watch::Sender<bool>,
}

/// A fake Pub/Sub emulator on `127.0.0.1` (REST and gRPC on one port). Shuts down when
/// dropped.
pub struct FakePubSub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakePubSub {
    /// Binds an ephemeral port on `127.0.0.1` and serves on the fakes' shared runtime.
    pub async fn start() -> FakePubSub {
        let listener = bind().expect("bind the Pub/Sub fake");
        let addr = listener
            .local_addr()
            .expect("local address of the Pub/Sub fake");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            hang: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
        });
        let task = runtime().spawn(accept_loop(listener, shared.clone()));
        FakePubSub { addr, shared, task }
    }

    /// `127.0.0.1:PORT`, the value of `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the crate's client builders.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[("PUBSUB_EMULATOR_HOST", host)]`, for a child process's environment.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("PUBSUB_EMULATOR_HOST".to_owned(), self.host())]
    }

    /// Creates a topic (full name `projects/P/topics/T`) as if through the API; does nothing
    /// if it exists.
    pub fn add_topic(&self, name: &str) {
        lock(&self.shared.state)
            .topics
            .entry(name.to_owned())
            .or_insert_with(|| json!({ "name": name }));
    }

    /// Stores a subscription (full name `projects/P/subscriptions/S`) as is, with `name` set
    /// and the API's defaults filled in, without validation (replaces any existing one).
    pub fn add_subscription(&self, name: &str, subscription: Value) {
        let mut sub = match subscription {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        sub.insert("name".into(), name.into());
        fill_subscription_defaults(&mut sub);
        lock(&self.shared.state)
            .subscriptions
            .insert(name.to_owned(), Value::Object(sub));
    }

    /// A topic as the API would answer it.
    pub fn topic(&self, name: &str) -> Option<Value> {
        lock(&self.shared.state).topics.get(name).cloned()
    }

    /// The full names of every topic, sorted.
    pub fn topics(&self) -> Vec<String> {
        lock(&self.shared.state).topics.keys().cloned().collect()
    }

    /// A subscription as the API would answer it (the JSON received, with `name` and the
    /// defaults `ackDeadlineSeconds` 10 and `messageRetentionDuration` `"604800s"`).
    pub fn subscription(&self, name: &str) -> Option<Value> {
        lock(&self.shared.state).subscriptions.get(name).cloned()
    }

    /// The full names of every subscription, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.shared.state)
            .subscriptions
            .keys()
            .cloned()
            .collect()
    }

    /// The IAM policy set on a topic or subscription (full name), if any.
    pub fn iam_policy(&self, resource: &str) -> Option<Value> {
        lock(&self.shared.state).policies.get(resource).cloned()
    }

    /// Every message accepted by `Publish`, oldest first.
    pub fn published(&self) -> Vec<PublishedMessage> {
        lock(&self.shared.state).published.clone()
    }

    /// Forgets the published messages.
    pub fn clear_published(&self) {
        lock(&self.shared.state).published.clear();
    }

    /// Every request received (REST and gRPC; a gRPC call's path is e.g. [`PUBLISH_PATH`]
    /// and its body the length-prefixed protobuf), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// The recorded gRPC `Publish` calls, decoded (undecodable ones left out).
    pub fn publish_requests(&self) -> Vec<PublishRequest> {
        lock(&self.shared.state)
            .requests
            .iter()
            .filter(|r| r.path == PUBLISH_PATH)
            .filter_map(|r| decode_publish_request(&r.body))
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.state).requests.clear();
    }

    /// Makes the next `n` `Publish` calls answer the gRPC status `grpc_code` (e.g. 14
    /// UNAVAILABLE) without publishing anything.
    pub fn fail_publish_next(&self, n: usize, grpc_code: i32) {
        lock(&self.shared.state)
            .publish_faults
            .extend(std::iter::repeat_n(grpc_code, n));
    }

    /// Makes the next REST call (whatever it is) answer `status` with Google's error shape
    /// (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE, 403 PERMISSION_DENIED, ...).
    /// Calls queue up: two calls fail the next two requests.
    pub fn fail_rest_next(&self, status: u16) {
        lock(&self.shared.state).rest_faults.push_back(status);
    }

    /// Whether `Publish` calls hang (no answer at all). Turning it off lets the calls that
    /// were hanging go on normally.
    pub fn hang_publish(&self, hang: bool) {
        self.shared.hang.send_replace(hang);
    }
}

impl Drop for FakePubSub {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        // Aborting the accept task drops the listener and the connection tasks.
        self.task.abort();
    }
}

impl std::fmt::Debug for FakePubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePubSub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn bind() -> io::Result<TcpListener> {
    // Register the listener with the fakes' runtime, not the caller's.
    let _enter = runtime().enter();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                Err(err) => {
                    tracing::debug!(%err, "Pub/Sub fake: accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

type Body = BoxBody<Bytes, Infallible>;

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "Pub/Sub fake: TCP_NODELAY failed");
    }
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    // HTTP/1.1 (REST) and HTTP/2 with prior knowledge (gRPC) on the same port.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Headers and body copied into one buffer, written with one write.
    builder.http1().writev(false);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let is_grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) if is_grpc => return grpc_status(GRPC_INTERNAL, "could not read the request"),
        Err(_) => return google_error(400, "could not read the request body").response(),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path_and_query,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        received_at: Instant::now(),
    };
    lock(&shared.state).requests.push(recorded);
    if is_grpc {
        grpc(shared, parts.uri.path(), &body).await
    } else {
        rest(
            shared,
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &body,
        )
    }
}

// ---------------------------------------------------------------------------------------
// gRPC

async fn grpc(shared: &Shared, path: &str, body: &[u8]) -> Response<Body> {
    if path != PUBLISH_PATH {
        return grpc_status(GRPC_UNIMPLEMENTED, &format!("Method not found: {path}"));
    }
    if *shared.hang.borrow() {
        let mut hang = shared.hang.subscribe();
        let mut shutdown = shared.shutdown.subscribe();
        tokio::select! {
            () = async { let _ = hang.wait_for(|h| !*h).await; } => {}
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                return grpc_status(GRPC_UNAVAILABLE, "the fake is shutting down");
            }
        }
    }
    let req = match grpc_messages(body).as_deref() {
        Ok([one]) => match PublishRequest::decode(*one) {
            Ok(req) => req,
            Err(err) => return grpc_status(GRPC_INTERNAL, &format!("bad PublishRequest: {err}")),
        },
        Ok(many) => {
            let msg = format!("expected one request message, got {}", many.len());
            return grpc_status(GRPC_INTERNAL, &msg);
        }
        Err(msg) => return grpc_status(GRPC_INTERNAL, msg),
    };

    let mut st = lock(&shared.state);
    if let Some(code) = st.publish_faults.pop_front() {
        return grpc_status(code, "fault injected by the fake");
    }
    if split_name(&req.topic, "topics").is_none() {
        return grpc_status(
            GRPC_INVALID_ARGUMENT,
            &format!("Invalid [topics] name: (name={})", req.topic),
        );
    }
    if !st.topics.contains_key(&req.topic) {
        return grpc_status(GRPC_NOT_FOUND, "Topic not found");
    }
    if req.messages.is_empty() {
        return grpc_status(
            GRPC_INVALID_ARGUMENT,
            "The request must contain at least one message.",
        );
    }
    if req
        .messages
        .iter()
        .any(|m| m.data.is_empty() && m.attributes.is_empty())
    {
        return grpc_status(
            GRPC_INVALID_ARGUMENT,
            "Some messages have neither data nor attributes.",
        );
    }
    let publish_time = OffsetDateTime::now_utc();
    let mut message_ids = Vec::with_capacity(req.messages.len());
    for m in req.messages {
        st.last_message_id += 1;
        let message_id = st.last_message_id.to_string();
        message_ids.push(message_id.clone());
        st.published.push(PublishedMessage {
            topic: req.topic.clone(),
            data: m.data,
            attributes: m.attributes,
            message_id,
            ordering_key: m.ordering_key,
            publish_time,
        });
    }
    drop(st);
    grpc_ok(&PublishResponse { message_ids })
}

/// Splits a gRPC body into its length-prefixed messages.
fn grpc_messages(mut body: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err("truncated gRPC message header");
        }
        if body[0] != 0 {
            return Err("compressed gRPC messages are not supported by the fake");
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let Some(message) = body.get(5..5 + len) else {
            return Err("truncated gRPC message");
        };
        out.push(message);
        body = &body[5 + len..];
    }
    Ok(out)
}

/// A successful unary answer: one length-prefixed message, then trailers `grpc-status: 0`.
fn grpc_ok(message: &impl prost::Message) -> Response<Body> {
    let encoded = message.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + encoded.len());
    framed.put_u8(0);
    framed.put_u32(encoded.len() as u32);
    framed.put_slice(&encoded);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(GRPC_OK));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(framed.freeze())),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// A trailers-only answer: HTTP 200, `grpc-status` and `grpc-message` in the headers, no
/// body.
fn grpc_status(code: i32, message: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(message)) {
        headers.insert("grpc-message", v);
    }
    resp
}

/// `grpc-message` encoding: percent-encode `%` and anything outside printable ASCII.
fn grpc_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// REST

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// The canonical status name Google's REST APIs put in an error for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// A Google API error, answered as `{"error":{"code":N,"message":...,"status":...}}`.
#[derive(Debug)]
struct ApiError {
    status: u16,
    name: &'static str,
    message: String,
}

impl ApiError {
    fn response(&self) -> Response<Body> {
        json_response(
            self.status,
            &json!({ "error": { "code": self.status, "message": self.message, "status": self.name } }),
        )
    }
}

fn google_error(status: u16, message: &str) -> ApiError {
    google_error_named(status, status_name(status), message)
}

fn google_error_named(status: u16, name: &'static str, message: &str) -> ApiError {
    ApiError {
        status,
        name,
        message: message.to_owned(),
    }
}

fn not_found(what: &str) -> ApiError {
    google_error(404, &format!("{what} not found"))
}

fn invalid(message: &str) -> ApiError {
    google_error(400, message)
}

type RestResult = Result<Response<Body>, ApiError>;

fn rest(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> Response<Body> {
    let mut st = lock(&shared.state);
    if let Some(status) = st.rest_faults.pop_front() {
        return google_error(status, "fault injected by the fake").response();
    }
    match route(&mut st, method, &percent_decode(path), query, body) {
        Ok(resp) => resp,
        Err(err) => err.response(),
    }
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> RestResult {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(google_error(404, &format!("Not found: {path}")));
    };
    let (resource, action) = match rest.rsplit_once(':') {
        Some((resource, action)) if !action.contains('/') => (resource, Some(action)),
        _ => (rest, None),
    };
    let segments: Vec<&str> = resource.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(google_error(404, &format!("Not found: {path}")));
    }
    let m = method.as_str();
    match (segments.as_slice(), action, m) {
        (["projects", project, "topics"], None, "GET") => {
            let prefix = format!("projects/{project}/topics/");
            let topics: Vec<&Value> = st
                .topics
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(_, t)| t)
                .collect();
            Ok(json_response(200, &list_body("topics", topics)))
        }
        (["projects", project, "subscriptions"], None, "GET") => {
            let prefix = format!("projects/{project}/subscriptions/");
            let subs: Vec<&Value> = st
                .subscriptions
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(_, s)| s)
                .collect();
            Ok(json_response(200, &list_body("subscriptions", subs)))
        }
        (["projects", _, "topics", _, "subscriptions"], None, "GET") => {
            let topic = segments[..4].join("/");
            if !st.topics.contains_key(&topic) {
                return Err(not_found("Topic"));
            }
            let subs: Vec<&String> = st
                .subscriptions
                .iter()
                .filter(|(_, s)| s["topic"] == topic.as_str())
                .map(|(name, _)| name)
                .collect();
            Ok(json_response(200, &list_body("subscriptions", subs)))
        }
        (["projects", _, "topics", _], None, _) => topic_route(st, m, resource, body),
        (["projects", _, "subscriptions", _], None, _) => {
            subscription_route(st, m, resource, query, body)
        }
        (["projects", _, "topics" | "subscriptions", _], Some("setIamPolicy"), "POST") => {
            set_iam_policy(st, resource, body)
        }
        (["projects", _, "topics" | "subscriptions", _], Some("getIamPolicy"), "GET" | "POST") => {
            resource_exists(st, resource)?;
            let policy = st
                .policies
                .get(resource)
                .cloned()
                .unwrap_or_else(|| json!({ "etag": EMPTY_POLICY_ETAG }));
            Ok(json_response(200, &policy))
        }
        _ => Err(google_error(404, &format!("Not found: {m} {path}"))),
    }
}

fn list_body<T: serde::Serialize>(field: &str, items: Vec<T>) -> Value {
    if items.is_empty() {
        json!({})
    } else {
        json!({ field: items })
    }
}

fn resource_exists(st: &State, resource: &str) -> Result<(), ApiError> {
    if resource.contains("/topics/") {
        st.topics
            .contains_key(resource)
            .then_some(())
            .ok_or_else(|| not_found("Topic"))
    } else {
        st.subscriptions
            .contains_key(resource)
            .then_some(())
            .ok_or_else(|| not_found("Subscription"))
    }
}

/// The request body as a JSON object (an empty body is `{}`); 400 otherwise.
fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(
            "Invalid JSON payload received. Expected an object.",
        )),
        Err(err) => Err(invalid(&format!("Invalid JSON payload received. {err}"))),
    }
}

fn topic_route(st: &mut State, method: &str, name: &str, body: &Bytes) -> RestResult {
    match method {
        "PUT" => {
            let mut topic = body_object(body)?;
            // The crate moves `name` into the path; the path wins.
            topic.insert("name".into(), name.into());
            validate_topic(&topic)?;
            if st.topics.contains_key(name) {
                return Err(google_error(409, "Topic already exists"));
            }
            let topic = Value::Object(topic);
            st.topics.insert(name.to_owned(), topic.clone());
            Ok(json_response(200, &topic))
        }
        "GET" => st
            .topics
            .get(name)
            .map(|t| json_response(200, t))
            .ok_or_else(|| not_found("Topic")),
        "PATCH" => {
            let req = body_object(body)?;
            let Some(Value::Object(new)) = req.get("topic") else {
                return Err(invalid("topic must be set"));
            };
            let mask = update_mask(&req, None)?;
            let Some(Value::Object(existing)) = st.topics.get(name) else {
                return Err(not_found("Topic"));
            };
            let mut updated = existing.clone();
            for path in &mask {
                if path == "name" {
                    return Err(invalid("name cannot be updated"));
                }
                apply_mask_path(&mut updated, new, path);
            }
            validate_topic(&updated)?;
            let updated = Value::Object(updated);
            st.topics.insert(name.to_owned(), updated.clone());
            Ok(json_response(200, &updated))
        }
        "DELETE" => {
            if st.topics.remove(name).is_none() {
                return Err(not_found("Topic"));
            }
            st.policies.remove(name);
            // Like the real API: the subscriptions stay, detached from any topic.
            for sub in st.subscriptions.values_mut() {
                if sub["topic"] == name {
                    sub["topic"] = "_deleted-topic_".into();
                }
            }
            Ok(json_response(200, &json!({})))
        }
        _ => Err(google_error(
            404,
            &format!("Not found: {method} /v1/{name}"),
        )),
    }
}

fn subscription_route(
    st: &mut State,
    method: &str,
    name: &str,
    query: Option<&str>,
    body: &Bytes,
) -> RestResult {
    match method {
        "PUT" => {
            let mut sub = body_object(body)?;
            sub.insert("name".into(), name.into());
            let topic = sub.get("topic").and_then(Value::as_str).unwrap_or_default();
            if topic.is_empty() {
                return Err(invalid("topic must be set"));
            }
            validate_subscription(st, &sub)?;
            if !st.topics.contains_key(topic) {
                return Err(not_found("Topic"));
            }
            if st.subscriptions.contains_key(name) {
                return Err(google_error(409, "Subscription already exists"));
            }
            fill_subscription_defaults(&mut sub);
            let sub = Value::Object(sub);
            st.subscriptions.insert(name.to_owned(), sub.clone());
            Ok(json_response(200, &sub))
        }
        "GET" => st
            .subscriptions
            .get(name)
            .map(|s| json_response(200, s))
            .ok_or_else(|| not_found("Subscription")),
        "PATCH" => {
            let req = body_object(body)?;
            let Some(Value::Object(new)) = req.get("subscription") else {
                return Err(invalid("subscription must be set"));
            };
            let mask = update_mask(&req, query)?;
            let Some(Value::Object(existing)) = st.subscriptions.get(name) else {
                return Err(not_found("Subscription"));
            };
            let mut updated = existing.clone();
            for path in &mask {
                if path == "name" || path == "topic" || path.starts_with("topic.") {
                    return Err(invalid(&format!("{path} cannot be updated")));
                }
                apply_mask_path(&mut updated, new, path);
            }
            validate_subscription(st, &updated)?;
            fill_subscription_defaults(&mut updated);
            let updated = Value::Object(updated);
            st.subscriptions.insert(name.to_owned(), updated.clone());
            Ok(json_response(200, &updated))
        }
        "DELETE" => {
            if st.subscriptions.remove(name).is_none() {
                return Err(not_found("Subscription"));
            }
            st.policies.remove(name);
            Ok(json_response(200, &json!({})))
        }
        _ => Err(google_error(
            404,
            &format!("Not found: {method} /v1/{name}"),
        )),
    }
}

fn set_iam_policy(st: &mut State, resource: &str, body: &Bytes) -> RestResult {
    let req = body_object(body)?;
    resource_exists(st, resource)?;
    let Some(Value::Object(policy)) = req.get("policy") else {
        return Err(invalid("policy must be set"));
    };
    let current = st
        .policies
        .get(resource)
        .and_then(|p| p["etag"].as_str())
        .unwrap_or(EMPTY_POLICY_ETAG);
    if let Some(etag) = policy.get("etag").and_then(Value::as_str) {
        if !etag.is_empty() && etag != current {
            return Err(google_error_named(
                409,
                "ABORTED",
                "There were concurrent policy changes. Please retry the whole \
                 read-modify-write with exponential backoff.",
            ));
        }
    }
    st.last_etag += 1;
    let mut policy = policy.clone();
    policy.insert(
        "etag".into(),
        base64::engine::general_purpose::STANDARD
            .encode(st.last_etag.to_be_bytes())
            .into(),
    );
    let policy = Value::Object(policy);
    st.policies.insert(resource.to_owned(), policy.clone());
    Ok(json_response(200, &policy))
}

/// The paths of the update mask (camelCase), from the body's `updateMask` (a
/// comma-separated string, or `{"paths": [...]}`) or the `updateMask` query parameter.
fn update_mask(req: &Map<String, Value>, query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let raw: Vec<String> = match req.get("updateMask") {
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Object(o)) => o
            .get("paths")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        _ => crate::server::query_param(query, "updateMask")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let paths: Vec<String> = raw
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(camel_case)
        .collect();
    if paths.is_empty() {
        return Err(invalid("update_mask must be set and not empty"));
    }
    Ok(paths)
}

/// Field-mask semantics for one dotted path: the value in `new` replaces the one in
/// `target`; absent in `new`, the field is cleared.
fn apply_mask_path(target: &mut Map<String, Value>, new: &Map<String, Value>, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut value = Some(new);
    let mut found: Option<&Value> = None;
    for (i, part) in parts.iter().enumerate() {
        let Some(obj) = value else { break };
        match obj.get(*part) {
            Some(v) if i + 1 == parts.len() => found = Some(v),
            Some(Value::Object(o)) => value = Some(o),
            _ => value = None,
        }
    }
    set_path(target, &parts, found.cloned());
}

fn set_path(target: &mut Map<String, Value>, parts: &[&str], value: Option<Value>) {
    match parts {
        [] => {}
        [last] => {
            match value {
                Some(v) => target.insert((*last).to_owned(), v),
                None => target.remove(*last),
            };
        }
        [first, rest @ ..] => {
            if value.is_none() && !target.contains_key(*first) {
                return;
            }
            let entry = target
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(child) = entry {
                set_path(child, rest, value);
            }
        }
    }
}

/// `"600s"`, `"1.5s"` (protobuf JSON duration) in seconds.
fn parse_duration(v: &Value) -> Option<f64> {
    let s = v.as_str()?.strip_suffix('s')?;
    let secs: f64 = s.parse().ok()?;
    secs.is_finite().then_some(secs)
}

/// An int32 field: a JSON number, or a string holding one.
fn int_field(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn duration_in(
    obj: &Map<String, Value>,
    field: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ApiError> {
    let Some(v) = obj.get(field) else {
        return Ok(None);
    };
    match parse_duration(v) {
        Some(secs) if (min..=max).contains(&secs) => Ok(Some(secs)),
        Some(_) => Err(invalid(&format!(
            "The value for {field} is outside of the allowed range [{min}s, {max}s]."
        ))),
        None => Err(invalid(&format!(
            "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration): {v}"
        ))),
    }
}

fn validate_topic(topic: &Map<String, Value>) -> Result<(), ApiError> {
    // Topics retain messages for 10 minutes to 31 days.
    duration_in(topic, "messageRetentionDuration", 600.0, 2_678_400.0)?;
    Ok(())
}

/// The real API's checks on a subscription (creation, and the result of an update).
fn validate_subscription(st: &State, sub: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(v) = sub.get("ackDeadlineSeconds") {
        match int_field(v) {
            Some(0) => {}
            Some(secs) if (10..=600).contains(&secs) => {}
            _ => {
                return Err(invalid(&format!(
                    "The value for ack_deadline_seconds is invalid: {v}. It must be between \
                     10 and 600 seconds."
                )))
            }
        }
    }
    duration_in(sub, "messageRetentionDuration", 600.0, 604_800.0)?;
    if let Some(push) = sub.get("pushConfig") {
        if let Some(oidc) = push.get("oidcToken") {
            let email = oidc
                .get("serviceAccountEmail")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if email.is_empty() {
                return Err(invalid(
                    "push_config.oidc_token.service_account_email must be set",
                ));
            }
        }
    }
    if let Some(Value::Object(retry)) = sub.get("retryPolicy") {
        let min = duration_in(retry, "minimumBackoff", 0.0, 600.0)?;
        let max = duration_in(retry, "maximumBackoff", 0.0, 600.0)?;
        if min.unwrap_or(10.0) > max.unwrap_or(600.0) {
            return Err(invalid(
                "retry_policy.minimum_backoff must not exceed retry_policy.maximum_backoff",
            ));
        }
    }
    if let Some(Value::Object(expiration)) = sub.get("expirationPolicy") {
        // An empty policy (no ttl) means "never expire"; otherwise at least one day.
        duration_in(expiration, "ttl", 86_400.0, f64::MAX)?;
    }
    if let Some(policy) = sub.get("deadLetterPolicy") {
        if let Some(v) = policy.get("maxDeliveryAttempts") {
            match int_field(v) {
                Some(0) => {}
                Some(n) if (5..=100).contains(&n) => {}
                _ => {
                    return Err(invalid(&format!(
                        "The value for dead_letter_policy.max_delivery_attempts is invalid: \
                         {v}. It must be between 5 and 100."
                    )))
                }
            }
        }
        let topic = policy
            .get("deadLetterTopic")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if topic.is_empty() {
            return Err(invalid("dead_letter_policy.dead_letter_topic must be set"));
        }
        if !st.topics.contains_key(topic) {
            return Err(not_found("Dead letter topic"));
        }
    }
    Ok(())
}

fn fill_subscription_defaults(sub: &mut Map<String, Value>) {
    let ack = sub.get("ackDeadlineSeconds").and_then(int_field);
    if ack.unwrap_or(0) == 0 {
        sub.insert(
            "ackDeadlineSeconds".into(),
            DEFAULT_ACK_DEADLINE_SECONDS.into(),
        );
    }
    sub.entry("messageRetentionDuration")
        .or_insert_with(|| DEFAULT_SUBSCRIPTION_RETENTION.into());
}

/// `projects/P/<kind>/NAME` → `(P, NAME)`.
fn split_name<'a>(name: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix("projects/")?;
    let (project, rest) = rest.split_once('/')?;
    let id = rest.strip_prefix(kind)?.strip_prefix('/')?;
    (!project.is_empty() && !id.is_empty() && !id.contains('/')).then_some((project, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
    use google_cloud_gax::error::rpc::Code;
    use google_cloud_pubsub::{
        client::{Publisher, SchemaService, SubscriptionAdmin, TopicAdmin},
        error::PublishError,
        model::{self, Message},
    };
    use google_cloud_wkt::{Duration as WktDuration, FieldMask};

    const TOPIC: &str = "projects/p/topics/t";
    const DEAD: &str = "projects/p/topics/dead";
    const SUB: &str = "projects/p/subscriptions/s";

    fn install_ring() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    async fn topic_admin(fake: &FakePubSub) -> TopicAdmin {
        install_ring();
        TopicAdmin::builder()
            .with_endpoint(fake.url())
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .expect("TopicAdmin")
    }

    async fn subscription_admin(fake: &FakePubSub) -> SubscriptionAdmin {
        install_ring();
        SubscriptionAdmin::builder()
            .with_endpoint(fake.url())
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .expect("SubscriptionAdmin")
    }

    async fn publisher(fake: &FakePubSub, topic: &str) -> Publisher {
        install_ring();
        Publisher::builder(topic)
            .with_endpoint(fake.url())
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .expect("Publisher")
    }

    fn code(err: &google_cloud_pubsub::Error) -> Option<Code> {
        err.status().map(|s| s.code)
    }

    fn publish_code(err: &PublishError) -> Option<Code> {
        match err {
            PublishError::Rpc(e) => code(e),
            _ => None,
        }
    }

    fn secs(s: i64) -> WktDuration {
        WktDuration::clamp(s, 0)
    }

    fn push_subscription() -> model::Subscription {
        model::Subscription::new()
            .set_name(SUB)
            .set_topic(TOPIC)
            .set_push_config(
                model::PushConfig::new()
                    .set_push_endpoint("https://example.com/push")
                    .set_oidc_token(
                        model::push_config::OidcToken::new()
                            .set_service_account_email("pusher@p.iam.gserviceaccount.com")
                            .set_audience("https://example.com"),
                    ),
            )
            .set_ack_deadline_seconds(60)
            .set_message_retention_duration(secs(600))
            .set_dead_letter_policy(
                model::DeadLetterPolicy::new()
                    .set_dead_letter_topic(DEAD)
                    .set_max_delivery_attempts(5),
            )
            .set_retry_policy(
                model::RetryPolicy::new()
                    .set_minimum_backoff(secs(10))
                    .set_maximum_backoff(secs(600)),
            )
            .set_expiration_policy(model::ExpirationPolicy::new())
    }

    #[tokio::test]
    async fn topics_create_get_and_conflicts() {
        let fake = FakePubSub::start().await;
        let topics = topic_admin(&fake).await;
        let created = topics.create_topic().set_name(TOPIC).send().await.unwrap();
        assert_eq!(created.name, TOPIC);
        assert_eq!(fake.topics(), [TOPIC]);
        assert_eq!(fake.topic(TOPIC).unwrap()["name"], TOPIC);

        let err = topics
            .create_topic()
            .set_name(TOPIC)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::AlreadyExists), "{err:?}");
        assert_eq!(err.http_status_code(), Some(409));

        let got = topics.get_topic().set_topic(TOPIC).send().await.unwrap();
        assert_eq!(got.name, TOPIC);
        let err = topics
            .get_topic()
            .set_topic("projects/p/topics/nope")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::NotFound), "{err:?}");

        // How the crate talks: PUT with the name moved to the path, `$alt` query, no auth.
        let reqs = fake.requests();
        assert_eq!(reqs[0].method, "PUT");
        assert_eq!(reqs[0].path, "/v1/projects/p/topics/t");
        assert_eq!(
            reqs[0].query_param("$alt").as_deref(),
            Some("json;enum-encoding=int")
        );
        assert_eq!(reqs[0].json(), Some(json!({})));
        assert!(reqs[0].header("authorization").is_none());
        assert_eq!(reqs[2].method, "GET");
        fake.clear_requests();
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn push_subscription_round_trip() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        fake.add_topic(DEAD);
        let subs = subscription_admin(&fake).await;
        let created = subs
            .create_subscription()
            .with_request(push_subscription())
            .send()
            .await
            .unwrap();
        assert_eq!(created.name, SUB);
        assert_eq!(created.ack_deadline_seconds, 60);

        let got = subs
            .get_subscription()
            .set_subscription(SUB)
            .send()
            .await
            .unwrap();
        assert_eq!(got.topic, TOPIC);
        let push = got.push_config.as_ref().unwrap();
        assert_eq!(push.push_endpoint, "https://example.com/push");
        let oidc = push.oidc_token().unwrap();
        assert_eq!(
            oidc.service_account_email,
            "pusher@p.iam.gserviceaccount.com"
        );
        assert_eq!(oidc.audience, "https://example.com");
        assert_eq!(got.message_retention_duration, Some(secs(600)));
        let dlp = got.dead_letter_policy.as_ref().unwrap();
        assert_eq!(dlp.dead_letter_topic, DEAD);
        assert_eq!(dlp.max_delivery_attempts, 5);
        let retry = got.retry_policy.as_ref().unwrap();
        assert_eq!(retry.minimum_backoff, Some(secs(10)));
        assert_eq!(retry.maximum_backoff, Some(secs(600)));
        assert!(got.expiration_policy.is_some());

        // The JSON as stored (camelCase, as the crate sent it).
        let stored = fake.subscription(SUB).unwrap();
        assert_eq!(
            stored["pushConfig"]["oidcToken"]["serviceAccountEmail"],
            "pusher@p.iam.gserviceaccount.com"
        );
        assert_eq!(stored["ackDeadlineSeconds"], 60);
        assert_eq!(stored["messageRetentionDuration"], "600s");
        assert_eq!(stored["deadLetterPolicy"]["maxDeliveryAttempts"], 5);
        assert_eq!(stored["retryPolicy"]["minimumBackoff"], "10s");
        assert_eq!(stored["expirationPolicy"], json!({}));
        assert_eq!(fake.subscriptions(), [SUB]);
        let put = &fake.requests()[0];
        assert_eq!(put.path, "/v1/projects/p/subscriptions/s");
        assert!(put.json().unwrap().get("name").is_none(), "{put:?}");

        // Defaults of a bare pull subscription.
        let bare = subs
            .create_subscription()
            .set_name("projects/p/subscriptions/bare")
            .set_topic(TOPIC)
            .send()
            .await
            .unwrap();
        assert_eq!(bare.ack_deadline_seconds, 10);
        assert_eq!(bare.message_retention_duration, Some(secs(604_800)));
    }

    #[tokio::test]
    async fn subscription_validation() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        fake.add_topic(DEAD);
        let subs = subscription_admin(&fake).await;
        let try_create = |sub: model::Subscription| {
            let subs = subs.clone();
            async move {
                subs.create_subscription()
                    .with_request(sub)
                    .send()
                    .await
                    .unwrap_err()
            }
        };
        let err = try_create(push_subscription().set_ack_deadline_seconds(5)).await;
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        assert_eq!(err.http_status_code(), Some(400));
        let err = try_create(push_subscription().set_ack_deadline_seconds(601)).await;
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        let err = try_create(push_subscription().set_message_retention_duration(secs(60))).await;
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        let err = try_create(
            push_subscription().set_dead_letter_policy(
                model::DeadLetterPolicy::new()
                    .set_dead_letter_topic(DEAD)
                    .set_max_delivery_attempts(3),
            ),
        )
        .await;
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        let err = try_create(push_subscription().set_dead_letter_policy(
            model::DeadLetterPolicy::new().set_dead_letter_topic("projects/p/topics/gone"),
        ))
        .await;
        assert_eq!(code(&err), Some(Code::NotFound), "{err:?}");
        let err = try_create(push_subscription().set_topic("projects/p/topics/gone")).await;
        assert_eq!(code(&err), Some(Code::NotFound), "{err:?}");
        assert!(fake.subscriptions().is_empty());

        subs.create_subscription()
            .with_request(push_subscription())
            .send()
            .await
            .unwrap();
        let err = try_create(push_subscription()).await;
        assert_eq!(code(&err), Some(Code::AlreadyExists), "{err:?}");
    }

    #[tokio::test]
    async fn update_subscription_applies_the_mask() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        fake.add_topic(DEAD);
        let subs = subscription_admin(&fake).await;
        subs.create_subscription()
            .with_request(push_subscription())
            .send()
            .await
            .unwrap();
        fake.clear_requests();
        let updated = subs
            .update_subscription()
            .set_subscription(
                model::Subscription::new()
                    .set_name(SUB)
                    .set_push_config(
                        model::PushConfig::new().set_push_endpoint("https://example.org/new"),
                    )
                    .set_ack_deadline_seconds(120)
                    // Not in the mask: ignored.
                    .set_message_retention_duration(secs(3600)),
            )
            .set_update_mask(FieldMask::default().set_paths([
                "push_config",
                "ack_deadline_seconds",
                "dead_letter_policy",
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(updated.ack_deadline_seconds, 120);
        let push = updated.push_config.as_ref().unwrap();
        assert_eq!(push.push_endpoint, "https://example.org/new");
        assert!(push.oidc_token().is_none());
        assert!(updated.dead_letter_policy.is_none());
        assert_eq!(updated.message_retention_duration, Some(secs(600)));
        assert!(updated.retry_policy.is_some());

        let patch = &fake.requests()[0];
        assert_eq!(patch.method, "PATCH");
        assert_eq!(patch.path, "/v1/projects/p/subscriptions/s");
        let body = patch.json().unwrap();
        assert_eq!(
            body["updateMask"],
            "pushConfig,ackDeadlineSeconds,deadLetterPolicy"
        );
        assert!(body["subscription"].get("name").is_none(), "{body}");
        let stored = fake.subscription(SUB).unwrap();
        assert_eq!(stored["ackDeadlineSeconds"], 120);
        assert!(stored.get("deadLetterPolicy").is_none());

        // The result is validated; an empty mask is rejected; a missing one is not found.
        let err = subs
            .update_subscription()
            .set_subscription(
                model::Subscription::new()
                    .set_name(SUB)
                    .set_ack_deadline_seconds(1),
            )
            .set_update_mask(FieldMask::default().set_paths(["ack_deadline_seconds"]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        let err = subs
            .update_subscription()
            .set_subscription(model::Subscription::new().set_name(SUB))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{err:?}");
        let err = subs
            .update_subscription()
            .set_subscription(model::Subscription::new().set_name("projects/p/subscriptions/x"))
            .set_update_mask(FieldMask::default().set_paths(["ack_deadline_seconds"]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn iam_policies() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        fake.add_subscription(SUB, json!({ "topic": TOPIC }));
        install_ring();
        let schemas = SchemaService::builder()
            .with_endpoint(fake.url())
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .unwrap();
        let empty = schemas
            .get_iam_policy()
            .set_resource(TOPIC)
            .send()
            .await
            .unwrap();
        assert!(empty.bindings.is_empty());
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&empty.etag),
            EMPTY_POLICY_ETAG
        );
        let get = &fake.requests()[0];
        assert_eq!(get.method, "GET");
        assert_eq!(get.path, "/v1/projects/p/topics/t:getIamPolicy");

        for resource in [TOPIC, SUB] {
            let policy = google_cloud_iam_v1::model::Policy::new()
                .set_bindings([google_cloud_iam_v1::model::Binding::new()
                    .set_role("roles/pubsub.publisher")
                    .set_members(["serviceAccount:a@p.iam.gserviceaccount.com"])])
                .set_etag(empty.etag.clone());
            let set = schemas
                .set_iam_policy()
                .set_resource(resource)
                .set_policy(policy)
                .send()
                .await
                .unwrap();
            assert_eq!(set.bindings.len(), 1);
            assert_ne!(set.etag, empty.etag);
            let got = schemas
                .get_iam_policy()
                .set_resource(resource)
                .send()
                .await
                .unwrap();
            assert_eq!(got.bindings[0].role, "roles/pubsub.publisher");
            assert_eq!(got.etag, set.etag);
            let stored = fake.iam_policy(resource).unwrap();
            assert_eq!(
                stored["bindings"][0]["members"][0],
                "serviceAccount:a@p.iam.gserviceaccount.com"
            );
        }
        let set = fake
            .requests()
            .into_iter()
            .find(|r| r.method == "POST")
            .unwrap();
        assert_eq!(set.path, "/v1/projects/p/topics/t:setIamPolicy");
        assert!(set.json().unwrap()["policy"].is_object());

        // A stale etag is refused; a missing resource is not found.
        let err = schemas
            .set_iam_policy()
            .set_resource(TOPIC)
            .set_policy(google_cloud_iam_v1::model::Policy::new().set_etag(empty.etag.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::Aborted), "{err:?}");
        let err = schemas
            .get_iam_policy()
            .set_resource("projects/p/topics/gone")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn publish_stores_messages() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        let publisher = publisher(&fake, TOPIC).await;
        let id = publisher
            .publish(
                Message::new()
                    .set_data(r#"{"hello":"world"}"#)
                    .set_attributes([("kind", "greeting")]),
            )
            .await
            .unwrap();
        let published = fake.published();
        assert_eq!(published.len(), 1);
        let m = &published[0];
        assert_eq!(m.message_id, id);
        assert_eq!(m.topic, TOPIC);
        assert_eq!(m.json(), Some(json!({ "hello": "world" })));
        assert_eq!(m.attributes["kind"], "greeting");

        let grpc: Vec<RecordedRequest> = fake
            .requests()
            .into_iter()
            .filter(|r| r.path == PUBLISH_PATH)
            .collect();
        assert_eq!(grpc.len(), 1);
        assert_eq!(grpc[0].method, "POST");
        assert!(grpc[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/grpc"));
        let req = &fake.publish_requests()[0];
        assert_eq!(req.topic, TOPIC);
        assert_eq!(req.messages[0].attributes["kind"], "greeting");

        let second = publisher
            .publish(Message::new().set_data("two"))
            .await
            .unwrap();
        assert_ne!(second, id);
        assert_eq!(fake.published()[1].text(), "two");
        fake.clear_published();
        assert!(fake.published().is_empty());
    }

    #[tokio::test]
    async fn publish_to_a_missing_topic_is_not_found() {
        let fake = FakePubSub::start().await;
        let publisher = publisher(&fake, "projects/p/topics/gone").await;
        let err = publisher
            .publish(Message::new().set_data("x"))
            .await
            .unwrap_err();
        assert_eq!(publish_code(&err), Some(Code::NotFound), "{err:?}");
        if let PublishError::Rpc(e) = &err {
            assert_eq!(e.status().unwrap().message, "Topic not found");
        }
        assert!(fake.published().is_empty());
        // Not retried.
        assert_eq!(fake.publish_requests().len(), 1);
    }

    #[tokio::test]
    async fn publish_faults() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        let publisher = publisher(&fake, TOPIC).await;

        // UNAVAILABLE is retried by the publisher (with backoff) until it goes through.
        fake.fail_publish_next(2, 14);
        let id = publisher
            .publish(Message::new().set_data("retried"))
            .await
            .unwrap();
        assert_eq!(fake.publish_requests().len(), 3);
        assert_eq!(fake.published().len(), 1);
        assert_eq!(fake.published()[0].message_id, id);

        // A permanent error surfaces as PublishError::Rpc with the status.
        fake.fail_publish_next(1, 7);
        let err = publisher
            .publish(Message::new().set_data("refused"))
            .await
            .unwrap_err();
        assert_eq!(publish_code(&err), Some(Code::PermissionDenied), "{err:?}");
        assert_eq!(fake.published().len(), 1);

        // A hanging Publish answers once released.
        fake.hang_publish(true);
        let pending = publisher.publish(Message::new().set_data("late"));
        let pending = tokio::spawn(pending);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!pending.is_finished());
        assert_eq!(fake.published().len(), 1);
        fake.hang_publish(false);
        let id = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(fake.published()[1].message_id, id);
    }

    #[tokio::test]
    async fn rest_faults() {
        let fake = FakePubSub::start().await;
        fake.add_topic(TOPIC);
        let topics = topic_admin(&fake).await;
        fake.fail_rest_next(403);
        let err = topics
            .get_topic()
            .set_topic(TOPIC)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::PermissionDenied), "{err:?}");
        assert_eq!(err.http_status_code(), Some(403));

        // The admin clients retry UNAVAILABLE (503) on idempotent methods (GET, PUT,
        // DELETE) only, and nothing else.
        fake.clear_requests();
        fake.fail_rest_next(503);
        let topic = topics.get_topic().set_topic(TOPIC).send().await.unwrap();
        assert_eq!(topic.name, TOPIC);
        assert_eq!(fake.requests().len(), 2);

        fake.clear_requests();
        fake.fail_rest_next(429);
        let err = topics
            .create_topic()
            .set_name("projects/p/topics/u")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::ResourceExhausted), "{err:?}");
        fake.fail_rest_next(500);
        let err = topics
            .create_topic()
            .set_name("projects/p/topics/u")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::Internal), "{err:?}");
        assert_eq!(fake.requests().len(), 2);
        assert!(fake.topic("projects/p/topics/u").is_none());

        fake.clear_requests();
        fake.fail_rest_next(503);
        let err = topics
            .update_topic()
            .set_topic(model::Topic::new().set_name(TOPIC))
            .set_update_mask(FieldMask::default().set_paths(["labels"]))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::Unavailable), "{err:?}");
        assert_eq!(fake.requests().len(), 1);
        let updated = topics
            .update_topic()
            .set_topic(model::Topic::new().set_name(TOPIC).set_labels([("a", "b")]))
            .set_update_mask(FieldMask::default().set_paths(["labels"]))
            .send()
            .await
            .unwrap();
        assert_eq!(updated.labels["a"], "b");
        assert_eq!(fake.topic(TOPIC).unwrap()["labels"], json!({ "a": "b" }));
    }

    #[tokio::test]
    async fn raw_protocol_edges() {
        let fake = FakePubSub::start().await;
        let client = reqwest::Client::new();
        let resp = client
            .put(format!("{}/v1/{TOPIC}", fake.url()))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(body["error"]["code"], 400);

        let resp = client
            .get(format!("{}/v1/projects/p/widgets/w", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["status"], "NOT_FOUND");

        // Another gRPC method (over HTTP/1 the trailers-only answer is all headers).
        let resp = client
            .post(format!(
                "{}/google.pubsub.v1.Subscriber/StreamingPull",
                fake.url()
            ))
            .header("content-type", "application/grpc")
            .body(Vec::new())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "12");

        // Listing, topic subscriptions, deletion.
        fake.add_topic(TOPIC);
        fake.add_subscription(SUB, json!({ "topic": TOPIC }));
        let list: Value = client
            .get(format!("{}/v1/projects/p/topics", fake.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["topics"][0]["name"], TOPIC);
        let list: Value = client
            .get(format!("{}/v1/{TOPIC}/subscriptions", fake.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["subscriptions"], json!([SUB]));
        let resp = client
            .delete(format!("{}/v1/{TOPIC}", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(fake.topics().is_empty());
        assert_eq!(fake.subscription(SUB).unwrap()["topic"], "_deleted-topic_");

        // Dropping the fake closes its port.
        let addr = fake.addr();
        assert_eq!(fake.host(), addr.to_string());
        assert_eq!(fake.env()[0].0, "PUBSUB_EMULATOR_HOST");
        drop(fake);
        let mut refused = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "port still open after drop");
    }

    #[test]
    fn helpers() {
        assert_eq!(camel_case("push_config.oidc_token"), "pushConfig.oidcToken");
        assert_eq!(percent_decode("/v1/a%3Ab%2"), "/v1/a:b%2");
        assert_eq!(grpc_percent_encode("50% done\n"), "50%25 done%0A");
        assert_eq!(parse_duration(&json!("1.5s")), Some(1.5));
        assert_eq!(parse_duration(&json!("1.5")), None);
        assert_eq!(split_name(TOPIC, "topics"), Some(("p", "t")));
        assert_eq!(split_name("projects/p/topics/", "topics"), None);
        let body = {
            let msg = PublishRequest {
                topic: TOPIC.into(),
                messages: vec![PubsubMessage {
                    data: b"x".to_vec(),
                    ..Default::default()
                }],
            }
            .encode_to_vec();
            let mut b = vec![0u8];
            b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            b.extend_from_slice(&msg);
            b
        };
        assert_eq!(decode_publish_request(&body).unwrap().topic, TOPIC);
        assert!(decode_publish_request(&body[..body.len() - 1]).is_none());
        let mut target = json!({ "a": { "b": 1, "c": 2 }, "d": 3 });
        let new = json!({ "a": { "b": 5 } });
        let (Value::Object(t), Value::Object(n)) = (&mut target, &new) else {
            unreachable!()
        };
        apply_mask_path(t, n, "a.b");
        apply_mask_path(t, n, "a.c");
        apply_mask_path(t, n, "d");
        assert_eq!(target, json!({ "a": { "b": 5 } }));
    }
}
