//! The Google API layer: tokens ([`auth`]), one error type ([`error`]), one retry policy
//! ([`retry`]) applied to the requests that may be repeated ([`client::Idempotent`]), one
//! waiter for long-running operations ([`operation`]) on an injectable [`clock`], and one small
//! client per API, each on an overridable base URL: [`compute`], [`sqladmin`],
//! [`secretmanager`], [`cloud_run`], [`scheduler`], [`monitoring`].

pub mod auth;
pub mod client;
pub mod clock;
pub mod cloud_run;
pub mod compute;
pub mod error;
pub mod monitoring;
pub mod operation;
pub mod retry;
pub mod scheduler;
pub mod secretmanager;
pub mod sqladmin;

pub use auth::Auth;
pub use client::{GoogleClient, Idempotent, Request};
pub use error::GoogleError;
pub use retry::RetryPolicy;
