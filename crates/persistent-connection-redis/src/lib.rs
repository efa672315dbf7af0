//! A Redis connection kept alive by a persistent connection: looks up where Redis is before
//! every attempt, dials it, hands out a working [`RedisConnection`], notices at once when
//! the server goes away (even while idle), reports `Disconnected`, and dials again.
//!
//! The connection is the [`redis`] crate's `MultiplexedConnection` (Tokio), so every
//! command of `redis::AsyncCommands` works on it, and clones share one socket.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis::AsyncCommands;
//!
//! # async fn demo() -> redis::RedisResult<()> {
//! let redis = persistent_connection_redis::builder(
//!     "cache",
//!     // Looked up before every attempt: a catalog, Sentinel, a config file...
//!     || async { Ok("redis://127.0.0.1:6379/".to_string()) },
//! )
//! .retry_delay(|_failures| Duration::from_millis(100))
//! .spawn();
//!
//! let mut conn = redis.connected().await; // the live connection, now or when there is one
//! let () = conn.set("greeting", "hello").await?;
//! let greeting: String = conn.get("greeting").await?;
//! # drop(greeting);
//!
//! redis.close().await; // closes the socket and stops for good
//! # Ok(())
//! # }
//! ```
//!
//! # How it learns that the connection died
//!
//! A `MultiplexedConnection` is a handle onto a *driver* future that owns the socket: it
//! writes the queued commands and keeps reading, also while no command is pending, so it
//! sees the server's EOF or a socket error as soon as it happens, fails every pending
//! command, and then ends. The redis crate spawns that driver itself when you go through
//! `Client`, and then tells nobody when it ends; but
//! `MultiplexedConnection::new_with_config` hands it to the caller. [`Connector`] dials
//! the socket itself, takes the driver, and makes the connection a [`Driven`] one: the
//! persistent connection runs the driver on its own runtime from the moment the connection
//! is handed over, and the driver's end *is* the connection's death, so `Disconnected` is
//! reported at once, also for an idle connection. That was chosen over the alternatives:
//!
//! - the `Disconnection` push message: it needs a push sender, which the redis crate only
//!   accepts on RESP3 connections, and it would take the one push-sender slot from the user;
//! - closing the connection when a command fails with a connection-dropped error: an idle
//!   connection would never notice, so `Disconnected` would come late or never, and the
//!   persistent connection would keep handing out a dead connection.
//!
//! Owning the driver also makes `close` real: it drops the driver, and so the socket, even
//! while your code still holds clones of the connection (their commands then fail at once
//! with a broken-pipe I/O error). [`RedisConnection::ending`], and
//! [`PersistentConnection::last_ending`] in the `Disconnected` handler, say why it ended:
//! [`Ending::Finished`] (the server closed the socket or the socket failed: the redis
//! driver ends with `()` either way), [`Ending::Panicked`], or [`Ending::Closed`] (closed
//! from this side).
//!
//! Built-in dialling covers `redis://` (TCP) and `redis+unix://` addresses. For TLS, dial
//! the stream yourself and use [`Connector::dial_stream`].
//!
//! # Errors
//!
//! The driver's error types are re-exported, with `E = RedisError`: [`AttemptError`] (why
//! one attempt failed: what `FailedToConnect` carries; the `RedisError` of the lookup or
//! the dial is its [`user_error`](AttemptError::user_error)), [`Stopped`] (what
//! `connected_or_closed` gives once the persistent connection is closed or aborted), and
//! [`ConnectError`], either of them, from `connected_or_failed_to_connect`.
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};

pub use persistent_connection_tokio::{
    AttemptContext, AttemptError, Backoff, BoxFuture, Builder, CloseSignal, ConnectError,
    Connection, DriveOutput, Driven, DriverEvent, Ending, Event, Events, Exponential, Jitter,
    Lagged, PersistentConnection, Runtime, State, Stopped, Tokio, WeakPersistentConnection,
};

/// A persistent connection to Redis; `A` is the address `get_address` returns (a
/// `redis://` URL as a `String`, a `(host, port)` pair, ...).
pub type PersistentRedis<A = String> = PersistentConnection<A, RedisConnection, RedisError>;

