//! The Google API layer: tokens, one error type, one retry policy, one operation waiter, and
//! one small client per API, each on an overridable base URL.

pub mod auth;
pub mod client;
pub mod compute;
pub mod error;
pub mod operation;
pub mod retry;
pub mod run;
pub mod scheduler;
pub mod secretmanager;
pub mod sqladmin;

pub use auth::Auth;
pub use client::GoogleClient;
pub use error::GoogleError;
pub use retry::RetryPolicy;
