//! Panics in user code become values: a callback that panics is reported, never takes the
//! driver's task down with it.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::runtime::BoxFuture;

/// The message of a caught panic.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("a panic with a non-string payload")
    }
}

/// A future whose panics become `Err(message)`, made by calling user code that may itself
/// panic before it returns the future. (A dozen lines; `futures-util` has one too, but
/// would be our only reason to depend on it.)
pub(crate) enum CatchUnwind<T> {
    Running(BoxFuture<T>),
    /// The call that makes the future panicked: fails at the first poll.
    Failed(Arc<str>),
    Done,
}

impl<T> CatchUnwind<T> {
    /// Calls `make` and wraps the future it returns; a panic in the call itself makes a
    /// future that fails at once.
    pub(crate) fn call(make: impl FnOnce() -> BoxFuture<T>) -> Self {
        match catch_unwind(AssertUnwindSafe(make)) {
            Ok(future) => CatchUnwind::Running(future),
            Err(payload) => CatchUnwind::Failed(panic_message(payload)),
        }
    }
}

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Arc<str>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Taken out while polled; put back only if it is still pending. A future that
        // panicked is never polled again.
        let mut future = match std::mem::replace(&mut *self, CatchUnwind::Done) {
            CatchUnwind::Running(future) => future,
            CatchUnwind::Failed(message) => return Poll::Ready(Err(message)),
            CatchUnwind::Done => return Poll::Ready(Err(Arc::from("polled after completion"))),
        };
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => {
                *self = CatchUnwind::Running(future);
                Poll::Pending
            }
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}
