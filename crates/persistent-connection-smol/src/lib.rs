//! Keeps a connection to a service alive, on smol: looks up where the service is, dials
//! it, hands the connection out, notices when it dies and dials again.
//!
//! Glue only: the runtime-agnostic driver of [`persistent_connection_driver`] on smol's global
//! executor and `async-io` timers. The API is the same as `persistent-connection-tokio`'s
//! and `persistent-connection-async-std`'s.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use persistent_connection_smol::{builder, Driven};
//! use smol::io::AsyncReadExt;
//!
//! smol::block_on(async {
//!     let conn = builder(
//!         "echo",
//!         || async { Ok::<SocketAddr, std::io::Error>("127.0.0.1:7000".parse().unwrap()) },
//!         // The read loop drives the connection: when the peer goes away, it ends.
//!         |addr, _ctx| async move {
//!             let stream = smol::net::TcpStream::connect(addr).await?;
//!             let mut reader = stream.clone();
//!             let read_loop = async move {
//!                 let mut buf = [0u8; 64];
//!                 while reader.read(&mut buf).await? > 0 {}
//!                 Ok::<(), std::io::Error>(())
//!             };
//!             Ok(Driven::new(stream, read_loop))
//!         },
//!     )
//!     .retry_delay(|_failures| Duration::from_secs(1))
//!     .spawn();
//!     let stream = conn.connected().await; // derefs to the TcpStream, for writing
//!     # drop(stream);
//!     conn.close().await;
//! });
//! ```
#![forbid(unsafe_code)]

pub use persistent_connection_driver::*;

/// The smol [`Runtime`]: spawns on smol's global executor, sleeps on `async-io` timers
/// (through [`AsyncIoSpawn`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl AsyncIoSpawn for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }
}

persistent_connection_driver::adapter_builder!(Smol, "smol's global executor");
