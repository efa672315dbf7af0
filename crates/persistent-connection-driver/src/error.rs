//! The errors the driver hands to its users.

#[allow(unused_imports)]
use std::prelude::rust_2024::*;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which callback of yours a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callback {
    /// `get_address`.
    GetAddress,
    /// `connect`.
    Connect,
    /// `on_event`.
    OnEvent,
    /// The retry-delay closure.
    RetryDelay,
    /// [`Connection::close`](crate::driver::Connection::close) or
    /// [`Connection::closed`](crate::driver::Connection::closed).
    ConnectionClose,
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Callback::GetAddress => "get_address",
            Callback::Connect => "connect",
            Callback::OnEvent => "on_event",
            Callback::RetryDelay => "retry_delay",
            Callback::ConnectionClose => "the connection's close",
        })
    }
}

/// Why an attempt failed, or why no connection will come. Cheap to clone: the caller's
/// error is shared by `Arc` (one error goes to many waiters and to the event stream).
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// `get_address` returned an error.
    #[error("could not get the address: {0}")]
    Address(Arc<E>),
    /// `connect` returned an error.
    #[error("could not connect: {0}")]
    Connect(Arc<E>),
    /// The attempt did not finish within the connect timeout.
    #[error("the attempt did not finish within the connect timeout of {0:?}")]
    TimedOut(Duration),
    /// A callback panicked; the attempt counts as failed.
    #[error("{during} panicked: {message}")]
    Panicked {
        /// Which callback.
        during: Callback,
        /// The panic's message.
        message: Arc<str>,
    },
    /// The persistent connection was closed: no connection will come.
    #[error("the persistent connection is closed")]
    Closed,
    /// The persistent connection was aborted with this reason: no new connection will come.
    #[error("the persistent connection was aborted: {0}")]
    Aborted(Arc<E>),
}

impl<E> Error<E> {
    /// The caller's error inside, if any.
    pub fn source_error(&self) -> Option<&E> {
        match self {
            Error::Address(e) | Error::Connect(e) | Error::Aborted(e) => Some(e),
            _ => None,
        }
    }

    /// Whether no connection will ever come (closed or aborted), as opposed to one failed
    /// attempt.
    pub fn is_final(&self) -> bool {
        matches!(self, Error::Closed | Error::Aborted(_))
    }
}

impl<E> Clone for Error<E> {
    fn clone(&self) -> Self {
        match self {
            Error::Address(e) => Error::Address(e.clone()),
            Error::Connect(e) => Error::Connect(e.clone()),
            Error::TimedOut(d) => Error::TimedOut(*d),
            Error::Panicked { during, message } => Error::Panicked {
                during: *during,
                message: message.clone(),
            },
            Error::Closed => Error::Closed,
            Error::Aborted(e) => Error::Aborted(e.clone()),
        }
    }
}

/// A panic in one of your callbacks, as given to the panic hook.
#[derive(Clone, Debug)]
pub struct PanicReport {
    /// The persistent connection's server name.
    pub server_name: Arc<str>,
    /// Which callback panicked.
    pub during: Callback,
    /// The panic's message.
    pub message: Arc<str>,
}

impl fmt::Display for PanicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "persistent connection to {}: {} panicked: {}",
            self.server_name, self.during, self.message
        )
    }
}
