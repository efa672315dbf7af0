//! The scenario suite on smol: every scenario is named after the rule of `CONTRACT.md` it
//! checks (see `scenario/mod.rs`).

mod scenario;

use std::net::SocketAddr;

use persistent_connection_smol::{BoxFuture, Smol};

struct SmolRt;

impl scenario::TestRuntime for SmolRt {
    type Rt = Smol;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn runtime() -> Smol {
        Smol
    }

    fn connect(addr: SocketAddr) -> BoxFuture<std::io::Result<std::net::TcpStream>> {
        Box::pin(async move {
            smol::Async::<std::net::TcpStream>::connect(addr)
                .await?
                .into_inner()
        })
    }
}

suite!(SmolRt);
