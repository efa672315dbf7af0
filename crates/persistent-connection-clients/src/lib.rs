//! Real clients kept alive by a persistent connection: a hyper HTTP/2 client and a
//! tokio-postgres client, with the servers their examples and tests start.
//!
//! Most Rust clients come in two parts: a *handle* you make requests with, and a
//! *driving future* that does the connection's I/O and ends when the connection dies
//! (hyper's `SendRequest` and `Connection`, tokio-postgres's `Client` and `Connection`).
//! [`Driven::new(handle, driving)`](persistent_connection_tokio::Driven) makes the pair one
//! connection: return it from the `connect` closure of
//! [`persistent_connection_tokio::builder`], and the persistent connection
//!
//! - runs the driving future on Tokio for you (do **not** `tokio::spawn` it yourself);
//! - counts the connection as closed the moment that future ends, reports `Disconnected`
//!   and dials again, looking the address up again first (so a catalog can move you to
//!   another replica);
//! - hands out, from `connected()`, only a connection whose driving future is still running
//!   (a clone of the `Driven`, which dereferences to the handle);
//! - drops the driving future, and with it the socket, on `close()`;
//! - tells why the last connection ended (`last_ending()`: the peer closed it, an error, a
//!   panic, or closed from this side), also from the `Disconnected` handler.
//!
//! The rule for your code: take the connection from `connected()` for every request (or
//! every batch of requests) instead of keeping one for ever. A request that was already on
//! the wire when the connection died still fails (retry it if it is idempotent), but no new
//! request goes to a connection that is known to be dead.
//!
//! # HTTP/2 with hyper 1.x
//!
//! `http2::handshake` gives `(SendRequest, Connection)`. HTTP/2 multiplexes, so one
//! connection serves every task; `SendRequest::send_request` takes `&mut self`, so clone
//! the handle (cheap) for each request.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper::client::conn::http2::{self, SendRequest};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use persistent_connection_tokio::{Driven, Event, builder};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! # async fn demo() -> Result<(), BoxError> {
//! // Where the service is: here a shared address your discovery code updates.
//! let catalog = Arc::new(Mutex::new("127.0.0.1:8080".parse::<SocketAddr>()?));
//!
//! let lookup = catalog.clone();
//! let api = builder(
//!     "api",
//!     // Looked up before every attempt.
//!     move || {
//!         let addr = *lookup.lock().unwrap();
//!         async move { Ok::<_, BoxError>(addr) }
//!     },
//!     // Dials it: TCP, then the HTTP/2 handshake; the pair becomes one connection.
//!     |addr: SocketAddr, _ctx| async move {
//!         let tcp = tokio::net::TcpStream::connect(addr).await?;
//!         tcp.set_nodelay(true)?;
//!         let (send_request, connection) =
//!             http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
//!         // hyper knows a moment before its connection future ends that the connection
//!         // is dead: with `closed_when`, `connected()` never hands such a one out.
//!         let conn = Driven::new(send_request, connection).closed_when(|s| s.is_closed());
//!         Ok::<_, BoxError>(conn)
//!     },
//! )
//! .retry_delay(|_failures| Duration::from_millis(200))
//! .on_event(|event| async move {
//!     if let Event::FailedToConnect(e) = &event {
//!         eprintln!("api: {e}");
//!     }
//! })
//! .spawn();
//!
//! // For each request: the live connection (waits while there is none), a clone of its
//! // handle, the request.
//! let mut send_request: SendRequest<Full<Bytes>> = api.connected().await.handle().clone();
//! let request = hyper::Request::get("http://api/ping").body(Full::new(Bytes::new()))?;
//! let response = send_request.send_request(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! println!("{}", String::from_utf8_lossy(&body));
//!
//! api.close().await; // drops the connection and stops for good
//! # Ok(())
//! # }
//! ```
//!
//! `examples/hyper_restart.rs` runs this against an HTTP/2 server that is killed and
//! started again on another port.
//!
//! # PostgreSQL with tokio-postgres
//!
//! `Config::connect(NoTls)` gives `(Client, Connection)`. `Client`'s methods take `&self`,
//! so the `Driven` from `connected()` is used as it is.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use persistent_connection_tokio::{Driven, Event, builder};
//! use tokio_postgres::{Client, Config, NoTls};
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! # async fn demo() -> Result<(), BoxError> {
//! let db = builder(
//!     "db",
//!     || async { Ok::<_, BoxError>("127.0.0.1:5432".parse::<SocketAddr>()?) },
//!     |addr: SocketAddr, _ctx| async move {
//!         let (client, connection) = Config::new()
//!             .host(addr.ip().to_string())
//!             .port(addr.port())
//!             .user("postgres")
//!             .dbname("postgres")
//!             .connect_timeout(Duration::from_secs(5))
//!             .connect(NoTls)
//!             .await?;
//!         Ok::<_, BoxError>(Driven::new(client, connection))
//!     },
//! )
//! .retry_delay(|_failures| Duration::from_millis(200))
//! .on_event(|event| async move {
//!     if let Event::Disconnected = event {
//!         eprintln!("db: disconnected");
//!     }
//! })
//! .spawn();
//!
//! let client: Driven<Client> = db.connected().await;
//! let row = client.query_one("SELECT 1 + 1", &[]).await?;
//! assert_eq!(row.get::<_, i32>(0), 2);
//!
//! db.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Prepared statements belong to the connection that prepared them: prepare again on the
//! new `Client` after a reconnect. `examples/postgres_restart.rs` restarts a real server
//! under this code, and times the reconnect against a hand-written loop.
//!
//! # Test support
//!
//! [`http2_server`] is an in-process hyper HTTP/2 server that can be killed;
//! [`postgres_server`] makes throw-away PostgreSQL clusters with `initdb` and `pg_ctl`.
//! The tests of this crate and its examples use them.

pub mod http2_server;
pub mod postgres_server;

/// A port that was free on 127.0.0.1 a moment ago (bound, read, released).
///
/// # Panics
/// If no port can be bound at all.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The workspace README's examples, compiled as doctests here, where the clients they use
/// (tokio-postgres, hyper) are dependencies.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
