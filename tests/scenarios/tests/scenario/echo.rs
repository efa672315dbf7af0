//! The client connection of the scenarios: a line-echo client as a `Driven` connection,
//! whose driving future ends when its reader does (EOF, an error), and whose `close` shuts
//! the socket down. The dial is the runtime's own; the data path is a plain reader thread,
//! so one client type serves every runtime.

use std::future::poll_fn;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_channel::mpsc;
use futures_core::Stream;
use persistent_connection_tokio::{CloseSignal, Driven};

use super::TestRuntime;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A connection to a line-echo server: the client handle, driven by the end of its reader.
pub type EchoConn = Driven<EchoClient>;

/// The handle of a connection to a line-echo server: sends lines, reads their echoes.
pub struct EchoClient {
    id: u64,
    peer: SocketAddr,
    writer: Mutex<TcpStream>,
    replies: Mutex<mpsc::UnboundedReceiver<String>>,
}

impl std::fmt::Debug for EchoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EchoClient#{}({})", self.id, self.peer)
    }
}

impl EchoClient {
    /// A number unique to this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server it is connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn send(&self, line: &str) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unwrap();
        writer.write_all(format!("{line}\n").as_bytes())
    }

    async fn recv(&self) -> Option<String> {
        poll_fn(|cx| Pin::new(&mut *self.replies.lock().unwrap()).poll_next(cx)).await
    }

    /// Sends `line` and waits for its echo.
    pub async fn request(&self, line: &str) -> std::io::Result<String> {
        self.send(line)?;
        self.recv().await.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")
        })
    }
}

/// Shuts the socket down when dropped: a cancelled dial leaks nothing, and dropping the
/// driving future (what `close` does) ends the reader.
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
///
/// The data path is a plain reader thread, so one client type serves every runtime; its
/// end (EOF, an error) ends the driving future, and so the connection.
pub async fn dial<T: TestRuntime>(addr: SocketAddr) -> std::io::Result<EchoConn> {
    let stream = T::connect(addr).await?;
    stream.set_nonblocking(false)?;
    let mut guard = ShutdownOnDrop(Some(stream.try_clone()?));
    let reader = stream.try_clone()?;
    let (tx, rx) = mpsc::unbounded();
    let reader_done = CloseSignal::new();
    let done = reader_done.clone();
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
        done.close();
    });
    let client = EchoClient {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        peer: addr,
        writer: Mutex::new(stream),
        replies: Mutex::new(rx),
    };
    let greeting = client.request("hello").await?;
    if greeting != "hello" {
        return Err(std::io::Error::other(format!("bad greeting {greeting:?}")));
    }
    let shutdown = ShutdownOnDrop(guard.0.take());
    let driving = async move {
        let _shutdown = shutdown;
        reader_done.closed().await;
    };
    Ok(Driven::new(client, driving))
}
