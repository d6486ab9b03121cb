//! The one waiter for long-running operations (Compute zonal, regional and global, Cloud SQL,
//! Cloud Run): poll until done, with a growing pause, until a deadline.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use super::GoogleError;

/// Polls `poll` until it returns `Some`, pausing `first_pause`, doubling up to `max_pause`.
/// Gives up with [`GoogleError::Deadline`] naming `what` once `deadline` has passed.
pub async fn wait_until_done<T, F, Fut>(
    what: &str,
    deadline: Instant,
    first_pause: Duration,
    max_pause: Duration,
    mut poll: F,
) -> Result<T, GoogleError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, GoogleError>>,
{
    let mut pause = first_pause;
    loop {
        if let Some(done) = poll().await? {
            return Ok(done);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(GoogleError::Deadline {
                what: what.to_string(),
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(max_pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_when_done() {
        let n = AtomicU32::new(0);
        let v = wait_until_done(
            "op",
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(1),
            Duration::from_millis(2),
            || async { Ok((n.fetch_add(1, Ordering::SeqCst) == 3).then_some("done")) },
        )
        .await
        .unwrap();
        assert_eq!(v, "done");
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn deadline_names_what_it_waited_for() {
        let e = wait_until_done::<(), _, _>(
            "reset of vm-1",
            Instant::now() + Duration::from_millis(20),
            Duration::from_millis(5),
            Duration::from_millis(5),
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "reset of vm-1 did not finish in time");
    }
}
