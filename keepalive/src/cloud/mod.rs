//! Cloud API numbers (`cloud-api-contract.md`): no VM to reset, but a number that breaks
//! silently. `observe.rs` reads (Graph, concurrently, and the bot's handshake), `decide.rs`
//! finds and judges (pure, with its tables of cases), `act.rs` puts back a missing app
//! subscription or a wrong webhook override when asked, and reads them back.

pub mod act;
pub mod decide;
pub mod observe;
