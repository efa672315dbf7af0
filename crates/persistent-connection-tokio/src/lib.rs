//! Keeps a connection to a service alive, on Tokio: looks up where the service is, dials
//! it, hands the connection out, notices when it dies and dials again.
//!
//! This crate is glue: it runs the runtime-agnostic driver of [`persistent_connection_driver`] on
//! Tokio and re-exports its API. The same API exists for async-std and smol; switching
//! runtime is a change of crate name.
//!
//! A server that drops every connection a moment after accepting it, and a persistent
//! connection that notices each death by itself and dials again:
//!
//! ```
//! use std::time::Duration;
//! use persistent_connection_tokio::{builder, Connection, Driven};
//! use tokio::io::AsyncReadExt;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let server = listener.local_addr()?;
//!     tokio::spawn(async move {
//!         while let Ok((stream, _)) = listener.accept().await {
//!             drop(stream); // the peer goes away
//!         }
//!     });
//!
//!     let conn = builder(
//!         "flaky",
//!         // Looked up before every attempt: a catalog, DNS, a config file...
//!         move || async move { Ok::<_, std::io::Error>(server) },
//!         // Dials it. The read loop is the connection's driving future: when the peer
//!         // goes away it ends, and the persistent connection dials again.
//!         |addr, _ctx| async move {
//!             let mut stream = tokio::net::TcpStream::connect(addr).await?;
//!             let read_loop = async move {
//!                 let mut buf = [0u8; 64];
//!                 while stream.read(&mut buf).await? > 0 {}
//!                 Ok::<(), std::io::Error>(())
//!             };
//!             Ok(Driven::new(addr, read_loop))
//!         },
//!     )
//!     .retry_delay(|_failures| Duration::from_millis(10))
//!     .spawn();
//!
//!     let first = conn.connected().await; // the live connection, now or when there is one
//!     first.closed().await; // the server dropped it...
//!     let second = conn.connected().await; // ...and here is the next one
//!     assert_eq!(*second, server);
//!     conn.close().await; // closes it, cancels any attempt, and stops for good
//!     assert!(conn.stats().connections >= 2);
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]

use std::pin::Pin;
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
    /// Outside a Tokio runtime (as `tokio::spawn` does), and in one built without timers
    /// (`enable_time`), as its first sleep would.
    pub fn current() -> Self {
        Self::from_handle(tokio::runtime::Handle::current())
    }

    /// A specific runtime.
    ///
    /// # Panics
    /// If it was built without timers (`enable_time`).
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        // Tokio's first sleep panics on such a runtime; the driver makes its retry timer
        // only when an attempt first waits for it, so say it now rather than then. Making
        // a sleep registers nothing: this costs no timer.
        {
            let _inside = handle.enter();
            drop(tokio::time::sleep(Duration::ZERO));
        }
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

    /// `tokio::time::Sleep`, which can be moved: the retry timer allocates once.
    fn timer(&self, duration: Duration) -> BoxTimer {
        Box::pin(TokioTimer {
            sleep: tokio::time::sleep(duration),
        })
    }

    /// Tokio's clock, so that statistics follow paused test time too.
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    /// `now` is Tokio's clock.
    fn can_hold_timers(&self) -> bool {
        true
    }
}

pin_project_lite::pin_project! {
    /// A Tokio sleep as a [`Timer`] (the driver's trait; Tokio's type).
    struct TokioTimer {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl std::future::Future for TokioTimer {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl Timer for TokioTimer {
    fn reset(self: Pin<&mut Self>, duration: Duration) -> bool {
        let now = tokio::time::Instant::now();
        // As `tokio::time::sleep` does: a delay past what `Instant` holds is ~30 years.
        let deadline = now
            .checked_add(duration)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        self.project().sleep.reset(deadline);
        true
    }
}
