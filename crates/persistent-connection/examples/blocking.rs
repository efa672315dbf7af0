//! A persistent connection on one plain thread: blocking sockets, no async runtime.
//!
//! The core crate does no I/O and has no clock: it is fed `Input`s and yields `Command`s.
//! This example is the proof, and the template for a game loop, an embedded main loop or
//! any program that owns its loop and cannot (or will not) run an executor: one `loop`
//! of plain `std` calls carries out every command, on the thread that owns the machine.
//! Replace the socket poll by your frame's work and the sleep by your frame's wait, and
//! the structure stays the same.
//!
//! * `FetchAddress` reads a small in-process catalog (where a server publishes its
//!   address); `Dial` is `TcpStream::connect_timeout`;
//! * `StartTimer` becomes a deadline (an `Instant`) that the loop checks: it sleeps until
//!   the nearest deadline, or, while a connection is current, polls the socket with a read
//!   timeout, so that an end of stream is noticed at once (`Input::ConnectionClosed`);
//! * `Emit` calls the event callback, then feeds `Input::EventHandled`;
//! * `CloseConnection` shuts the socket down; `Finished` ends the loop.
//!
//! The error type is `std::io::Error` as it is (neither `Clone` nor `PartialEq`). Each
//! blocking call bounds itself (the dial has its own timeout), so the machine's connect
//! timeout is left off: on one thread, no timer can fire while a call blocks.
//!
//! The loop keeps the rule of the core: feed one input, then drain `poll_command` until
//! it returns `None`, carrying out each command in order. Results of commands are queued
//! and fed one at a time, in the order they came.
//!
//! The scenario: a loopback echo server starts and publishes its address; the client
//! connects and exchanges a line; the server is killed (the client sees the end of stream:
//! `Disconnected`); the catalog still names the dead server for a while (the dial is
//! refused), then names nothing (the fetch fails); the server comes back on a new port;
//! the client reconnects, exchanges a line and closes. Every wait is bounded: the run
//! gives up with a message after a few seconds.
//!
//! Run it with `cargo run -p persistent-connection --example blocking`.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use persistent_connection::{
    AttemptId, Command, Config, Event, Failure, Input, Jitter, Machine, RetryPolicy, TimerId,
};

/// The retry delay: short, so the whole run takes well under a second.
const RETRY: Duration = Duration::from_millis(200);
/// The bound on each dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest the socket is polled in one go, so the loop comes round often (a frame).
const POLL: Duration = Duration::from_millis(20);
/// The whole run must finish within this; every wait below is bounded by it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// A connection as the machine sees it: a cheap handle, handed out more than once.
#[derive(Clone, Debug)]
struct Conn {
    id: u32,
    stream: Arc<TcpStream>,
}

type Ev = Event<SocketAddr, Conn, Failure<io::Error>>;

