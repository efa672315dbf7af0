//! Keeps a connection to a service alive, on Tokio: looks up where the service is, dials
//! it, hands the connection out, notices when it dies and dials again.
//!
//! This crate is glue: it runs the runtime-agnostic driver of [`persistent_connection_driver`] on
//! Tokio and re-exports its API. The same API exists for async-std and smol; switching
//! runtime is a change of crate name.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use persistent_connection_tokio::{builder, Event, Tracked};
//!
//! # async fn demo() {
//! let conn = builder(
//!     "echo",
//!     // Looked up before every attempt: a catalog, DNS, a config file...
//!     || async { Ok::<SocketAddr, std::io::Error>("127.0.0.1:7000".parse().unwrap()) },
//!     // Dials the address; the attempt's context can abort for good.
//!     |addr, _ctx| async move { tokio::net::TcpStream::connect(addr).await.map(Tracked::new) },
//! )
//! .retry_delay(|_failures| Duration::from_secs(1))
//! .on_event(|event| async move {
//!     if let Event::FailedToConnect(e) = &event {
//!         eprintln!("echo: {e}");
//!     }
//! })
//! .spawn();
//!
//! let stream = conn.connected().await; // the live connection, now or when there is one
//! # drop(stream);
//! conn.close().await; // closes it, cancels any attempt, and stops for good
//! # }
//! ```
#![forbid(unsafe_code)]

/// The workspace README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

use std::time::Duration;

pub use persistent_connection_driver::*;

persistent_connection_driver::adapter_builder!(
    Tokio::current(),
    "the current Tokio runtime (panics outside one)"
);

/// The Tokio [`Runtime`]: spawns on a Tokio runtime, sleeps with `tokio::time` (so paused
/// test time works).
#[derive(Clone, Debug)]
pub struct Tokio {
    handle: tokio::runtime::Handle,
}

impl Tokio {
    /// The runtime this is called from.
    ///
    /// # Panics
    /// Outside a Tokio runtime (as `tokio::spawn` does).
    pub fn current() -> Self {
        Tokio {
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// A specific runtime.
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        Tokio { handle }
    }
}

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<()>) {
        drop(self.handle.spawn(task));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    /// Tokio's clock, so that statistics follow paused test time too.
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}
