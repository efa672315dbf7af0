//! An in-process hyper HTTP/2 server (prior knowledge, no TLS) on 127.0.0.1 that tests
//! can kill: every request is answered with `server <port> request <n>`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running server. [`kill`](Self::kill) stops it abruptly: the listener and every open
/// connection are dropped, as when the process dies. Dropping it without `kill` aborts the
/// same tasks without waiting for them.
#[derive(Debug)]
pub struct Http2Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
    requests: Arc<AtomicU64>,
    open: watch::Receiver<usize>,
}

/// Decrements the count of open connections when a connection's task ends or is aborted.
struct Open(Arc<watch::Sender<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Http2Server {
    /// Starts a server on a fresh port of 127.0.0.1 (on the current Tokio runtime).
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("an address")).await
    }

    /// Starts a server on `addr` (port 0 for a fresh one).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (open_tx, open) = watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let accept = tokio::spawn({
            let connections = connections.clone();
            let requests = requests.clone();
            async move {
                loop {
                    let Ok((tcp, _peer)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    open_tx.send_modify(|n| *n += 1);
                    let open = Open(open_tx.clone());
                    let requests = requests.clone();
                    let port = addr.port();
                    let service = service_fn(move |_request: Request<Incoming>| {
                        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("server {port} request {n}");
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    connections
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .spawn(async move {
                            let _open = open;
                            let serving =
                                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(tcp), service);
                            let _ = serving.await;
                        });
                }
            }
        });
        Ok(Http2Server {
            addr,
            accept,
            connections,
            requests,
            open,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        *self.open.borrow()
    }

    /// Resolves once exactly `n` connections are open.
    pub async fn wait_open_connections(&self, n: usize) {
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open == n).await;
    }

    /// Kills it: stops accepting (the port is released), drops every connection, and
    /// resolves once all of that is done.
    pub async fn kill(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let mut connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        connections.shutdown().await;
    }
}

impl Drop for Http2Server {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .abort_all();
    }
}
