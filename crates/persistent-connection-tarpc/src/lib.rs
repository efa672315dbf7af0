//! A [tarpc] client kept alive by a persistent connection: the counterpart of Jane Street's
//! `Persistent_connection.Rpc`.
//!
//! You write where the service is (`get_address`, looked up before every attempt: a catalog
//! where replicas publish themselves, DNS, a config file) and the service's calls; this
//! crate dials it, hands out the client, notices when the transport dies, reports
//! `Disconnected`, and dials again (finding another replica if the catalog says so).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use tarpc::context;
//!
//! #[tarpc::service]
//! trait Greeter {
//!     async fn hello(name: String) -> String;
//! }
//!
//! # async fn lookup_in_catalog() -> std::io::Result<SocketAddr> { Ok(([127, 0, 0, 1], 7000).into()) }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let greeter = persistent_connection_tarpc::builder(
//!     "greeter",
//!     || lookup_in_catalog(), // -> io::Result<SocketAddr>, called before every attempt
//!     GreeterClient::new,     // tarpc's generated constructor
//! )
//! .retry_delay(|_failures| Duration::from_millis(100))
//! .spawn();
//!
//! // The live client now, or as soon as there is one; it derefs to `GreeterClient`.
//! let client = greeter.connected().await;
//! println!("{}", client.hello(context::current(), "world".into()).await?);
//!
//! greeter.close().await; // closes the client and stops for good
//! # Ok(())
//! # }
//! ```
//!
//! # Why tarpc
//!
//! The seed's connection is an `Rpc.Connection.t`: a client whose life ends on its own when
//! the transport dies, which the persistent connection watches. tarpc is the Rust RPC
//! framework built the same way: a generated client (`GreeterClient`) is a cheap handle
//! onto a channel, and a separate *dispatch* future owns the transport. The dispatch
//! resolves exactly when the connection is over: the server closed it (read half at EOF),
//! the transport failed, or every client handle is gone. So the close signal of a tarpc
//! connection needs no heartbeat and no guessing: [`RpcConnection`] runs the dispatch in
//! a task and raises its [`CloseSignal`] when the dispatch ends, and closing it drops the
//! dispatch (and with it the socket). Calls on a dead client fail at once with
//! [`tarpc::client::RpcError::Shutdown`]; calls in flight when it died fail with
//! `RpcError::Shutdown` or `RpcError::Channel`: nothing hangs. (tonic/gRPC, by contrast,
//! hides its connection behind a lazily reconnecting channel of its own, which leaves
//! nothing to watch.)
//!
//! # Any transport
//!
//! [`builder`] and [`connect_tcp`] dial TCP with tarpc's length-delimited Bincode
//! framing. For any other transport (TLS, Unix sockets, JSON, in-memory channels) make the
//! client yourself and hand it to [`RpcConnection::spawn`]:
//!
//! ```no_run
//! # #[tarpc::service] trait Greeter { async fn hello(name: String) -> String; }
//! use persistent_connection_tarpc::RpcConnection;
//! # async fn demo() {
//! let (client_side, _server_side) = tarpc::transport::channel::unbounded();
//! let conn = RpcConnection::spawn(GreeterClient::new(Default::default(), client_side));
//! # drop(conn);
//! # }
//! ```
//!
//! # Errors
//!
//! The driver's error types are re-exported: [`AttemptError`] (why one attempt failed:
//! what `FailedToConnect` carries; your `get_address` error or the dial's `io::Error`,
//! converted, is its [`user_error`](AttemptError::user_error)), [`Stopped`] (what
//! `connected_or_closed` gives once the persistent connection is closed or aborted), and
//! [`ConnectError`], either of them, from `connected_or_failed_to_connect`.
#![forbid(unsafe_code)]

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::client::{self, NewClient, RequestDispatch};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Response};
use tokio::net::{TcpStream, ToSocketAddrs};

