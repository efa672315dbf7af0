//! The context `connect` is given with each attempt (the newer upstream interface's).

use std::fmt;
use std::sync::Weak;

use persistent_connection::AttemptId;

/// What an attempt's context stops: the persistent connection's shared state.
pub(crate) trait Abort<E>: Send + Sync {
    /// Stops it for good with `reason` (R12).
    fn abort(&self, reason: E);
}

/// The `abort` of every attempt's context: a weak pointer to the persistent connection
/// itself, so it costs no allocation of its own and does not keep the connection alive.
pub(crate) type AbortFn<E> = Weak<dyn Abort<E>>;

/// Lets `connect` see which attempt it is making and give up for good (R12).
pub struct AttemptContext<E> {
    attempt: AttemptId,
    consecutive_failures: u32,
    abort: AbortFn<E>,
}

impl<E> AttemptContext<E> {
    pub(crate) fn new(attempt: AttemptId, consecutive_failures: u32, abort: AbortFn<E>) -> Self {
        AttemptContext {
            attempt,
            consecutive_failures,
            abort,
        }
    }

    /// The attempt being made.
    pub fn attempt(&self) -> AttemptId {
        self.attempt
    }

    /// Failed attempts since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Stops the persistent connection for good (R12): no new attempts; a connection this
    /// attempt makes is closed at once; waiters get
    /// [`Stopped::Aborted(reason)`](crate::error::Stopped::Aborted).
    pub fn abort(&self, reason: E) {
        // Once the persistent connection is gone there is nothing left to stop.
        if let Some(target) = self.abort.upgrade() {
            target.abort(reason);
        }
    }
}

impl<E> Clone for AttemptContext<E> {
    fn clone(&self) -> Self {
        AttemptContext {
            attempt: self.attempt,
            consecutive_failures: self.consecutive_failures,
            abort: self.abort.clone(),
        }
    }
}

impl<E> fmt::Debug for AttemptContext<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptContext")
            .field("attempt", &self.attempt)
            .field("consecutive_failures", &self.consecutive_failures)
            .finish_non_exhaustive()
    }
}
