//! Long waits on screen: a spinner on a terminal, plain log lines otherwise. Every wait of a
//! run, a Google operation's or [`wait_for`]'s, goes through the shared waiter
//! (`shared::google::operation::Waiter`), which tells [`TerminalProgress`] of each round; each
//! has a timeout and says what it waited for.

use indicatif::{ProgressBar, ProgressStyle};
use shared::google::operation::{Pacing, Poll, Round, WaitProgress, Waited};
use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use crate::{Provisioner, StepError};

/// Pauses between polls of a resource's state: from 200 ms up to 10 s.
const PACING: Pacing = Pacing {
    first: Duration::from_millis(200),
    max: Duration::from_secs(10),
};

/// Polls `poll` until it is ready, up to `timeout` (or the environment's bound), showing what
/// it waits for and the state each pending round reports. Running out of time is an error
/// that names the wait, the last state, and how to go on.
pub async fn wait_for<T, F, Fut>(
    prov: &Provisioner,
    what: &str,
    timeout: Duration,
    poll: F,
) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, StepError>>,
{
    let timeout = prov.wait_timeout(timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    match prov
        .google
        .client
        .waiter()
        .until(what, deadline, PACING, poll)
        .await?
    {
        Waited::Ready(v) => Ok(v),
        Waited::TimedOut { last_state } => Err(StepError::failed(
            what,
            format!(
                "gave up waiting after {} s (last state: {last_state}); run the command again to keep waiting",
                timeout.as_secs()
            ),
        )),
    }
}

/// The current wait on screen.
struct Shown {
    what: String,
    spinner: Option<ProgressBar>,
    last_state: String,
}

/// Shows every wait on standard error.
#[derive(Default)]
pub struct TerminalProgress {
    shown: Mutex<Option<Shown>>,
}

impl fmt::Debug for TerminalProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalProgress")
    }
}

fn spinner() -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("  {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

impl WaitProgress for TerminalProgress {
    fn round(&self, what: &str, round: Round<'_>) {
        let mut shown = self.shown.lock().expect("progress lock");
        if shown.as_ref().is_none_or(|s| s.what != what) {
            if let Some(old) = shown.take().and_then(|s| s.spinner) {
                old.finish_and_clear();
            }
            *shown = Some(Shown {
                what: what.to_string(),
                spinner: std::io::stderr().is_terminal().then(spinner),
                last_state: String::new(),
            });
        }
        let Some(s) = shown.as_mut() else { return };
        match round {
            Round::Pending { state, elapsed } => {
                match &s.spinner {
                    Some(b) => b.set_message(format!("waiting for {what}: {state}")),
                    None if state != s.last_state => {
                        eprintln!("  waiting for {what}: {state} ({} s)", elapsed.as_secs())
                    }
                    None => {}
                }
                s.last_state = state.to_string();
            }
            Round::Ready { elapsed } => {
                if let Some(b) = shown.take().and_then(|s| s.spinner) {
                    b.finish_and_clear();
                }
                eprintln!("  done waiting for {what} ({} s)", elapsed.as_secs());
            }
            Round::GaveUp { .. } => {
                if let Some(b) = shown.take().and_then(|s| s.spinner) {
                    b.finish_and_clear();
                }
            }
        }
    }
}
