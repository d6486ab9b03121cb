//! The time the Google layer reads and the pauses it takes (between retries, between polls of
//! a long-running operation). Injectable: a test passes a [`ManualClock`], whose pauses end at
//! once and move its time on, so that retry and wait tests need no wall clock.

use futures::future::BoxFuture;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Now, and a pause of a given length.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn sleep(&self, pause: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock (tokio's).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, pause: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(pause))
    }
}

/// A clock for tests: it starts at the real now, and each pause ends at once and moves it on
/// by the pause's length. [`pauses`](Self::pauses) lists the pauses taken.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    state: Mutex<(Duration, Vec<Duration>)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            state: Mutex::new((Duration::ZERO, Vec::new())),
        }
    }
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pause taken so far, in order.
    pub fn pauses(&self) -> Vec<Duration> {
        self.state.lock().expect("clock lock").1.clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.state.lock().expect("clock lock").0
    }

    fn sleep(&self, pause: Duration) -> BoxFuture<'static, ()> {
        let mut state = self.state.lock().expect("clock lock");
        state.0 += pause;
        state.1.push(pause);
        Box::pin(std::future::ready(()))
    }
}
