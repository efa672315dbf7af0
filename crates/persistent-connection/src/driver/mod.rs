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
pub use handle::{AttemptContext, Builder, PersistentConnection};
pub use runtime::{BoxFuture, Runtime, Sleep, VirtualClock, VirtualRuntime};
pub use streams::{Events, Lagged, StateChanges};

/// The events a driver reports: the core's [`Event`](crate::Event) with the driver's flat
/// [`Error`] in `FailedToConnect`.
pub type DriverEvent<A, C, E> = crate::Event<A, C, Error<E>>;
