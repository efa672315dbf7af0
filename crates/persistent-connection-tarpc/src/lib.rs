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
//! # Why tarpc, and what the connection is
//!
//! The seed's connection is an `Rpc.Connection.t`: a client whose life ends on its own when
//! the transport dies, which the persistent connection watches. tarpc is the Rust RPC
//! framework built the same way: a generated client (`GreeterClient`) is a cheap handle
//! onto a channel, and a separate *dispatch* future owns the transport. The dispatch
//! resolves exactly when the connection is over: the server closed it (read half at EOF),
//! the transport failed, or every client handle is gone.
//!
//! So the connection, [`RpcConnection<C>`], is a [`Driven<C>`](Driven): the client as the
//! handle, the dispatch as its driving future (`Driven::new(client, dispatch)`, from
//! tarpc's `NewClient { client, dispatch }`). The persistent connection runs the dispatch
//! on its own runtime from the moment `connect` hands the connection over, and the
//! dispatch's end *is* the connection's death: `Disconnected` is reported at once, with no
//! heartbeat and no guessing. `close` drops the dispatch, and with it the socket.
//! [`Driven::ending`], and [`PersistentConnection::last_ending`] in the `Disconnected`
//! handler, say why it ended: [`Ending::Finished`] (the server closed the connection),
//! [`Ending::Failed`] with the transport's error, [`Ending::Panicked`], or
//! [`Ending::Closed`] (closed from this side).
//!
//! Calls on a dead client fail at once with [`tarpc::client::RpcError::Shutdown`]; calls in
//! flight when it died fail with `RpcError::Shutdown` or `RpcError::Channel`: nothing
//! hangs. (tonic/gRPC, by contrast, hides its connection behind a lazily reconnecting
//! channel of its own, which leaves nothing to watch.)
//!
//! # Any transport
//!
//! [`builder`] and [`connect_tcp`] dial TCP with tarpc's length-delimited Bincode
//! framing. For any other transport (TLS, Unix sockets, JSON, in-memory channels) make the
//! client yourself in your `connect` and return it as a [`Driven`]; the persistent
//! connection runs its dispatch:
//!
//! ```no_run
//! # #[tarpc::service] trait Greeter { async fn hello(name: String) -> String; }
//! use persistent_connection_tarpc::{Driven, RpcConnection};
//! use tarpc::client::NewClient;
//! # fn demo() {
//! let (client_side, _server_side) = tarpc::transport::channel::unbounded();
//! let NewClient { client, dispatch } = GreeterClient::new(Default::default(), client_side);
//! let conn: RpcConnection<GreeterClient> = Driven::new(client, dispatch);
//! # drop(conn);
//! # }
//! ```
//!
//! A connection that is never handed to a persistent connection never runs its dispatch:
//! to use a tarpc client on its own, use tarpc's `NewClient::spawn`.
//!
//! # Errors
//!
//! The driver's error types are re-exported: [`AttemptError`] (why one attempt failed:
//! what `FailedToConnect` carries; your `get_address` error or the dial's `io::Error`,
//! converted, is its [`user_error`](AttemptError::user_error)), [`Stopped`] (what
//! `connected_or_closed` gives once the persistent connection is closed or aborted), and
//! [`ConnectError`], either of them, from `connected_or_failed_to_connect`.
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tarpc::client::{self, Config, NewClient, RequestDispatch};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Response};
use tokio::net::{TcpStream, ToSocketAddrs};

pub use persistent_connection_tokio::{
    AttemptContext, AttemptError, Backoff, Builder, CloseSignal, ConnectError, Connection,
    DriveOutput, Driven, DriverEvent, Ending, Event, Events, Exponential, Jitter, Lagged,
    PersistentConnection, Runtime, State, Stopped, Tokio, WeakPersistentConnection,
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

/// What tarpc's generated `XxxClient::new` returns over a [`TcpTransport`]: the client `C`
/// and its dispatch.
pub type TcpNewClient<C, Req, Resp> =
    NewClient<C, RequestDispatch<Req, Resp, TcpTransport<Req, Resp>>>;

/// The `new_client` function that [`connect_tcp`] and [`builder`] take: tarpc's generated
/// `XxxClient::new` fits.
pub trait NewTcpClient<C, Req, Resp>:
    Fn(Config, TcpTransport<Req, Resp>) -> TcpNewClient<C, Req, Resp> + Send + Sync + 'static
{
}

impl<F, C, Req, Resp> NewTcpClient<C, Req, Resp> for F where
    F: Fn(Config, TcpTransport<Req, Resp>) -> TcpNewClient<C, Req, Resp> + Send + Sync + 'static
{
}

/// A tarpc client `C` (e.g. `GreeterClient`) driven by its dispatch: a [`Driven`]
/// connection. The persistent connection runs the dispatch on its runtime; the connection
/// closes when the dispatch ends (the server went away, the transport failed) or when
/// [`close`](Connection::close) drops it, and [`ending`](Driven::ending) says which.
///
/// Dereferences to the client, so the service's calls are made on it directly. Clones
/// share the client and the dispatch. Make one with `Driven::new(client, dispatch)` from
/// tarpc's `NewClient { client, dispatch }`.
pub type RpcConnection<C> = Driven<C>;

/// Dials `addr` over TCP (no Nagle delay), frames it with tarpc's length-delimited Bincode
/// codec, and makes the client with `new_client` (tarpc's generated `XxxClient::new`): a
/// `connect` for a persistent connection, which runs the client's dispatch. (Its dispatch
/// does not run until then.)
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
    C: Send + Sync + 'static,
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let transport = TcpTransport::from((stream, Bincode::default()));
    let NewClient { client, dispatch } = new_client(config, transport);
    Ok(Driven::new(client, dispatch))
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
            let new_client = move |config, transport| new_client(config, transport);
            Ok(connect_tcp(addr, client::Config::default(), new_client).await?)
        }
    })
}
