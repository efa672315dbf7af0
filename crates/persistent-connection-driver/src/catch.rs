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
pub(crate) struct CatchUnwind<T> {
    future: Option<BoxFuture<T>>,
    failed: Option<Arc<str>>,
}

impl<T> CatchUnwind<T> {
    /// Calls `make` and wraps the future it returns; a panic in the call itself makes a
    /// future that fails at once.
    pub(crate) fn call(make: impl FnOnce() -> BoxFuture<T>) -> Self {
        match catch_unwind(AssertUnwindSafe(make)) {
            Ok(future) => CatchUnwind {
                future: Some(future),
                failed: None,
            },
            Err(payload) => CatchUnwind {
                future: None,
                failed: Some(panic_message(payload)),
            },
        }
    }
}

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Arc<str>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = self.future.as_mut() else {
            let message = self
                .failed
                .take()
                .unwrap_or_else(|| Arc::from("polled after completion"));
            return Poll::Ready(Err(message));
        };
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => {
                self.future = None;
                Poll::Ready(Ok(value))
            }
            Err(payload) => {
                // Never poll a future again after it panicked.
                self.future = None;
                Poll::Ready(Err(panic_message(payload)))
            }
        }
    }
}
