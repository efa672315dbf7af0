//! A small tarpc service, in-process replicas of it, and a catalog they publish to: shared
//! by the failover test and `examples/rpc.rs`.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// The service the replicas serve.
#[tarpc::service]
pub trait Greeter {
    /// A greeting that names the replica that answered.
    async fn hello(name: String) -> String;
    /// The replica's name.
    async fn replica() -> String;
    /// Never answers (for a minute): a call in flight when the replica dies.
    async fn stall();
}

#[derive(Clone)]
struct Server {
    name: Arc<str>,
    stalled: Arc<Notify>,
}

impl Greeter for Server {
    async fn hello(self, _: Context, name: String) -> String {
        format!("{}: hello, {name}", self.name)
    }

    async fn replica(self, _: Context) -> String {
        self.name.to_string()
    }

    async fn stall(self, _: Context) {
        self.stalled.notify_one();
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// One replica: a listener on 127.0.0.1 and its connections, all in one task, so that
/// [`kill`](Replica::kill) closes every socket at once, like a process dying.
pub struct Replica {
    pub name: String,
    pub addr: SocketAddr,
    /// Notified when a `stall` call reaches this replica.
    pub stalled: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Replica {
    /// Starts a replica on a free port.
    pub async fn start(name: &str) -> io::Result<Replica> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stalled = Arc::new(Notify::new());
        let server = Server {
            name: name.into(),
            stalled: stalled.clone(),
        };
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection's task.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                let _ = stream.set_nodelay(true);
                let transport =
                    tarpc::serde_transport::Transport::from((stream, Bincode::default()));
                let server = server.clone();
                connections.spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(server.serve())
                        .for_each(|call| async {
                            tokio::spawn(call);
                        }),
                );
            }
        });
        Ok(Replica {
            name: name.to_owned(),
            addr,
            stalled,
            task,
        })
    }

    /// Kills the replica: its listener and connections close (clients see EOF), and new
    /// connections are refused. Returns once the listener is gone.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Where replicas publish their address; `lookup` gives the first one listed.
#[derive(Clone, Default)]
pub struct Catalog {
    entries: Arc<Mutex<Vec<(String, SocketAddr)>>>,
}

impl Catalog {
    pub fn publish(&self, replica: &Replica) {
        self.entries
            .lock()
            .unwrap()
            .push((replica.name.clone(), replica.addr));
    }

    pub fn withdraw(&self, replica: &Replica) {
        self.entries
            .lock()
            .unwrap()
            .retain(|(name, _)| *name != replica.name);
    }

    pub async fn lookup(&self) -> io::Result<SocketAddr> {
        let entries = self.entries.lock().unwrap();
        entries
            .first()
            .map(|(_, addr)| *addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no replica in the catalog"))
    }
}
