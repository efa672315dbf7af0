//! Keeps a connection to a service alive on any async runtime: the runtime-agnostic driver
//! of the [`persistent_connection`] Machine.
//!
//! It owns one Machine, calls your `get_address`, `connect` and `on_event`, sleeps when the
//! Machine asks, watches the current connection, and serves the [`PersistentConnection`]
//! handle. It is written once against the small [`Runtime`] trait (spawn a task, sleep);
//! the adapter crates (`persistent-connection-tokio`, `-async-std`, `-smol`) implement it
//! and re-export this API. Implement it yourself to run on anything else, as here, on
//! plain threads and a [`VirtualClock`]:
//!
//! ```
//! use std::future::Future;
//! use std::pin::pin;
//! use std::sync::Arc;
//! use std::task::{Context, Poll, Wake};
//! use std::time::Duration;
//! use persistent_connection_driver::{
//!     Backoff, BoxFuture, Builder, CloseSignal, Runtime, VirtualClock,
//! };
//!
//! /// The smallest executor there is: poll on this thread, park until woken.
//! fn block_on<F: Future>(future: F) -> F::Output {
//!     struct Unpark(std::thread::Thread);
//!     impl Wake for Unpark {
//!         fn wake(self: Arc<Self>) { self.0.unpark() }
//!     }
//!     let waker = Arc::new(Unpark(std::thread::current())).into();
//!     let mut cx = Context::from_waker(&waker);
//!     let mut future = pin!(future);
//!     loop {
//!         if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
//!             return out;
//!         }
//!         std::thread::park();
//!     }
//! }
//!
//! /// Each task on its own thread; time from a virtual clock.
//! struct Threads(VirtualClock);
//! impl Runtime for Threads {
//!     fn spawn(&self, task: BoxFuture<()>) {
//!         std::thread::spawn(move || block_on(task));
//!     }
//!     fn sleep(&self, duration: Duration) -> BoxFuture<()> {
//!         Box::pin(self.0.sleep(duration))
//!     }
//! }
//!
//! let clock = VirtualClock::new();
//! // The "connection" is a bare close signal; the address a port number.
//! let conn = Builder::new(
//!     Threads(clock.clone()),
//!     "demo",
//!     || async { Ok::<u16, std::io::Error>(7000) },
//!     |_port, _ctx| async { Ok(CloseSignal::new()) },
//! )
//! .retry_policy(Backoff::Constant(Duration::from_secs(1)))
//! .spawn();
//!
//! block_on(async {
//!     let first = conn.connected().await;
//!     first.close(); // the peer went away: Disconnected, and the next cycle
//!     clock.next_timer().await; // the retry timer of the successful attempt
//!     clock.advance_to_next();
//!     let second = conn.connected().await;
//!     assert!(!second.is_closed());
//!     conn.close().await;
//! });
//! ```
//!
//! # The contract
//!
//! What the handle promises (when `connected` resolves, what `close` cancels, what a
//! stopped persistent connection tells its waiters) is rules R1..R19 of the repository's
//! `CONTRACT.md`, also rendered in the core crate's docs (`persistent_connection::contract`).
//!
//! # Errors
//!
//! One type per question: [`AttemptError`] (why did this attempt fail?), [`Stopped`] (why
//! will no connection come?), and [`ConnectError`], either of them, for
//! [`PersistentConnection::connected_or_failed_to_connect`].
#![forbid(unsafe_code)]

mod builder;
mod catch;
mod connection;
mod context;
mod driven;
mod error;
mod handle;
mod health;
mod hooks;
mod runtime;
mod shared;
mod spawn;
mod stats;
mod streams;
mod task;
mod waiters;

pub use builder::{Backoff, Builder};
pub use connection::{CloseSignal, Connection, Ending, Tracked};
pub use context::AttemptContext;
pub use driven::{DriveOutput, Driven};
pub use error::{AttemptError, Callback, ConnectError, DriverEvent, PanicReport, Stopped};
pub use handle::{PersistentConnection, WeakPersistentConnection};
pub use health::HealthCheck;
pub use persistent_connection::{AttemptId, Event, Exponential, Jitter, State};
#[cfg(feature = "async-io")]
pub use runtime::AsyncIoSpawn;
pub use runtime::{BoxFuture, BoxTimer, Runtime, Sleep, Timer, VirtualClock, VirtualRuntime};
pub use stats::Stats;
pub use streams::{Events, Lagged, StateChanges};

/// Defines an adapter's `builder` function: [`Builder::new`] on the runtime `$runtime`
/// (an expression), documented as running on `$on`. The bounds are written once, here.
#[macro_export]
macro_rules! adapter_builder {
    ($runtime:expr, $on:literal) => {
        #[doc = concat!(
            "Starts building a persistent connection to `server_name` on ", $on, ": ",
            "`get_address` is called before every attempt, `connect` dials what it returned ",
            "(with the attempt's context, which can `abort`). Set options on the [`Builder`], ",
            "then call [`Builder::spawn`]."
        )]
        pub fn builder<A, C, E, G, GF, K, KF>(
            server_name: impl ::core::convert::Into<::std::string::String>,
            get_address: G,
            connect: K,
        ) -> $crate::Builder<A, C, E>
        where
            A: ::core::clone::Clone + ::core::cmp::PartialEq + ::core::fmt::Debug,
            A: ::core::marker::Send + ::core::marker::Sync + 'static,
            C: $crate::Connection,
            E: ::core::fmt::Debug + ::core::fmt::Display,
            E: ::core::marker::Send + ::core::marker::Sync + 'static,
            G: ::core::ops::Fn() -> GF + ::core::marker::Send + ::core::marker::Sync + 'static,
            GF: ::core::future::Future<Output = ::core::result::Result<A, E>>,
            GF: ::core::marker::Send + 'static,
            K: ::core::ops::Fn(A, $crate::AttemptContext<E>) -> KF,
            K: ::core::marker::Send + ::core::marker::Sync + 'static,
            KF: ::core::future::Future<Output = ::core::result::Result<C, E>>,
            KF: ::core::marker::Send + 'static,
        {
            $crate::Builder::new($runtime, server_name, get_address, connect)
        }
    };
}
