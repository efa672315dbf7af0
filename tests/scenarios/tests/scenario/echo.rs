//! The client connection of the scenarios: a line-echo client whose death (EOF, error,
//! close) raises a `CloseSignal`. The dial is the runtime's own; the data path is a plain
//! reader thread, so one client type serves every runtime.

use std::future::{Future, poll_fn};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_channel::mpsc;
use futures_core::Stream;
use persistent_connection_tokio::{CloseSignal, Connection};

use super::TestRuntime;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A connection to a line-echo server.
#[derive(Clone)]
pub struct EchoConn {
    inner: Arc<EchoInner>,
}

struct EchoInner {
    id: u64,
    peer: SocketAddr,
    writer: Mutex<TcpStream>,
    replies: Mutex<mpsc::UnboundedReceiver<String>>,
    signal: CloseSignal,
}

impl std::fmt::Debug for EchoConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EchoConn#{}({})", self.inner.id, self.inner.peer)
    }
}

impl PartialEq for EchoConn {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl EchoConn {
    /// A number unique to this connection.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The server it is connected to.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    fn send(&self, line: &str) -> std::io::Result<()> {
        let mut writer = self.inner.writer.lock().unwrap();
        writer.write_all(format!("{line}\n").as_bytes())
    }

    async fn recv(&self) -> Option<String> {
        poll_fn(|cx| Pin::new(&mut *self.inner.replies.lock().unwrap()).poll_next(cx)).await
    }

    /// Sends `line` and waits for its echo.
    pub async fn request(&self, line: &str) -> std::io::Result<String> {
        self.send(line)?;
        self.recv().await.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
        })
    }
}

/// Shuts the socket down if the dial is dropped half-way (a cancelled dial leaks nothing).
struct ShutdownOnDrop(Option<TcpStream>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Dials `addr` with the runtime's own connect, then does a greeting round trip: a server
/// that never answers makes the dial hang, one that closes at once makes it fail.
pub async fn dial<T: TestRuntime>(addr: SocketAddr) -> std::io::Result<EchoConn> {
    let stream = T::connect(addr).await?;
    stream.set_nonblocking(false)?;
    let mut guard = ShutdownOnDrop(Some(stream.try_clone()?));
    let reader = stream.try_clone()?;
    let (tx, rx) = mpsc::unbounded();
    let signal = CloseSignal::new();
    let reader_signal = signal.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(line) => {
                    if tx.unbounded_send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        reader_signal.close();
    });
    let conn = EchoConn {
        inner: Arc::new(EchoInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer: addr,
            writer: Mutex::new(stream),
            replies: Mutex::new(rx),
            signal,
        }),
    };
    let greeting = conn.request("hello").await?;
    if greeting != "hello" {
        return Err(std::io::Error::other(format!("bad greeting {greeting:?}")));
    }
    guard.0 = None;
    Ok(conn)
}

impl Connection for EchoConn {
    fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.inner.signal.close();
        let _ = self.inner.writer.lock().unwrap().shutdown(Shutdown::Both);
        std::future::ready(())
    }

    fn is_closed(&self) -> bool {
        self.inner.signal.is_closed()
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.inner.signal.closed()
    }
}