fn main() {
    let start = Instant::now();
    let give_up = start + GIVE_UP_AFTER;
    let stamp = move || format!("{:>6.3}s", start.elapsed().as_secs_f64());

    // The outside world: a catalog and one echo server, which publishes its address.
    let catalog = Catalog::default();
    let mut server = Some(Server::start(&catalog));
    let mut servers_started = 1;

    let config = Config::new()
        .retry_policy(RetryPolicy::Constant(RETRY))
        .jitter(Jitter::Off);
    let mut m: Machine<SocketAddr, Conn, io::Error> = Machine::new(config, 1);

    // What the loop holds for the machine: results to feed, the one timer, the connection.
    let mut inputs: VecDeque<Input<SocketAddr, Conn, io::Error>> = VecDeque::new();
    let mut timer: Option<(TimerId, Instant)> = None;
    let mut watched: Option<Watched> = None;
    let mut connections = 0;

    loop {
        // 1. Drain: carry out every command, in order. Results wait in `inputs`.
        while let Some(command) = m.poll_command() {
            match command {
                Command::Emit { event, attempt } => {
                    if let Event::Connected(conn) = &event {
                        let attempt = attempt.expect("Connected names its attempt");
                        watched = Some(Watched::new(attempt, conn.clone()));
                    }
                    on_event(&stamp(), &event);
                    // The scenario: the world reacts to what the client reports.
                    react(&event, &catalog, &mut server, &mut servers_started);
                    inputs.push_back(Input::EventHandled);
                }
                Command::FailedAgain { error, .. } => {
                    println!("{} (failed again: {error}; not reported)", stamp());
                }
                Command::Stopped(kind) => println!("{} stopped by {kind:?}", stamp()),
                Command::ComputeRetryDelay { .. } => inputs.push_back(Input::RetryDelay(RETRY)),
                // Only with `Config::min_uptime`, which this loop does not set.
                Command::StartUptimeTimer { .. } => {}
                Command::StartTimer { timer: id, delay } => {
                    println!("{} retry timer: {} ms", stamp(), delay.as_millis());
                    timer = Some((id, Instant::now() + delay));
                }
                Command::FetchAddress { attempt } => {
                    let result = catalog.lookup();
                    inputs.push_back(Input::AddressObtained { attempt, result });
                }
                Command::Dial {
                    attempt, address, ..
                } => {
                    let result = dial(address, &mut connections);
                    inputs.push_back(Input::Dialed { attempt, result });
                }
                // The dial or fetch is already over: a blocking call cannot be interrupted.
                // Its result is fed anyway, and the machine closes a connection in it.
                Command::CancelAttempt { .. } => {}
                Command::CloseConnection {
                    attempt,
                    connection,
                } => {
                    println!("{} closing connection #{}", stamp(), connection.id);
                    let _ = connection.stream.shutdown(Shutdown::Both);
                    if watched.as_ref().is_some_and(|w| w.attempt == attempt) {
                        // The current one: it is closed now, so say so (and stop watching).
                        watched = None;
                        inputs.push_back(Input::ConnectionClosed { attempt });
                    }
                }
                Command::Finished => {
                    println!("{} finished", stamp());
                    if let Some(server) = server.take() {
                        server.kill();
                    }
                    return;
                }
            }
        }

        // 2. Feed the next result, if any, and drain again.
        if let Some(input) = inputs.pop_front() {
            m.handle_input(input)
                .unwrap_or_else(|rejected| panic!("{rejected}"));
            continue;
        }

        // 3. The application's turn (a game's frame): use the connection if there is one.
        if let Some(w) = &mut watched {
            if !w.greeted {
                w.greeted = true;
                let line = format!("hello from connection #{}\n", w.conn.id);
                print!("{} sent:     {line}", stamp());
                (&*w.conn.stream)
                    .write_all(line.as_bytes())
                    .expect("the server reads");
            }
        }

        // 4. Wait, bounded: for the retry timer, or for the connection to say something.
        let now = Instant::now();
        assert!(
            now < give_up,
            "gave up after {GIVE_UP_AFTER:?}: the machine was waiting for {}",
            m.expecting()
        );
        if let Some((id, at)) = timer {
            if now >= at {
                timer = None;
                inputs.push_back(Input::TimerFired(id));
                continue;
            }
        }
        let until = timer.map_or(give_up, |(_, at)| at.min(give_up));
        let Some(w) = &mut watched else {
            assert!(
                timer.is_some(),
                "nothing to wait for, but the machine waits for {}",
                m.expecting()
            );
            thread::sleep(until - now);
            continue;
        };
        match w.poll((until - now).min(POLL)) {
            Polled::Quiet => {}
            Polled::Line(line) => {
                println!("{} received: {line}", stamp());
                if w.conn.id == 1 {
                    // The scenario: the first server dies once it has answered.
                    println!("{} killing the server", stamp());
                    server.take().expect("a server runs").kill();
                } else {
                    println!("{} done: close", stamp());
                    inputs.push_back(Input::Close);
                }
            }
            Polled::Closed(why) => {
                println!("{} connection #{} closed: {why}", stamp(), w.conn.id);
                inputs.push_back(Input::ConnectionClosed { attempt: w.attempt });
                watched = None;
            }
        }
    }
}

/// The event callback: prints each event. It returns when the handler has finished;
/// the loop then feeds `Input::EventHandled` (on one thread, a handler is a call).
fn on_event(stamp: &str, event: &Ev) {
    match event {
        Event::Connected(conn) => println!("{stamp} event {event} (connection #{})", conn.id),
        _ => println!("{stamp} event {event}"),
    }
}

