//! The scenario suite on Tokio (multi-threaded runtime, two workers): every scenario is
//! named after the rule of `CONTRACT.md` it checks (see `scenario/mod.rs`).

mod scenario;

use std::net::SocketAddr;

use persistent_connection_tokio::{BoxFuture, Tokio};

struct TokioRt;

impl scenario::TestRuntime for TokioRt {
    type Rt = Tokio;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a Tokio runtime")
            .block_on(future)
    }

    fn runtime() -> Tokio {
        Tokio::current()
    }

    fn connect(addr: SocketAddr) -> BoxFuture<std::io::Result<std::net::TcpStream>> {
        Box::pin(async move { tokio::net::TcpStream::connect(addr).await?.into_std() })
    }
}

suite!(TokioRt);
