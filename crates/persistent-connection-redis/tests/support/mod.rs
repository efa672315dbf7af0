//! A real `redis-server` process for tests and examples: started on a free 127.0.0.1 port
//! with no persistence, killed with SIGKILL, restarted on the same port.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a starting server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Says that `test` skips because redis-server cannot run (`why`); under `CI=true`, fails
/// instead, so CI can never pass by skipping.
pub fn skip_unless_ci(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: redis-server is needed under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why} (install redis-server)");
}

/// Why redis-server cannot be run here, or `None` if it can.
pub fn unavailable() -> Option<String> {
    match std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("`redis-server --version` exited with {status}")),
        Err(e) => Some(format!("`redis-server` cannot be run: {e}")),
    }
}

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A scratch directory for one server, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "persistent-connection-redis-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `redis-server`; killed if dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on 127.0.0.1:`port` (no RDB, no AOF, working directory
    /// `dir`) and returns once it answers PING, with the moment it first did.
    pub async fn start(port: u16, dir: &Path) -> io::Result<(RedisServer, Instant)> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut server = RedisServer { port, child };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server exited at start with {status}; see {}",
                    dir.join("redis.log").display()
                )));
            }
            if ping(port).await {
                return Ok((server, Instant::now()));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server did not answer PING within {START_LIMIT:?}"),
                ));
            }
            // Polling for readiness: a short pause between probes.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Starts `redis-server` as [`start`](Self::start) does, on a port free when chosen
    /// (`server.port`). A port is free only until someone binds it: if the server exits at
    /// start (a test running beside this one took the port meanwhile), another is tried.
    pub async fn start_on_a_free_port(dir: &Path) -> io::Result<(RedisServer, Instant)> {
        let mut tries = 0;
        loop {
            tries += 1;
            match RedisServer::start(free_port(), dir).await {
                Err(e) if e.kind() == io::ErrorKind::Other && tries < 5 => {
                    eprintln!("redis-server did not start ({e}); trying another port");
                }
                started => return started,
            }
        }
    }

    /// Kills the server with SIGKILL and reaps it: its port is closed when this returns.
    pub async fn kill(mut self) -> io::Result<()> {
        self.child.kill().await
    }
}

/// Whether a server on `port` answers PING (over a raw socket, closed at once).
async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).await.is_ok() && &answer == b"+PONG\r\n"
}
