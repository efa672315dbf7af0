//! Line-echo servers on 127.0.0.1 that the tests start, stop and restart. Plain std
//! threads, so they work the same under every runtime.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a server treats a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Echoes every line back.
    Echo,
    /// Accepts, reads, never answers: a dial that waits for the greeting hangs.
    Silent,
    /// Accepts and closes at once.
    CloseAtOnce,
    /// Answers the first line (the client's greeting), then closes: every connection
    /// succeeds and dies young (a flapping server).
    GreetThenClose,
}

#[derive(Default)]
struct Counters {
    accepted: usize,
    /// Connections the client closed (the server read EOF without having killed them).
    eofs: usize,
}

struct Inner {
    mode: Mode,
    stopping: AtomicBool,
    live: Mutex<Vec<TcpStream>>,
    counters: Mutex<Counters>,
    changed: Condvar,
    killing: AtomicBool,
}

/// A server the test controls.
pub struct Server {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

/// Upper bound for waits on a server's own signals; they normally come in microseconds.
const WAIT_BOUND: Duration = Duration::from_secs(20);

impl Server {
    /// Starts a server on a free port.
    pub fn start(mode: Mode) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), mode).expect("bind 127.0.0.1")
    }

    /// Starts a server on `addr` (to restart one on the same port).
    pub fn start_on(addr: SocketAddr, mode: Mode) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            mode,
            stopping: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            counters: Mutex::new(Counters::default()),
            changed: Condvar::new(),
            killing: AtomicBool::new(false),
        });
        let state = inner.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                state.counters.lock().unwrap().accepted += 1;
                state.changed.notify_all();
                if state.mode == Mode::CloseAtOnce {
                    drop(stream);
                    continue;
                }
                if let Ok(clone) = stream.try_clone() {
                    state.live.lock().unwrap().push(clone);
                }
                let state = state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Ok(Server {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every live connection from the server's side; keeps accepting.
    pub fn kill_connections(&self) {
        self.inner.killing.store(true, Ordering::SeqCst);
        for stream in self.inner.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Stops accepting and closes every live connection: the server is gone.
    pub fn stop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so that it sees `stopping` and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.kill_connections();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.inner.counters.lock().unwrap().accepted
    }

    /// Waits (bounded) until the clients have closed `n` connections; true if they did.
    pub fn wait_for_eofs(&self, n: usize) -> bool {
        let counters = self.inner.counters.lock().unwrap();
        let (counters, _) = self
            .inner
            .changed
            .wait_timeout_while(counters, WAIT_BOUND, |c| c.eofs < n)
            .unwrap();
        counters.eofs >= n
    }

    /// Waits (bounded) until `n` connections have been accepted; true if they were.
    pub fn wait_for_accepted(&self, n: usize) -> bool {
        let counters = self.inner.counters.lock().unwrap();
        let (counters, _) = self
            .inner
            .changed
            .wait_timeout_while(counters, WAIT_BOUND, |c| c.accepted < n)
            .unwrap();
        counters.accepted >= n
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, state: &Inner) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if state.mode == Mode::Echo => {
                if writer.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            Ok(_) if state.mode == Mode::GreetThenClose => {
                let _ = writer.write_all(line.as_bytes());
                let _ = writer.shutdown(std::net::Shutdown::Both);
                break;
            }
            Ok(_) => {}
        }
    }
    if !state.killing.load(Ordering::SeqCst) && !state.stopping.load(Ordering::SeqCst) {
        state.counters.lock().unwrap().eofs += 1;
        state.changed.notify_all();
    }
}

/// An address where nothing listens: dials to it are refused, for as long as the test
/// process runs.
///
/// A port whose listener is merely dropped is free again: a server that another test
/// starts at the same moment on port 0 could be given it, and the dials meant to be
/// refused would reach that server. So one connection to the listener is kept open
/// (both ends, for the life of the process) after the listener is dropped: the port stays
/// taken, and nothing listens on it.
pub fn closed_port() -> SocketAddr {
    static HELD: Mutex<Vec<(TcpStream, TcpStream)>> = Mutex::new(Vec::new());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    drop(listener);
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((client, accepted));
    addr
}
