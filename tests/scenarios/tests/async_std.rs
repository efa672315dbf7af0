//! The scenario suite on async-std: every scenario is named after the rule of
//! `CONTRACT.md` it checks (see `scenario/mod.rs`).

mod scenario;

use std::net::SocketAddr;

use persistent_connection_async_std::{AsyncStd, BoxFuture};

struct AsyncStdRt;

impl scenario::TestRuntime for AsyncStdRt {
    type Rt = AsyncStd;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }

    fn runtime() -> AsyncStd {
        AsyncStd
    }

    fn connect(addr: SocketAddr) -> BoxFuture<std::io::Result<std::net::TcpStream>> {
        Box::pin(async move {
            let stream = async_std::net::TcpStream::connect(addr).await?;
            std::net::TcpStream::try_from(stream)
        })
    }
}

suite!(AsyncStdRt);
