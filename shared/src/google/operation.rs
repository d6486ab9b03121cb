//! Long-running operations, and every other wait until something is ready: one loop
//! ([`Waiter::until`]) that polls with a growing pause until a deadline, on an injectable
//! [`Clock`], telling a [`WaitProgress`] of each round (the provisioner's spinner; nothing in
//! the keepalive).
//!
//! Compute Engine, Cloud SQL and Cloud Run each answer their own operation shape; each
//! implements [`LongRunningOperation`], and [`GoogleClient::wait_operation`] waits for any of
//! them. A failed operation becomes [`GoogleError::Operation`], its text built by
//! [`failure_text`] alone.
//!
//! [`GoogleClient::wait_operation`]: super::GoogleClient::wait_operation

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::clock::{Clock, SystemClock};
use super::GoogleError;

/// One look at what is being waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the state in words (`status RUNNING`).
    Pending(String),
}

/// How a wait ended, short of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited<T> {
    Ready(T),
    /// The deadline passed; the last state seen, in words.
    TimedOut {
        last_state: String,
    },
}

impl<T> Waited<T> {
    /// The value, or [`GoogleError::Deadline`] naming `what`.
    pub fn or_deadline(self, what: &str) -> Result<T, GoogleError> {
        match self {
            Waited::Ready(v) => Ok(v),
            Waited::TimedOut { .. } => Err(GoogleError::Deadline {
                what: what.to_string(),
            }),
        }
    }
}

/// The pauses between polls: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub first: Duration,
    pub max: Duration,
}

/// One round of a wait, as a [`WaitProgress`] hears of it.
#[derive(Debug, Clone, Copy)]
pub enum Round<'a> {
    Pending {
        state: &'a str,
        elapsed: Duration,
    },
    /// Ready after at least one pending round.
    Ready {
        elapsed: Duration,
    },
    GaveUp {
        last_state: &'a str,
        elapsed: Duration,
    },
}

/// Hears of every round of every wait (`what` names the wait).
pub trait WaitProgress: Send + Sync + fmt::Debug {
    fn round(&self, what: &str, round: Round<'_>);
}

/// Tells no one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl WaitProgress for Silent {
    fn round(&self, _what: &str, _round: Round<'_>) {}
}

/// The one polling loop.
#[derive(Debug, Clone)]
pub struct Waiter {
    clock: Arc<dyn Clock>,
    progress: Arc<dyn WaitProgress>,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new(Arc::new(SystemClock), Arc::new(Silent))
    }
}

impl Waiter {
    pub fn new(clock: Arc<dyn Clock>, progress: Arc<dyn WaitProgress>) -> Self {
        Waiter { clock, progress }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn progress(&self) -> &Arc<dyn WaitProgress> {
        &self.progress
    }

    /// Polls `poll` until it is ready or `deadline` has passed, pausing as `pacing` says (never
    /// past the deadline). An error from `poll` ends the wait at once.
    pub async fn until<T, E, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        pacing: Pacing,
        mut poll: F,
    ) -> Result<Waited<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, E>>,
    {
        let started = self.clock.now();
        let mut pause = pacing.first;
        let mut last_state;
        let mut pending = false;
        loop {
            let elapsed = || self.clock.now().saturating_duration_since(started);
            match poll().await? {
                Poll::Ready(v) => {
                    if pending {
                        self.progress
                            .round(what, Round::Ready { elapsed: elapsed() });
                    }
                    return Ok(Waited::Ready(v));
                }
                Poll::Pending(state) => {
                    self.progress.round(
                        what,
                        Round::Pending {
                            state: &state,
                            elapsed: elapsed(),
                        },
                    );
                    last_state = state;
                    pending = true;
                }
            }
            let now = self.clock.now();
            if now >= deadline {
                self.progress.round(
                    what,
                    Round::GaveUp {
                        last_state: &last_state,
                        elapsed: elapsed(),
                    },
                );
                return Ok(Waited::TimedOut { last_state });
            }
            self.clock.sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(pacing.max);
        }
    }
}

/// Where a long-running operation stands, whichever API started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationState {
    /// Not done; its state in words.
    Running(String),
    Succeeded,
    /// Done with an error, in words ([`failure_text`]).
    Failed(String),
}

/// An API's operation resource.
pub trait LongRunningOperation {
    fn name(&self) -> &str;
    fn state(&self) -> OperationState;
}

/// `op` as one poll's answer: ready when it succeeded, pending while it runs, and
/// [`GoogleError::Operation`] when it failed.
pub fn settle<Op: LongRunningOperation>(
    api: &'static str,
    op: Op,
) -> Result<Poll<Op>, GoogleError> {
    match op.state() {
        OperationState::Succeeded => Ok(Poll::Ready(op)),
        OperationState::Running(state) => Ok(Poll::Pending(state)),
        OperationState::Failed(message) => Err(GoogleError::Operation {
            api,
            name: op.name().to_string(),
            message,
        }),
    }
}

