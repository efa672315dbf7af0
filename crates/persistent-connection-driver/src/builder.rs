//! The builder: what to call, how to retry, then `spawn`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use persistent_connection::{Config, Exponential, Jitter, RetryPolicy};

use crate::connection::Connection;
use crate::context::AttemptContext;
use crate::error::{DriverEvent, PanicReport};
use crate::health::HealthCheck;
use crate::hooks::{AttemptSlot, Hooks};
use crate::runtime::Runtime;
use crate::shared::{EVENT_BUFFER, ServerName};
use crate::streams::{Events, Lazy};

/// A retry policy the driver computes without calling your code (R7). For any other
/// function of the failure count, use [`Builder::retry_delay`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay before every attempt: the seed's policy (default: 10 s).
    Constant(Duration),
    /// `initial * multiplier^failures`, capped at `max` ([`Exponential::GRPC`]: gRPC's).
    Exponential(Exponential),
}

impl From<Backoff> for RetryPolicy {
    fn from(backoff: Backoff) -> Self {
        match backoff {
            Backoff::Constant(delay) => RetryPolicy::Constant(delay),
            Backoff::Exponential(e) => RetryPolicy::Exponential(e),
        }
    }
}

/// Sets up a persistent connection: what to call, how to retry, then
/// [`spawn`](Self::spawn). The adapter crates' `builder` functions make one for their
/// runtime.
pub struct Builder<A, C, E> {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) server_name: ServerName,
    pub(crate) config: Config,
    pub(crate) seed: Option<u64>,
    pub(crate) hooks: Hooks<A, C, E>,
    /// Made here, so that subscribers can exist before the task starts.
    pub(crate) events: Lazy<DriverEvent<A, C, E>>,
}