pub use persistent_connection_tokio::{
    AttemptContext, AttemptError, Backoff, Builder, CloseSignal, ConnectError, Connection,
    DriverEvent, Event, Events, Exponential, Jitter, Lagged, PersistentConnection, Runtime, State,
    Stopped, Tokio,
};

/// A persistent connection whose connection is a tarpc client `C` (e.g. `GreeterClient`):
/// the seed's `Persistent_connection.Rpc.t`.
pub type PersistentRpc<A, C, E = io::Error> = PersistentConnection<A, RpcConnection<C>, E>;

/// The transport [`connect_tcp`] makes: tarpc's length-delimited Bincode framing over a
/// Tokio `TcpStream`.
pub type TcpTransport<Req, Resp> = tarpc::serde_transport::Transport<
    TcpStream,
    Response<Resp>,
    ClientMessage<Req>,
    Bincode<Response<Resp>, ClientMessage<Req>>,
>;

/// The `new_client` function that [`connect_tcp`] and [`builder`] take: tarpc's generated
/// `XxxClient::new` fits.
pub trait NewTcpClient<C, Req, Resp>:
    Fn(
        client::Config,
        TcpTransport<Req, Resp>,
    ) -> NewClient<C, RequestDispatch<Req, Resp, TcpTransport<Req, Resp>>>
    + Send
    + Sync
    + 'static
{
}

impl<F, C, Req, Resp> NewTcpClient<C, Req, Resp> for F where
    F: Fn(
            client::Config,
            TcpTransport<Req, Resp>,
        ) -> NewClient<C, RequestDispatch<Req, Resp, TcpTransport<Req, Resp>>>
        + Send
        + Sync
        + 'static
{
}

/// A tarpc client with its dispatch running in a task: a [`Connection`] that closes when
/// the dispatch ends (the server went away, the transport failed) or when
/// [`close`](Connection::close) is called.
///
/// Dereferences to the client, so the service's calls are made on it directly. Clones
/// share the client and the dispatch.
pub struct RpcConnection<C> {
    client: Arc<C>,
    state: Arc<Shared>,
}

struct Shared {
    /// Raised by `close` or when the dispatch ends: the connection is (being) closed.
    closing: CloseSignal,
    /// Raised by the dispatch task once the dispatch, and so the transport, is dropped.
    closed: CloseSignal,
    /// The dispatch's error, if it ended with one.
    error: OnceLock<Arc<dyn StdError + Send + Sync>>,
}

impl<C> Clone for RpcConnection<C> {
    fn clone(&self) -> Self {
        RpcConnection {
            client: self.client.clone(),
            state: self.state.clone(),
        }
    }
}

impl<C> Deref for RpcConnection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

impl<C> fmt::Debug for RpcConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcConnection")
            .field("closing", &self.state.closing.is_closed())
            .field("closed", &self.state.closed.is_closed())
            .field("error", &self.state.error.get().map(|e| e.to_string()))
            .finish_non_exhaustive()
    }
}

impl<C> RpcConnection<C> {
    /// Runs `new_client`'s dispatch in a task on the current Tokio runtime and wraps its
    /// client. `new_client` is what tarpc's generated `XxxClient::new(config, transport)`
    /// returns, for any transport.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn<D, E>(new_client: NewClient<C, D>) -> Self
    where
        D: Future<Output = Result<(), E>> + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        Self::spawn_on(&Tokio::current(), new_client)
    }

    /// As [`spawn`](Self::spawn), on `runtime`.
    pub fn spawn_on<D, E>(runtime: &impl Runtime, new_client: NewClient<C, D>) -> Self
    where
        D: Future<Output = Result<(), E>> + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        let NewClient { client, dispatch } = new_client;
        let state = Arc::new(Shared {
            closing: CloseSignal::new(),
            closed: CloseSignal::new(),
            error: OnceLock::new(),
        });
        let task_state = state.clone();
        runtime.spawn(Box::pin(async move {
            let result = {
                let mut dispatch = pin!(dispatch);
                let mut stop = pin!(task_state.closing.closed());
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(result) = dispatch.as_mut().poll(cx) {
                        return Poll::Ready(Some(result));
                    }
                    stop.as_mut().poll(cx).map(|()| None)
                })
                .await
                // The dispatch, and so the transport, is dropped here.
            };
            if let Some(Err(e)) = result {
                let _ = task_state.error.set(Arc::new(e));
            }
            task_state.closing.close();
            task_state.closed.close();
        }));
        RpcConnection {
            client: Arc::new(client),
            state,
        }
    }

    /// The client (also reachable through `Deref`).
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The error the dispatch ended with, if it ended with one (a transport failure). `None`
    /// while it runs, and when it ended cleanly (the server closed the connection, or
    /// [`close`](Connection::close)).
    pub fn error(&self) -> Option<Arc<dyn StdError + Send + Sync>> {
        self.state.error.get().cloned()
    }
}

