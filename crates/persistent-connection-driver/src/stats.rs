//! Live statistics of a persistent connection: a cheap snapshot, ready to export to any
//! metrics system.

use std::sync::Arc;
use std::time::{Duration, Instant};

use persistent_connection::State;

/// A snapshot of what a persistent connection has done and is doing, from
/// [`PersistentConnection::stats`](crate::PersistentConnection::stats). Counters only
/// grow; times are on the runtime's clock ([`Runtime::now`](crate::Runtime::now)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Attempts started (each fetches an address, then dials).
    pub attempts: u64,
    /// Attempts that failed, reported or not (a repeated error is not reported again, R4).
    pub failures: u64,
    /// Attempts that succeeded: connections that became current.
    pub connections: u64,
    /// Current connections that closed (`Disconnected` events).
    pub disconnections: u64,
    /// Health probes that failed, timed out or panicked (R17).
    pub health_check_failures: u64,
    /// Failed attempts since the count last went back to 0 (what the retry policy sees).
    pub consecutive_failures: u32,
    /// What it is doing now.
    pub state: State,
    /// Since when it has been doing that.
    pub state_since: Instant,
    /// How long the current connection has been current, if there is one.
    pub uptime: Option<Duration>,
    /// The text of the last failed attempt's error, if any attempt has failed.
    pub last_failure: Option<Arc<str>>,
    /// Why the last current connection ended, if it said (see `Ending`).
    pub last_ending: Option<Arc<str>>,
}

/// The counters behind [`Stats`], kept with the shared state.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) attempts: u64,
    pub(crate) failures: u64,
    pub(crate) connections: u64,
    pub(crate) disconnections: u64,
    pub(crate) health_check_failures: u64,
    pub(crate) state_since: Instant,
    pub(crate) connected_at: Option<Instant>,
}

impl Counters {
    pub(crate) fn new(now: Instant) -> Self {
        Counters {
            attempts: 0,
            failures: 0,
            connections: 0,
            disconnections: 0,
            health_check_failures: 0,
            state_since: now,
            connected_at: None,
        }
    }
}
