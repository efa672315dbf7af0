//! What the Tokio adapter's test binaries share.

use std::future::Future;
use std::time::Duration;

/// `future`, or a failure naming `what` after a minute of Tokio time (virtual in the tests
/// that pause it), so that no wait in a test can hang.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("waited 60 s of Tokio time for {what}"))
}