/// The words for an operation's errors, each `(code, message)`: `code: message`, either part
/// left out when absent, joined with `; `, cut to a quote's length (`crate::limits::quote`);
/// `unknown error` when there is nothing to say.
pub fn failure_text<'a>(
    errors: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> String {
    let parts: Vec<String> = errors
        .into_iter()
        .map(|(code, message)| {
            let code = code.filter(|c| !c.is_empty());
            let message = message.filter(|m| !m.is_empty());
            match (code, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => String::new(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        "unknown error".into()
    } else {
        crate::limits::quote(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::google::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    const PACING: Pacing = Pacing {
        first: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };

    #[derive(Debug, Default)]
    struct Heard(Mutex<Vec<String>>);

    impl WaitProgress for Heard {
        fn round(&self, what: &str, round: Round<'_>) {
            let line = match round {
                Round::Pending { state, .. } => format!("{what}: {state}"),
                Round::Ready { .. } => format!("{what}: ready"),
                Round::GaveUp { last_state, .. } => format!("{what}: gave up at {last_state}"),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    fn waiter() -> (Waiter, Arc<ManualClock>, Arc<Heard>) {
        let clock = Arc::new(ManualClock::new());
        let heard = Arc::new(Heard::default());
        (Waiter::new(clock.clone(), heard.clone()), clock, heard)
    }

    #[tokio::test]
    async fn polls_with_growing_pauses_until_ready() {
        let (w, clock, heard) = waiter();
        let n = AtomicU32::new(0);
        let deadline = clock.now() + Duration::from_secs(60);
        let v = w
            .until::<_, GoogleError, _, _>("op", deadline, PACING, || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                Ok(if i == 4 {
                    Poll::Ready("done")
                } else {
                    Poll::Pending(format!("round {i}"))
                })
            })
            .await
            .unwrap();
        assert_eq!(v, Waited::Ready("done"));
        let ms: Vec<u128> = clock.pauses().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 800, 1000]);
        assert_eq!(heard.0.lock().unwrap().last().unwrap(), "op: ready");
    }

    #[tokio::test]
    async fn ready_at_once_is_not_reported_as_a_wait() {
        let (w, clock, heard) = waiter();
        let deadline = clock.now() + Duration::from_secs(1);
        let v = w
            .until::<_, GoogleError, _, _>("op", deadline, PACING, || async { Ok(Poll::Ready(1)) })
            .await
            .unwrap();
        assert_eq!(v, Waited::Ready(1));
        assert!(heard.0.lock().unwrap().is_empty());
        assert!(clock.pauses().is_empty());
    }

    #[tokio::test]
    async fn the_deadline_ends_the_wait_with_the_last_state() {
        let (w, clock, heard) = waiter();
        let deadline = clock.now() + Duration::from_millis(700);
        let v = w
            .until::<(), GoogleError, _, _>("reset of vm-1", deadline, PACING, || async {
                Ok(Poll::Pending("status RUNNING".into()))
            })
            .await
            .unwrap();
        assert_eq!(
            v,
            Waited::TimedOut {
                last_state: "status RUNNING".into()
            }
        );
        // 200 + 400, then only the 100 ms left: never past the deadline.
        let ms: Vec<u128> = clock.pauses().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 100]);
        assert_eq!(
            heard.0.lock().unwrap().last().unwrap(),
            "reset of vm-1: gave up at status RUNNING"
        );
        assert_eq!(
            v.or_deadline("reset of vm-1").unwrap_err().to_string(),
            "reset of vm-1 did not finish in time"
        );
    }

    #[tokio::test]
    async fn an_error_ends_the_wait_at_once() {
        let (w, clock, _) = waiter();
        let deadline = clock.now() + Duration::from_secs(60);
        let e = w
            .until::<(), _, _, _>("op", deadline, PACING, || async {
                Err(GoogleError::from_response("x", 403, b""))
            })
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert!(clock.pauses().is_empty());
    }

    struct Op(OperationState);

    impl LongRunningOperation for Op {
        fn name(&self) -> &str {
            "operation-1"
        }
        fn state(&self) -> OperationState {
            self.0.clone()
        }
    }

    #[test]
    fn settle_maps_every_state() {
        assert!(matches!(
            settle("API", Op(OperationState::Succeeded)),
            Ok(Poll::Ready(_))
        ));
        assert!(matches!(
            settle("API", Op(OperationState::Running("status PENDING".into()))),
            Ok(Poll::Pending(s)) if s == "status PENDING"
        ));
        let e = settle("API", Op(OperationState::Failed("QUOTA: no".into()))).err();
        assert_eq!(
            e.unwrap().to_string(),
            "API operation operation-1 failed: QUOTA: no"
        );
    }

    #[test]
    fn failure_text_joins_what_is_there() {
        assert_eq!(
            failure_text([
                (Some("QUOTA_EXCEEDED"), Some("no CPUs")),
                (None, Some("and"))
            ]),
            "QUOTA_EXCEEDED: no CPUs; and"
        );
        assert_eq!(failure_text([(Some("code 9"), None)]), "code 9");
        assert_eq!(failure_text([(Some(""), Some(""))]), "unknown error");
        assert_eq!(failure_text([]), "unknown error");
    }
}
