//! The errors a persistent connection hands to its users: one type per question a caller
//! asks. "Why did this attempt fail?" is [`AttemptError`]; "why will no connection ever
//! come?" is [`Stopped`]; [`ConnectError`] is either, for
//! `connected_or_failed_to_connect`, which can end both ways.
//!
//! The caller's error `E` is shared by `Arc`: one failure goes to many waiters and to the
//! event stream, and `std::io::Error` is not `Clone`. Each type prints `E` with its
//! `Display`, and is a [`std::error::Error`] whose `source()` is `E` whenever `E` is one.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use persistent_connection::{Event, error_key};

/// The events a driver reports: the core's [`Event`] with [`AttemptError`] in
/// `FailedToConnect`.
pub type DriverEvent<A, C, E> = Event<A, C, AttemptError<E>>;

/// Which callback of yours a panic report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Callback {
    /// `get_address`.
    GetAddress,
    /// `connect`.
    Connect,
    /// `on_event`.
    OnEvent,
    /// The retry-delay closure.
    RetryDelay,
    /// [`Connection::close`](crate::connection::Connection::close) or
    /// [`Connection::closed`](crate::connection::Connection::closed).
    ConnectionClose,
    /// The health probe (R17); the panic counts as a failed probe.
    HealthProbe,
    /// The driving future of a `Driven` connection; the connection counts as closed.
    ConnectionDriver,
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Callback::GetAddress => "get_address",
            Callback::Connect => "connect",
            Callback::OnEvent => "on_event",
            Callback::RetryDelay => "retry_delay",
            Callback::ConnectionClose => "the connection's close",
            Callback::HealthProbe => "the health probe",
            Callback::ConnectionDriver => "the connection's driving future",
        })
    }
}

/// Why one attempt failed: what `FailedToConnect` carries, and what
/// `connected_or_failed_to_connect` gives when the next attempt fails. Another attempt
/// follows (after the retry delay) unless the persistent connection is stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttemptError<E> {
    /// `get_address` returned this error.
    Address(Arc<E>),
    /// `connect` returned this error.
    Connect(Arc<E>),
    /// The attempt (fetch and dial together) did not finish within the connect timeout.
    TimedOut(Duration),
    /// `get_address` or `connect` panicked; the panic was also given to the panic hook.
    Panicked {
        /// Which callback.
        during: Callback,
        /// The panic's message.
        message: Arc<str>,
    },
}

impl<E> AttemptError<E> {
    /// Your error inside, if `get_address` or `connect` returned one.
    pub fn user_error(&self) -> Option<&E> {
        match self {
            AttemptError::Address(e) | AttemptError::Connect(e) => Some(e),
            AttemptError::TimedOut(_) | AttemptError::Panicked { .. } => None,
        }
    }

    /// Whether the connect timeout ended the attempt.
    pub fn is_timeout(&self) -> bool {
        matches!(self, AttemptError::TimedOut(_))
    }

    /// Whether a callback panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, AttemptError::Panicked { .. })
    }
}

impl<E: fmt::Debug + 'static> AttemptError<E> {
    /// The key the driver's Machine compares failures by (R4): errors with the same key
    /// are "equal", and a repeat is not reported.
    ///
    /// The classes are those of the default key ([`error_key`], a hash of the `Debug`
    /// text), but an OS error (`std::io::Error` with a raw OS code, what a refused or
    /// unreachable dial gives) is keyed by its step and code without formatting it: its
    /// `Debug` text is made of exactly those, and formatting it builds the OS message in a
    /// `String`, an allocation on every failed attempt.
    pub(crate) fn key(&self) -> u64 {
        let step = match self {
            AttemptError::Address(_) => 0,
            AttemptError::Connect(_) => 1,
            AttemptError::TimedOut(_) | AttemptError::Panicked { .. } => return error_key(self),
        };
        let os_code = self
            .user_error()
            .and_then(|e| (e as &dyn Any).downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        match os_code {
            // Tagged so that a key made here is unlike any text's hash but by chance.
            Some(code) => OS_ERROR_KEY ^ (u64::from(code as u32) * 2 + step),
            None => error_key(self),
        }
    }
}

/// What an OS error's key is made from ("OS" in ASCII, then a fixed pattern).
const OS_ERROR_KEY: u64 = 0x4f53_a5c3_96e1_7d2b;

impl<E> Clone for AttemptError<E> {
    fn clone(&self) -> Self {
        match self {
            AttemptError::Address(e) => AttemptError::Address(e.clone()),
            AttemptError::Connect(e) => AttemptError::Connect(e.clone()),
            AttemptError::TimedOut(d) => AttemptError::TimedOut(*d),
            AttemptError::Panicked { during, message } => AttemptError::Panicked {
                during: *during,
                message: message.clone(),
            },
        }
    }
}

impl<E: fmt::Display> fmt::Display for AttemptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Address(e) => write!(f, "could not get the address: {e}"),
            AttemptError::Connect(e) => write!(f, "could not connect: {e}"),
            AttemptError::TimedOut(after) => write!(
                f,
                "the attempt did not finish within the connect timeout of {after:?}"
            ),
            AttemptError::Panicked { during, message } => {
                write!(f, "{during} panicked: {message}")
            }
        }
    }
}

impl<E: StdError + 'static> StdError for AttemptError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.user_error().map(|e| e as &(dyn StdError + 'static))
    }
}

