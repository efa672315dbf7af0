//! A TCP fault proxy on 127.0.0.1: forwards to an upstream server, then on command
//! black-holes both directions without closing (a dead NAT, a partitioned switch), resets
//! every connection, or adds latency. Plain std threads, so it works under every runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards them.
    Forward,
    /// Swallows them: both directions go silent, and nothing is closed.
    BlackHole,
    /// Forwards each chunk after this delay.
    Latency(Duration),
}

struct Inner {
    fault: Mutex<Fault>,
    stopping: AtomicBool,
    /// Every socket it holds, client and upstream side, to reset them.
    live: Mutex<Vec<TcpStream>>,
}

/// A proxy the test controls; stops (and closes everything) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Proxy {
    /// Starts a proxy on a free port that forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let inner = Arc::new(Inner {
            fault: Mutex::new(Fault::Forward),
            stopping: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let accepting = inner.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                accepting.track(&client);
                accepting.track(&server);
                pump(accepting.clone(), &client, &server);
                pump(accepting.clone(), &server, &client);
            }
        });
        Proxy { addr, inner }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, treats bytes as `fault` says.
    pub fn set(&self, fault: Fault) {
        *self.inner.fault.lock().unwrap() = fault;
    }

    /// Closes every connection through it, both sides, at once.
    pub fn reset(&self) {
        for stream in self.inner.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Inner {
    fn track(&self, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            self.live.lock().unwrap().push(clone);
        }
    }
}

/// Copies `from` to `to` on a thread of its own, as the current fault says.
fn pump(inner: Arc<Inner>, from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let fault = *inner.fault.lock().unwrap();
            match fault {
                Fault::Forward => {}
                Fault::BlackHole => continue,
                // The fault being injected, not a wait for something to settle.
                Fault::Latency(delay) => std::thread::sleep(delay),
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        self.reset();
    }
}
