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
//! the socket itself, takes the driver, and runs it in a task that raises the
//! connection's close signal when it ends. That was chosen over the alternatives:
//!
//! - the `Disconnection` push message: it needs a push sender, which the redis crate only
//!   accepts on RESP3 connections, and it would take the one push-sender slot from the user;
//! - raising the signal when a command fails with a connection-dropped error: an idle
//!   connection would never notice, so `Disconnected` would come late or never, and the
//!   persistent connection would keep handing out a dead connection.
//!
//! Owning the driver also makes `close` real: it stops the driver, which drops the socket,
//! even while your code still holds clones of the connection (their commands then fail at
//! once with a broken-pipe I/O error).
//!
//! Built-in dialling covers `redis://` (TCP) and `redis+unix://` addresses. For TLS, dial
//! the stream yourself and use [`Connector::connect_stream`].
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
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};

pub use persistent_connection_tokio::{
    AttemptContext, AttemptError, Backoff, BoxFuture, Builder, CloseSignal, ConnectError,
    Connection, DriverEvent, Event, Events, Exponential, Jitter, Lagged, PersistentConnection,
    Runtime, State, Stopped, Tokio,
};

/// A persistent connection to Redis; `A` is the address `get_address` returns (a
/// `redis://` URL as a `String`, a `(host, port)` pair, ...).
pub type PersistentRedis<A = String> = PersistentConnection<A, RedisConnection, RedisError>;

/// A live Redis connection: a `MultiplexedConnection` whose driver runs in a task that
/// raises the close signal when the socket dies. Send commands with `redis::AsyncCommands`
/// or `Cmd::query_async` on it (it implements `redis::aio::ConnectionLike`).
///
/// Cheap to clone; clones share the socket.
#[derive(Clone)]
pub struct RedisConnection {
    conn: MultiplexedConnection,
    state: Arc<Shared>,
}

struct Shared {
    /// Raised by `close` or when the driver ends.
    closing: CloseSignal,
    /// Raised once the driver, and so the socket, has been dropped.
    closed: CloseSignal,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("closing", &self.state.closing.is_closed())
            .field("closed", &self.state.closed.is_closed())
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Runs `driver` (as returned with `conn` by `MultiplexedConnection::new_with_config`)
    /// in a task on `runtime`, and ties the connection's close signal to it.
    pub fn from_parts(
        runtime: &impl Runtime,
        conn: MultiplexedConnection,
        driver: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let state = Arc::new(Shared {
            closing: CloseSignal::new(),
            closed: CloseSignal::new(),
        });
        let task_state = state.clone();
        runtime.spawn(Box::pin(async move {
            {
                let mut driver = pin!(driver);
                let mut stop = pin!(task_state.closing.closed());
                std::future::poll_fn(|cx| {
                    if driver.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    stop.as_mut().poll(cx)
                })
                .await;
                // The driver, and so the socket, is dropped here.
            }
            task_state.closing.close();
            task_state.closed.close();
        }));
        RedisConnection { conn, state }
    }

    /// A clone of the underlying `MultiplexedConnection`. It shares the socket: once this
    /// connection is closed its commands fail too.
    pub fn multiplexed(&self) -> MultiplexedConnection {
        self.conn.clone()
    }
}

impl Connection for RedisConnection {
    /// Stops the driver, which drops the socket; resolves once it is dropped.
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.state.closing.close();
        self.state.closed.closed()
    }

    fn is_closed(&self) -> bool {
        self.state.closing.is_closed()
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.state.closed.closed()
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
    /// `ConnectionInfo`, ...), shakes hands (AUTH, SELECT, ...), and runs the connection's
    /// driver on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn connect(&self, addr: impl IntoConnectionInfo) -> RedisResult<RedisConnection> {
        self.connect_on(&Tokio::current(), addr).await
    }

    /// As [`connect`](Self::connect), running the driver on `runtime` (a Tokio-based one:
    /// the socket is Tokio's).
    pub async fn connect_on(
        &self,
        runtime: &impl Runtime,
        addr: impl IntoConnectionInfo,
    ) -> RedisResult<RedisConnection> {
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
                    self.connect_stream(runtime, info.redis_settings(), stream)
                        .await
                }
                #[cfg(unix)]
                ConnectionAddr::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    self.connect_stream(runtime, info.redis_settings(), stream)
                        .await
                }
                other => Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "address not dialled by persistent-connection-redis \
                     (use Connector::connect_stream for TLS)",
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

    /// Makes a connection over a stream you dialled yourself (TLS, a proxy, ...): shakes
    /// hands with `info` and runs the driver on `runtime`. The connect timeout is not
    /// applied here.
    pub async fn connect_stream<S>(
        &self,
        runtime: &impl Runtime,
        info: &RedisConnectionInfo,
        stream: S,
    ) -> RedisResult<RedisConnection>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) =
            MultiplexedConnection::new_with_config(info, stream, self.config.clone()).await?;
        Ok(RedisConnection::from_parts(runtime, conn, driver))
    }
}

/// Starts building a persistent connection to Redis on the current Tokio runtime, with the
/// default [`Connector`]: `get_address` is called before every attempt. Set the retry
/// delay, `on_event`, ... on the returned [`Builder`], then [`spawn`](Builder::spawn) it.
///
/// # Panics
/// Outside a Tokio runtime.
pub fn builder<A, G, GF>(
    server_name: impl Into<String>,
    get_address: G,
) -> Builder<A, RedisConnection, RedisError>
where
    A: IntoConnectionInfo + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    G: Fn() -> GF + Send + Sync + 'static,
    GF: Future<Output = RedisResult<A>> + Send + 'static,
{
    builder_with(server_name, get_address, Connector::new(), Tokio::current())
}

/// As [`builder`], with your [`Connector`], on `runtime` (which runs both the persistent
/// connection and the connections' drivers; it must be Tokio-based).
pub fn builder_with<A, G, GF, R>(
    server_name: impl Into<String>,
    get_address: G,
    connector: Connector,
    runtime: R,
) -> Builder<A, RedisConnection, RedisError>
where
    A: IntoConnectionInfo + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    G: Fn() -> GF + Send + Sync + 'static,
    GF: Future<Output = RedisResult<A>> + Send + 'static,
    R: Runtime + Clone,
{
    let connector = Arc::new(connector);
    let dial_runtime = runtime.clone();
    Builder::new(runtime, server_name, get_address, move |addr: A, _ctx| {
        let connector = connector.clone();
        let runtime = dial_runtime.clone();
        async move { connector.connect_on(&runtime, addr).await }
    })
}
