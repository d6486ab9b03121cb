//! Long waits: a spinner on a terminal, plain log lines otherwise. Every wait has a timeout
//! and says what it waited for.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::time::Instant;

use crate::StepError;

/// Polls `poll` until it answers `Ok(Some(_))`, showing `what` and the state `poll` reports
/// through `Err`-free `Ok(None)` rounds; pauses grow from 200 ms to 10 s.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut poll: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, StepError>>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last_state = String::new();
    let mut pause = Duration::from_millis(200);
    loop {
        match poll().await? {
            Poll::Ready(v) => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                eprintln!(
                    "  done waiting for {what} ({} s)",
                    started.elapsed().as_secs()
                );
                return Ok(v);
            }
            Poll::Pending(state) => {
                if let Some(b) = &bar {
                    b.set_message(format!("waiting for {what}: {state}"));
                } else if state != last_state {
                    eprintln!(
                        "  waiting for {what}: {state} ({} s)",
                        started.elapsed().as_secs()
                    );
                }
                last_state = state;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Err(StepError::failed(
                what,
                format!(
                    "gave up waiting after {} s (last state: {last_state}); run the command again to keep waiting",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// One poll's answer.
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the state in words.
    Pending(String),
}