/// Why no connection will ever come: the persistent connection was closed, or aborted.
/// What `connected_or_closed` gives once it is so.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stopped<E> {
    /// `close` was called, the last handle was dropped, or
    /// `close_when_current_connection_is_closed` took effect.
    Closed,
    /// `connect` called `AttemptContext::abort` with this
    /// reason.
    Aborted(Arc<E>),
}

impl<E> Stopped<E> {
    /// The abort's reason, if it was aborted.
    pub fn reason(&self) -> Option<&E> {
        match self {
            Stopped::Aborted(e) => Some(e),
            Stopped::Closed => None,
        }
    }
}

impl<E> Clone for Stopped<E> {
    fn clone(&self) -> Self {
        match self {
            Stopped::Closed => Stopped::Closed,
            Stopped::Aborted(e) => Stopped::Aborted(e.clone()),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Stopped<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Closed => f.write_str("the persistent connection is closed"),
            Stopped::Aborted(e) => write!(f, "the persistent connection was aborted: {e}"),
        }
    }
}

impl<E: StdError + 'static> StdError for Stopped<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.reason().map(|e| e as &(dyn StdError + 'static))
    }
}

/// What `connected_or_failed_to_connect` gives when no connection comes: the next
/// attempt failed (another may follow), or the persistent connection stopped (none will).
#[derive(Debug)]
pub enum ConnectError<E> {
    /// The next attempt failed.
    Attempt(AttemptError<E>),
    /// The persistent connection is closed or aborted.
    Stopped(Stopped<E>),
}

impl<E> ConnectError<E> {
    /// Whether no connection will ever come, as opposed to one failed attempt.
    pub fn is_stopped(&self) -> bool {
        matches!(self, ConnectError::Stopped(_))
    }
}

impl<E> Clone for ConnectError<E> {
    fn clone(&self) -> Self {
        match self {
            ConnectError::Attempt(e) => ConnectError::Attempt(e.clone()),
            ConnectError::Stopped(s) => ConnectError::Stopped(s.clone()),
        }
    }
}

impl<E> From<AttemptError<E>> for ConnectError<E> {
    fn from(error: AttemptError<E>) -> Self {
        ConnectError::Attempt(error)
    }
}

impl<E> From<Stopped<E>> for ConnectError<E> {
    fn from(stopped: Stopped<E>) -> Self {
        ConnectError::Stopped(stopped)
    }
}

/// Prints the error inside as it is: the variant adds nothing a reader needs.
impl<E: fmt::Display> fmt::Display for ConnectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Attempt(e) => e.fmt(f),
            ConnectError::Stopped(s) => s.fmt(f),
        }
    }
}

/// Transparent: `source()` is that of the error inside (your error, when there is one).
impl<E: StdError + 'static> StdError for ConnectError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConnectError::Attempt(e) => e.source(),
            ConnectError::Stopped(s) => s.source(),
        }
    }
}

/// A panic in one of your callbacks, as given to the panic hook.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    /// The attempt errors the keys are checked on: each step with OS errors of many codes,
    /// and the cases the key leaves to the default (other `io::Error`s, the driver's own).
    fn samples() -> Vec<AttemptError<io::Error>> {
        let mut all = Vec::new();
        for code in [
            0, 1, 2, 4, 11, 13, 98, 99, 104, 110, 111, 113, 255, 256, 4096,
        ] {
            all.push(AttemptError::Address(Arc::new(os(code))));
            all.push(AttemptError::Connect(Arc::new(os(code))));
            // A second error of the same code: a class has more than one member.
            all.push(AttemptError::Connect(Arc::new(os(code))));
        }
        for kind in [io::ErrorKind::ConnectionRefused, io::ErrorKind::NotFound] {
            all.push(AttemptError::Connect(Arc::new(kind.into())));
            all.push(AttemptError::Address(Arc::new(io::Error::new(
                kind, "down",
            ))));
        }
        all.push(AttemptError::TimedOut(Duration::from_secs(1)));
        all.push(AttemptError::Panicked {
            during: Callback::Connect,
            message: "boom".into(),
        });
        all
    }

    /// The driver's key puts two attempt errors in one class exactly when their `Debug`
    /// texts (what the default key hashes) are equal: same step and same OS code.
    #[test]
    fn r4_the_drivers_key_has_the_classes_of_the_debug_text() {
        let all = samples();
        for a in &all {
            for b in &all {
                let (ta, tb) = (format!("{a:?}"), format!("{b:?}"));
                assert_eq!(
                    a.key() == b.key(),
                    ta == tb,
                    "keys of {ta} and {tb}: {:#x}, {:#x}",
                    a.key(),
                    b.key()
                );
            }
        }
    }

    /// An OS error's key is made from its step and code, not from its text; every other
    /// error gets the default key.
    #[test]
    fn r4_os_errors_are_keyed_by_step_and_code() {
        for e in samples() {
            let os_code = e.user_error().and_then(io::Error::raw_os_error);
            match (&e, os_code) {
                (AttemptError::Address(_), Some(code)) => {
                    assert_eq!(e.key(), OS_ERROR_KEY ^ (u64::from(code as u32) * 2));
                }
                (AttemptError::Connect(_), Some(code)) => {
                    assert_eq!(e.key(), OS_ERROR_KEY ^ (u64::from(code as u32) * 2 + 1));
                }
                _ => assert_eq!(e.key(), error_key(&e), "{e:?}"),
            }
        }
        // Not an `io::Error`: the default key, even when it names an OS code.
        let text: AttemptError<String> = AttemptError::Connect(Arc::new("os error 111".into()));
        assert_eq!(text.key(), error_key(&text));
    }
}
