//! The runtime-agnostic driver: runs one [`Machine`](crate::Machine), calls your
//! `get_address`, `connect` and `on_event`, sleeps, and serves the handle's methods.
//!
//! It is written once against the small [`Runtime`] trait; the adapter crates only
//! implement that trait for their runtime and re-export this API.

#[allow(unused_imports)]
use std::prelude::rust_2024::*;

mod connection;
mod error;
mod handle;
mod runtime;
mod streams;
mod task;

pub use connection::{CloseSignal, Connection, Tracked};
pub use error::{Callback, Error, PanicReport};
pub use handle::{AttemptContext, Builder, PersistentConnection, WeakPersistentConnection};
pub use runtime::{BoxFuture, Runtime, Sleep, VirtualClock, VirtualRuntime};
pub use streams::{Events, Lagged, StateChanges};

/// The events a driver reports: the core's [`Event`](crate::Event) with the driver's flat
/// [`Error`] in `FailedToConnect`.
pub type DriverEvent<A, C, E> = crate::Event<A, C, Error<E>>;

/// The timer of the runtimes built on `async-io` (async-std and smol): one implementation
/// for both adapters.
#[cfg(feature = "async-io")]
pub fn async_io_sleep(duration: std::time::Duration) -> BoxFuture<()> {
    Box::pin(async move {
        // A duration too long for `Instant` makes a timer that never fires: fine for a delay.
        async_io::Timer::after(duration).await;
    })
}

/// Defines an adapter crate's public API: the driver's re-exports and a `builder` function
/// that runs on `$runtime` (an expression making the adapter's [`Runtime`]).
///
/// Each adapter is then its `Runtime` impl and one call of this macro: switching runtime
/// is a change of crate name.
#[macro_export]
macro_rules! adapter_api {
    ($runtime:expr, $name:literal) => {
        pub use $crate::driver::{
            AttemptContext, BoxFuture, Builder, Callback, CloseSignal, Connection, DriverEvent,
            Error, Events, Lagged, PanicReport, PersistentConnection, Runtime, StateChanges,
            Tracked, VirtualClock, VirtualRuntime, WeakPersistentConnection,
        };
        pub use $crate::{AttemptId, Event, Exponential, Jitter, RetryPolicy, State};

        #[doc = concat!(
            "Starts building a persistent connection to `server_name` on ", $name, ": ",
            "`get_address` is called before every attempt, `connect` dials what it returned ",
            "(with the attempt's context, which can `abort`). Set options on the [`Builder`], ",
            "then call [`Builder::spawn`]."
        )]
        pub fn builder<A, C, E, G, GF, K, KF>(
            server_name: impl ::core::convert::Into<::std::string::String>,
            get_address: G,
            connect: K,
        ) -> Builder<A, C, E>
        where
            A: ::core::clone::Clone
                + ::core::cmp::PartialEq
                + ::core::fmt::Debug
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static,
            C: Connection,
            E: ::core::fmt::Debug
                + ::core::fmt::Display
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static,
            G: ::core::ops::Fn() -> GF + ::core::marker::Send + ::core::marker::Sync + 'static,
            GF: ::core::future::Future<Output = ::core::result::Result<A, E>>
                + ::core::marker::Send
                + 'static,
            K: ::core::ops::Fn(A, AttemptContext<E>) -> KF
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static,
            KF: ::core::future::Future<Output = ::core::result::Result<C, E>>
                + ::core::marker::Send
                + 'static,
        {
            Builder::new($runtime, server_name, get_address, connect)
        }
    };
}
