//! Health checks (R17): a probe of the current connection every `interval`, each bounded
//! by a timeout, never overlapping; after `failures` failed probes in a row the connection
//! is declared dead and closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::catch::CatchUnwind;
use crate::runtime::{BoxFuture, Runtime};

/// How often to probe the current connection, how long a probe may take, and how many
/// failed probes in a row mean the connection is dead (R17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// From the connection becoming current to the first probe, and from the end of one
    /// probe to the start of the next.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// How many failed probes in a row close the connection (at least 1).
    pub failures: u32,
}

impl HealthCheck {
    /// A probe every `interval`, each bounded by `timeout`; `failures` failed probes in a
    /// row close the connection (0 counts as 1).
    pub fn new(interval: Duration, timeout: Duration, failures: u32) -> Self {
        HealthCheck {
            interval,
            timeout,
            failures: failures.max(1),
        }
    }
}

/// The user's probe, boxed: its error is kept as text, for reports and statistics.
pub(crate) type ProbeFn<C> = dyn Fn(C) -> BoxFuture<Result<(), Arc<str>>> + Send + Sync;

/// A probe in flight, its panics caught.
type Probing = CatchUnwind<Result<(), Arc<str>>>;

/// What one probe came to.
pub(crate) enum Verdict {
    /// It succeeded.
    Healthy,
    /// It failed, timed out or panicked.
    Failed {
        /// Its error's text, or the panic's message.
        error: Arc<str>,
        /// It panicked (the panic hook must hear of it).
        panicked: bool,
        /// That made `failures` in a row: the connection is dead, close it.
        dead: bool,
    },
}

/// The health check of the current connection: waiting for the next probe, or probing.
pub(crate) struct Monitor<C> {
    conn: C,
    check: HealthCheck,
    failed: u32,
    wait: BoxFuture<()>,
    /// The probe running, and its deadline.
    probe: Option<(Probing, BoxFuture<()>)>,
}

/// The connection is only cloned and handed out, never polled in place.
impl<C> Unpin for Monitor<C> {}

impl<C: Clone> Monitor<C> {
    /// Starts watching a connection that just became current: the first probe comes after
    /// one interval.
    pub(crate) fn start(conn: C, check: HealthCheck, runtime: &dyn Runtime) -> Self {
        Monitor {
            conn,
            check,
            failed: 0,
            wait: runtime.sleep(check.interval),
            probe: None,
        }
    }

    /// The connection being watched.
    pub(crate) fn connection(&self) -> &C {
        &self.conn
    }

    /// Moves the check on; `Ready` when a probe has ended.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        probe: &ProbeFn<C>,
        runtime: &dyn Runtime,
    ) -> Poll<Verdict> {
        if self.probe.is_none() {
            if self.wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let conn = self.conn.clone();
            self.probe = Some((
                CatchUnwind::call(|| probe(conn)),
                runtime.sleep(self.check.timeout),
            ));
        }
        let Some((running, deadline)) = &mut self.probe else {
            return Poll::Pending;
        };
        let (result, result_panicked) = match Pin::new(running).poll(cx) {
            Poll::Ready(Ok(result)) => (Ok(result), false),
            Poll::Ready(Err(panic)) => (Err(panic), true),
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                let timed_out = format!("the probe did not finish within {:?}", self.check.timeout);
                (Ok(Err(Arc::from(timed_out))), false)
            }
            Poll::Pending => return Poll::Pending,
        };
        self.probe = None;
        let verdict = match result {
            Ok(Ok(())) => {
                self.failed = 0;
                Verdict::Healthy
            }
            Ok(Err(error)) | Err(error) => {
                self.failed = self.failed.saturating_add(1);
                Verdict::Failed {
                    error,
                    panicked: result_panicked,
                    dead: self.failed >= self.check.failures,
                }
            }
        };
        // Probes never overlap: the next waits from the end of this one. A dead
        // connection gets no next probe.
        if !matches!(verdict, Verdict::Failed { dead: true, .. }) {
            self.wait = runtime.sleep(self.check.interval);
        }
        Poll::Ready(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_failures_counts_as_one() {
        let check = HealthCheck::new(Duration::from_secs(1), Duration::from_millis(500), 0);
        assert_eq!(
            check.failures, 1,
            "a failed probe must be able to close the connection"
        );
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.timeout, Duration::from_millis(500));
        assert_eq!(
            HealthCheck::new(check.interval, check.timeout, 3).failures,
            3
        );
    }
}