/// `connect`: a blocking dial, bounded.
fn dial(address: SocketAddr, connections: &mut u32) -> io::Result<Conn> {
    let stream = TcpStream::connect_timeout(&address, DIAL_TIMEOUT)?;
    stream.set_nodelay(true)?;
    *connections += 1;
    Ok(Conn {
        id: *connections,
        stream: Arc::new(stream),
    })
}

/// What the world does when the client reports something, so that the run is the same
/// every time: the catalog notices a dead server only once a dial to it was refused, and
/// the server comes back once the catalog has been found empty.
fn react(event: &Ev, catalog: &Catalog, server: &mut Option<Server>, started: &mut u32) {
    let Event::FailedToConnect(Failure::Error(error)) = event else {
        return;
    };
    match error.kind() {
        ErrorKind::ConnectionRefused => {
            println!("         (the catalog drops the dead server)");
            catalog.withdraw();
        }
        ErrorKind::NotFound if server.is_none() => {
            *server = Some(Server::start(catalog));
            *started += 1;
            println!("         (server #{started} is back on a new port)");
        }
        _ => {}
    }
}

/// The current connection, watched for its end.
struct Watched {
    attempt: AttemptId,
    conn: Conn,
    inbox: Vec<u8>,
    greeted: bool,
}

enum Polled {
    Quiet,
    Line(String),
    Closed(String),
}

impl Watched {
    fn new(attempt: AttemptId, conn: Conn) -> Self {
        Watched {
            attempt,
            conn,
            inbox: Vec::new(),
            greeted: false,
        }
    }

    /// Reads for at most `wait` (at least 1 ms: a zero read timeout is refused).
    fn poll(&mut self, wait: Duration) -> Polled {
        let stream = &*self.conn.stream;
        if let Err(e) = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1)))) {
            return Polled::Closed(e.to_string());
        }
        let mut buf = [0u8; 512];
        match (&*stream).read(&mut buf) {
            Ok(0) => return Polled::Closed("end of stream".into()),
            Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Polled::Closed(e.to_string()),
        }
        match self.inbox.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line: Vec<u8> = self.inbox.drain(..=end).collect();
                Polled::Line(String::from_utf8_lossy(&line).trim_end().to_string())
            }
            None => Polled::Quiet,
        }
    }
}

/// Where servers publish their address, and `get_address` looks it up.
#[derive(Clone, Default)]
struct Catalog(Arc<Mutex<Option<SocketAddr>>>);

impl Catalog {
    fn publish(&self, address: SocketAddr) {
        *self.0.lock().expect("catalog lock") = Some(address);
    }

    fn withdraw(&self) {
        *self.0.lock().expect("catalog lock") = None;
    }

    /// `get_address`.
    fn lookup(&self) -> io::Result<SocketAddr> {
        self.0
            .lock()
            .expect("catalog lock")
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "the catalog names no server"))
    }
}

/// A loopback echo server on its own thread, until killed.
struct Server {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Binds a fresh port, publishes it, and serves.
    fn start(catalog: &Catalog) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking accept");
        catalog.publish(listener.local_addr().expect("a bound port"));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || serve(&listener, &stop)
        });
        Server { stop, thread }
    }

    /// Stops serving: closes every client and the listening socket, then returns.
    fn kill(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the server thread does not panic");
    }
}

/// Echoes each line back, prefixed with the server's port, until told to stop (it checks
/// every few milliseconds, so `kill` returns at once).
fn serve(listener: &TcpListener, stop: &AtomicBool) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let mut clients: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking client");
                stream
                    .set_read_timeout(Some(Duration::from_millis(2)))
                    .expect("read timeout");
                clients.push((stream, Vec::new()));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept failed: {e}"),
        }
        clients.retain_mut(|(stream, inbox)| {
            let mut buf = [0u8; 512];
            match stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => inbox.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return false,
            }
            while let Some(end) = inbox.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = inbox.drain(..=end).collect();
                let reply = format!("echo from :{port}: {}", String::from_utf8_lossy(&line));
                if stream.write_all(reply.as_bytes()).is_err() {
                    return false;
                }
            }
            true
        });
        if clients.is_empty() {
            thread::sleep(Duration::from_millis(2));
        }
    }
    for (stream, _) in clients {
        let _ = stream.shutdown(Shutdown::Both);
    }
}
