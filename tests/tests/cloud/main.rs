//! The keepalive for Cloud API numbers (`cloud-api-contract.md`), end to end: the real
//! `keepalive` binary against the Graph fake, the bot's webhook endpoint over HTTPS and the
//! Google fakes. Every test searches every output, log and recorded request for the access
//! token and the verify token. `fleet.rs`: many numbers in one message.

mod announce;
mod errors;
mod findings;
mod fleet;
mod repairs;
mod serve;
mod world;
