//! Client code shared by the keepalive and the provisioner.
//!
//! - [`payload`]: the scheduler payload, parsed once into a type.
//! - [`envelope`]: a Pub/Sub push envelope or a CloudEvent, decoded into one message.
//! - [`whatsapp`]: the WhatsApp Business API on-premises client.
//! - [`graph`]: the Graph API (Meta's Cloud API for WhatsApp numbers): client, error type,
//!   typed answers, batches.
//! - [`google`]: tokens, errors, retries, operations, and the Compute Engine and Secret
//!   Manager clients.
//! - [`events_publisher`]: Pub/Sub through `google-cloud-pubsub`: the keepalive's event
//!   publisher, and the topic and subscription clients the provisioner uses.
//! - [`limits`]: answers read to at most 256 KiB, quotes cut to 300 characters.
//! - [`telemetry`]: Cloud Logging JSON or readable text.
//! - [`tls_pin`]: trusting exactly one certificate (a pinned SHA-256 fingerprint).
//! - [`tls_roots`]: the system's root certificates (`SSL_CERT_FILE`) for `https://` endpoints.
//! - [`webhook`]: Meta's verification handshake against a bot's webhook endpoint.

pub mod envelope;
pub mod events_publisher;
pub mod google;
pub mod graph;
pub mod limits;
pub mod payload;
pub mod telemetry;
pub mod tls_pin;
pub mod tls_roots;
pub mod webhook;
pub mod whatsapp;