/// A live Redis connection: a `MultiplexedConnection` and its driver, as a [`Driven`]
/// connection (the persistent connection runs the driver; the connection closes when the
/// driver ends, or when [`close`](Connection::close) drops it). Send commands with
/// `redis::AsyncCommands` or `Cmd::query_async` on it (it implements
/// `redis::aio::ConnectionLike`); once it is closed they fail at once.
///
/// Cheap to clone; clones share the socket.
#[derive(Clone, Debug)]
pub struct RedisConnection {
    /// This clone's handle: redis sends commands through `&mut`, which a `Driven`'s shared
    /// handle cannot give, so each clone keeps its own.
    conn: MultiplexedConnection,
    /// The driver, run and watched as a `Driven` connection's.
    driven: Driven<()>,
}

impl RedisConnection {
    /// `conn` driven by `driver`, as `MultiplexedConnection::new_with_config` returns them.
    /// The driver does not run yet: hand the connection to a persistent connection (from
    /// its `connect`), which runs it on its runtime; to use the connection on its own,
    /// start the driver yourself with `runtime.spawn(conn.take_driver().unwrap())`, as
    /// [`Connector::connect`] does.
    pub fn new(
        conn: MultiplexedConnection,
        driver: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        RedisConnection {
            conn,
            driven: Driven::new((), driver),
        }
    }

    /// A clone of the underlying `MultiplexedConnection`. It shares the socket: once this
    /// connection is closed its commands fail too.
    pub fn multiplexed(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// Why the connection ended, once it has: [`Ending::Finished`] when the driver ended
    /// (the server closed the socket, or it failed), [`Ending::Closed`] after `close`.
    pub fn ending(&self) -> Option<Ending> {
        self.driven.ending()
    }
}

/// All of it is the [`Driven`]'s.
impl Connection for RedisConnection {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.driven.close()
    }

    fn is_closed(&self) -> bool {
        self.driven.is_closed()
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.driven.closed()
    }

    fn take_driver(&self) -> Option<BoxFuture<()>> {
        self.driven.take_driver()
    }

    fn ending(&self) -> Option<Ending> {
        self.driven.ending()
    }
}

/// The error a command on a closed connection fails with: an I/O error (broken pipe), so
/// `RedisError::is_connection_dropped` is true, that says what happened.
fn closed_error() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection to Redis is closed (the server went away, or it was closed); \
         ask the persistent connection for the current one",
    ))
}

impl ConnectionLike for RedisConnection {
    /// Fails at once with a broken-pipe I/O error if the connection is closed.
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if self.is_closed() {
            return Box::pin(std::future::ready(Err(closed_error())));
        }
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if self.is_closed() {
            return Box::pin(std::future::ready(Err(closed_error())));
        }
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Dials Redis and makes [`RedisConnection`]s: the `connect` of a persistent connection.
///
/// Defaults: the redis crate's `AsyncConnectionConfig::new()` (a command that gets no
/// answer within 500 ms fails with a timeout), and a 1 s limit on dialling plus the
/// handshake, as the redis crate's own `Client` has.
#[derive(Clone, Debug)]
pub struct Connector {
    config: AsyncConnectionConfig,
    connect_timeout: Option<Duration>,
}

impl Default for Connector {
    fn default() -> Self {
        Connector {
            config: AsyncConnectionConfig::new(),
            connect_timeout: Some(Duration::from_secs(1)),
        }
    }
}

impl Connector {
    /// A connector with the defaults above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection's settings (response timeout, push sender, ...). Its
    /// `connection_timeout` is not used: set [`connect_timeout`](Self::connect_timeout).
    pub fn config(mut self, config: AsyncConnectionConfig) -> Self {
        self.config = config;
        self
    }

