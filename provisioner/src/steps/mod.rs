//! The runbook's steps, each a command: which resources, in which order, and what one hands
//! the next. Resources go through [`ensure`](crate::ensure::ensure); what is not a resource
//! (waits, the WhatsApp client's API) is done here.
//!
//! - step 1: [`database`];
//! - step 2: [`vm`], with [`whatsapp_endpoint`] (where the client's API is, and the pinned
//!   TLS client for it);
//! - steps 3 and 4: [`onboard`] (`whatsapp`, `verify`, `connect`);
//! - step 5: [`link`];
//! - step 6: [`keepalive`], ending with [`alerts`] (Cloud Monitoring's policies and channels);
//! - for `status`: [`client_health`] (logs in, reads `/v1/health`).

pub mod alerts;
pub mod client_health;
pub mod database;
pub mod keepalive;
pub mod link;
pub mod onboard;
pub mod vm;
pub mod whatsapp_endpoint;
