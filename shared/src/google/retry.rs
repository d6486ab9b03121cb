//! The retry policy: exponential backoff with equal jitter (a random pause between half and
//! all of each step), bounded by attempts and a deadline. Only requests marked
//! [`Idempotent::Yes`](super::client::Idempotent) are retried (see
//! [`GoogleClient::send`](super::GoogleClient::send)).

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use super::clock::Clock;
use super::GoogleError;

/// How often and how patiently to retry a retryable [`GoogleError`].
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1): a random duration
    /// between half and all of the exponential step ("equal jitter"), so that many clients
    /// retrying at once spread out, and the backoff still grows.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1) as i32);
        let step = self.initial_backoff.mul_f64(exp).min(self.max_backoff);
        let half = step / 2;
        half + step.mul_f64(rand::random::<f64>() * 0.5)
    }

    /// Runs `op` until it succeeds, fails for good, runs out of attempts, or the next pause
    /// would end past `deadline`; pauses on `clock`.
    pub async fn run<T, F, Fut>(
        &self,
        clock: &dyn Clock,
        deadline: Option<Instant>,
        mut op: F,
    ) -> Result<T, GoogleError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GoogleError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() || attempt >= self.max_attempts => return Err(e),
                Err(e) => {
                    let pause = self.backoff(attempt);
                    if deadline.is_some_and(|d| clock.now() + pause >= d) {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, attempt, pause_ms = pause.as_millis() as u64, "retrying Google API call");
                    clock.sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::google::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            multiplier: 2.0,
        }
    }

    fn unavailable() -> GoogleError {
        GoogleError::from_response("x", 503, b"")
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let b = p.backoff(attempt);
            let step = p
                .initial_backoff
                .mul_f64(2f64.powi(attempt as i32 - 1))
                .min(p.max_backoff);
            assert!(b >= step / 2 && b <= step, "{attempt}: {b:?}");
        }
    }

    #[tokio::test]
    async fn retries_retryable_then_succeeds_pausing_on_the_clock() {
        let clock = ManualClock::new();
        let calls = AtomicU32::new(0);
        let r = policy()
            .run(&clock, None, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(unavailable())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two pauses, each within its step (1 s, then 2 s), no wall time spent.
        let pauses = clock.pauses();
        assert_eq!(pauses.len(), 2);
        assert!(pauses[0] >= Duration::from_millis(500) && pauses[0] <= Duration::from_secs(1));
        assert!(pauses[1] >= Duration::from_secs(1) && pauses[1] <= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let clock = ManualClock::new();
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = policy()
            .run(&clock, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(unavailable())
            })
            .await;
        assert_eq!(r.unwrap_err().status(), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(clock.pauses().len(), 3);
    }

    #[tokio::test]
    async fn never_retries_permanent_errors() {
        let clock = ManualClock::new();
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = policy()
            .run(&clock, None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(GoogleError::from_response("x", 403, b""))
            })
            .await;
        assert_eq!(r.unwrap_err().status(), Some(403));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(clock.pauses().is_empty());
    }

    #[tokio::test]
    async fn stops_before_a_pause_would_pass_the_deadline() {
        let clock = ManualClock::new();
        let calls = AtomicU32::new(0);
        let slow = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(20),
            ..policy()
        };
        let deadline = clock.now() + Duration::from_secs(4);
        let r: Result<(), _> = slow
            .run(&clock, Some(deadline), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(unavailable())
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(clock.pauses().is_empty());
    }
}