impl<A, C, E> Builder<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// A persistent connection to `server_name` that runs on `runtime`, looks the address
    /// up with `get_address` before every attempt, and dials it with `connect`.
    ///
    /// Defaults (the seed's): retry delay 10 s, +-30 % jitter, no connect timeout, no
    /// `on_event`, a random seed, callback panics printed to stderr.
    pub fn new<G, GF, K, KF>(
        runtime: impl Runtime,
        server_name: impl Into<String>,
        get_address: G,
        connect: K,
    ) -> Self
    where
        G: Fn() -> GF + Send + Sync + 'static,
        GF: Future<Output = Result<A, E>> + Send + 'static,
        K: Fn(A, AttemptContext<E>) -> KF + Send + Sync + 'static,
        KF: Future<Output = Result<C, E>> + Send + 'static,
    {
        Builder {
            runtime: Arc::new(runtime),
            server_name: ServerName::new(server_name.into()),
            config: Config::new(),
            seed: None,
            events: Lazy::new(EVENT_BUFFER),
            hooks: Hooks::new(Box::new(AttemptSlot::new(get_address, connect))),
        }
    }

    /// Runs on `runtime` instead (for example a [`VirtualClock`](crate::runtime::VirtualClock)'s).
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Arc::new(runtime);
        self
    }

    /// Hands every event to `handler` and waits for the future it returns before the next
    /// step (R6). A panic in it is reported to the panic hook and counts as finished.
    pub fn on_event<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(DriverEvent<A, C, E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .set_on_event(Box::new(move |event| Box::pin(handler(event))));
        self
    }

    /// Sets the retry policy (R7): [`Backoff::Constant`] (the default, 10 s) or
    /// [`Backoff::Exponential`]. Replaces an earlier [`retry_delay`](Self::retry_delay).
    pub fn retry_policy(mut self, policy: Backoff) -> Self {
        self.hooks.set_retry_delay(None);
        self.config = self.config.retry_policy(policy.into());
        self
    }

    /// Computes each attempt's retry delay (before jitter) from the number of consecutive
    /// failures so far. The seed's `retry_delay: unit -> span` is `|_| span`. Replaces an
    /// earlier [`retry_policy`](Self::retry_policy). A panic in it is reported and the
    /// attempt waits 10 s.
    pub fn retry_delay(mut self, delay: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.hooks.set_retry_delay(Some(Box::new(delay)));
        self.config = self.config.retry_policy(RetryPolicy::Custom);
        self
    }

    /// Sets the jitter (default +-30 %); [`Jitter::Off`] turns it off.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config = self.config.jitter(jitter);
        self
    }

    /// Seeds the jitter's random generator, for reproducible delays (R15). By default each
    /// persistent connection draws its own seed, so that a fleet of them does not retry in
    /// lockstep.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Fails an attempt (address fetch and dial together) that takes longer than
    /// `timeout`, with [`AttemptError::TimedOut`](crate::error::AttemptError::TimedOut):
    /// `Duration` or `Some(duration)` to set, `None` (the default, as in the seed) for no
    /// bound. A zero duration counts as no bound.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config = self.config.connect_timeout(timeout);
        self
    }

    /// Probes the current connection with `probe` as `check` says (R17): the first probe
    /// one interval after the connection became current, then one interval after each
    /// probe ends (probes never overlap), each bounded by `check.timeout`. After
    /// `check.failures` failed, timed-out or panicking probes in a row, the connection is
    /// closed (with [`Connection::close`]) and the cycle goes on as for any closed
    /// connection: `Disconnected`, then the next cycle. Nothing runs while no connection is
    /// current. Off by default, as in the seed.
    ///
    /// This is how a connection that died without a word (a peer behind a dead NAT, a
    /// partitioned switch) is noticed.
    pub fn health_check<P, PF, PE>(mut self, check: HealthCheck, probe: P) -> Self
    where
        P: Fn(C) -> PF + Send + Sync + 'static,
        PF: Future<Output = Result<(), PE>> + Send + 'static,
        PE: fmt::Display,
    {
        self.hooks.set_health(
            check,
            Box::new(move |conn| {
                let probing = probe(conn);
                Box::pin(async move { probing.await.map_err(|e| Arc::from(e.to_string())) })
            }),
        );
        self
    }

    /// Resets the failure count only once a connection has stayed current for `min_uptime`
    /// (R19): a connection that dies sooner counts as a failed attempt (no
    /// `FailedToConnect` is reported for it), so the backoff keeps growing against a server
    /// that accepts and drops at once. Default: the count goes back to 0 on `Connected`,
    /// as in the seed. `None` or a zero duration turns it off.
    pub fn min_uptime(mut self, min_uptime: impl Into<Option<Duration>>) -> Self {
        self.config = self.config.min_uptime(min_uptime);
        self
    }

    /// Called when one of your callbacks panics (default: print to stderr).
    pub fn on_callback_panic(
        mut self,
        hook: impl Fn(&PanicReport) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.set_panic_hook(Box::new(hook));
        self
    }

    /// The events of the persistent connection this builder will start, from its very first
    /// one (R14). `PersistentConnection::events` subscribes only from the moment it is
    /// called, by which time the task may have reported the first events.
    pub fn events(&self) -> Events<DriverEvent<A, C, E>> {
        Events::new(self.events.subscribe())
    }
}

impl<A, C, E> fmt::Debug for Builder<A, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("server_name", &self.server_name)
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// A seed no other persistent connection of this process (or, very likely, of any other)
/// shares: the standard library's per-process random keys, mixed with a counter.
pub(crate) fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_seeds_differ() {
        let seeds: std::collections::BTreeSet<u64> = (0..64).map(|_| random_seed()).collect();
        assert_eq!(
            seeds.len(),
            64,
            "every persistent connection draws its own seed"
        );
    }

    #[test]
    fn backoff_becomes_the_same_retry_policy() {
        let d = Duration::from_millis(250);
        assert_eq!(
            RetryPolicy::from(Backoff::Constant(d)),
            RetryPolicy::Constant(d)
        );
        assert_eq!(
            RetryPolicy::from(Backoff::Exponential(Exponential::GRPC)),
            RetryPolicy::Exponential(Exponential::GRPC)
        );
    }
}