    /// The limit on dialling plus the handshake (`None`: no limit).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Dials `addr` (a `redis://` or `redis+unix://` URL, a `(host, port)` pair, a
    /// `ConnectionInfo`, ...) and shakes hands (AUTH, SELECT, ...): the `connect` of a
    /// persistent connection, which runs the connection's driver. The driver does not run
    /// until then; for a connection to use on its own, call [`connect`](Self::connect).
    pub async fn dial(&self, addr: impl IntoConnectionInfo) -> RedisResult<RedisConnection> {
        let info = addr.into_connection_info()?;
        let attempt = async {
            match info.addr() {
                ConnectionAddr::Tcp(host, port) => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    let settings = info.tcp_settings();
                    stream.set_nodelay(settings.nodelay())?;
                    if let Some(keepalive) = settings.keepalive() {
                        redis::io::tcp::socket2::SockRef::from(&stream)
                            .set_tcp_keepalive(keepalive)?;
                    }
                    self.dial_stream(info.redis_settings(), stream).await
                }
                #[cfg(unix)]
                ConnectionAddr::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    self.dial_stream(info.redis_settings(), stream).await
                }
                other => Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "address not dialled by persistent-connection-redis \
                     (use Connector::dial_stream for TLS)",
                    other.to_string(),
                ))),
            }
        };
        match self.connect_timeout {
            None => attempt.await,
            Some(limit) => tokio::time::timeout(limit, attempt).await.map_err(|_| {
                RedisError::from(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection to Redis within {limit:?}"),
                ))
            })?,
        }
    }

    /// As [`dial`](Self::dial), then runs the driver on the current Tokio runtime: a
    /// connection to use on its own, outside a persistent connection (which would run the
    /// driver itself: give it [`dial`](Self::dial)).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn connect(&self, addr: impl IntoConnectionInfo) -> RedisResult<RedisConnection> {
        let conn = self.dial(addr).await?;
        if let Some(driver) = conn.take_driver() {
            Tokio::current().spawn(driver);
        }
        Ok(conn)
    }

    /// Makes a connection over a stream you dialled yourself (TLS, a proxy, ...): shakes
    /// hands with `info`; as with [`dial`](Self::dial), the persistent connection you hand
    /// it to runs the driver. The connect timeout is not applied here.
    pub async fn dial_stream<S>(
        &self,
        info: &RedisConnectionInfo,
        stream: S,
    ) -> RedisResult<RedisConnection>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) =
            MultiplexedConnection::new_with_config(info, stream, self.config.clone()).await?;
        Ok(RedisConnection::new(conn, driver))
    }
}

/// What `get_address` may return: an address the redis crate can dial (a `redis://` URL as
/// a `String`, a `(host, port)` pair, a `ConnectionInfo`, ...) that the persistent
/// connection can compare and log.
pub trait RedisAddress:
    IntoConnectionInfo + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
}

impl<A> RedisAddress for A where
    A: IntoConnectionInfo + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
}

/// Starts building a persistent connection to Redis on the current Tokio runtime, with the
/// default [`Connector`]: `get_address` is called before every attempt. Set the retry
/// delay, `on_event`, ... on the returned [`Builder`], then [`spawn`](Builder::spawn) it.
///
/// # Panics
/// Outside a Tokio runtime.
pub fn builder<A: RedisAddress, G, GF>(
    server_name: impl Into<String>,
    get_address: G,
) -> Builder<A, RedisConnection, RedisError>
where
    G: Fn() -> GF + Send + Sync + 'static,
    GF: Future<Output = RedisResult<A>> + Send + 'static,
{
    builder_with(server_name, get_address, Connector::new(), Tokio::current())
}

/// As [`builder`], with your [`Connector`], on `runtime` (which runs both the persistent
/// connection and the connections' drivers; it must be Tokio-based: the sockets are
/// Tokio's).
pub fn builder_with<A: RedisAddress, G, GF>(
    server_name: impl Into<String>,
    get_address: G,
    connector: Connector,
    runtime: impl Runtime,
) -> Builder<A, RedisConnection, RedisError>
where
    G: Fn() -> GF + Send + Sync + 'static,
    GF: Future<Output = RedisResult<A>> + Send + 'static,
{
    let connector = Arc::new(connector);
    Builder::new(runtime, server_name, get_address, move |addr: A, _ctx| {
        let connector = connector.clone();
        async move { connector.dial(addr).await }
    })
}