impl<C: Send + Sync + 'static> Connection for RpcConnection<C> {
    /// Stops the dispatch (dropping the transport); resolves once it is dropped.
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<C> {
        self.state.closing.close();
        self.state.closed.closed()
    }

    fn is_closed(&self) -> bool {
        self.state.closing.is_closed()
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<C> {
        self.state.closed.closed()
    }
}

/// Dials `addr` over TCP (no Nagle delay), frames it with tarpc's length-delimited Bincode
/// codec, makes the client with `new_client` (tarpc's generated `XxxClient::new`) and
/// spawns its dispatch on the current Tokio runtime.
///
/// The server must use the same framing: `tarpc::serde_transport::tcp::listen(addr,
/// Bincode::default)`, or `Transport::from((stream, Bincode::default()))` per accepted
/// stream.
pub async fn connect_tcp<A, C, Req, Resp>(
    addr: A,
    config: client::Config,
    new_client: impl NewTcpClient<C, Req, Resp>,
) -> io::Result<RpcConnection<C>>
where
    A: ToSocketAddrs,
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    let transport = dial_tcp(addr).await?;
    Ok(RpcConnection::spawn(new_client(config, transport)))
}

/// Dials `addr` and frames the stream as [`connect_tcp`] does.
async fn dial_tcp<A, Req, Resp>(addr: A) -> io::Result<TcpTransport<Req, Resp>>
where
    A: ToSocketAddrs,
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(TcpTransport::from((stream, Bincode::default())))
}

/// Starts building a persistent connection to a tarpc service over TCP, on the current
/// Tokio runtime: `get_address` is called before every attempt, and the address it returns
/// is dialled with [`connect_tcp`] and `new_client` (tarpc's generated `XxxClient::new`).
/// Set the retry delay, `on_event`, ... on the returned [`Builder`], then
/// [`spawn`](Builder::spawn) it.
///
/// The error type `E` is `get_address`'s; dial errors are converted into it.
///
/// # Panics
/// Outside a Tokio runtime.
pub fn builder<A, E, C, Req, Resp, G, GF>(
    server_name: impl Into<String>,
    get_address: G,
    new_client: impl NewTcpClient<C, Req, Resp>,
) -> Builder<A, RpcConnection<C>, E>
where
    A: ToSocketAddrs + Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    E: From<io::Error> + fmt::Debug + fmt::Display + Send + Sync + 'static,
    C: Send + Sync + 'static,
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
    G: Fn() -> GF + Send + Sync + 'static,
    GF: Future<Output = Result<A, E>> + Send + 'static,
{
    let new_client = Arc::new(new_client);
    persistent_connection_tokio::builder(server_name, get_address, move |addr: A, _ctx| {
        let new_client = new_client.clone();
        async move {
            let transport = dial_tcp(addr).await.map_err(E::from)?;
            Ok(RpcConnection::spawn(new_client(
                client::Config::default(),
                transport,
            )))
        }
    })
}
