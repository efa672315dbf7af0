//! Starting a persistent connection: the one place that puts the Machine, the shared
//! state, the task and the handle together, so that the builder, the handle and the task
//! need not know each other.

use std::fmt;

use persistent_connection::Machine;

use crate::builder::{Builder, random_seed};
use crate::connection::Connection;
use crate::error::AttemptError;
use crate::handle::PersistentConnection;
use crate::shared::Shared;
use crate::task::Task;

impl<A, C, E> Builder<A, C, E>
where
    A: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    C: Connection,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// Starts the persistent connection: a background task begins the first cycle at once
    /// (R1). Returns the handle; dropping every clone of it closes everything (R13).
    #[must_use = "dropping the handle closes the persistent connection at once"]
    pub fn spawn(self) -> PersistentConnection<A, C, E> {
        let seed = self.seed.unwrap_or_else(random_seed);
        // Failures compare as by the default key, without formatting OS errors.
        let machine = Machine::with_error_key(self.config, seed, AttemptError::key);
        let shared = Shared::new(self.server_name, self.runtime.clone(), machine, self.events);
        let task = Task::new(shared.clone(), self.hooks);
        // Every event and health report of this connection is inside one span naming it.
        #[cfg(feature = "tracing")]
        let task = tracing::Instrument::instrument(
            task,
            tracing::info_span!("persistent_connection", server = %shared.server_name()),
        );
        self.runtime.spawn(Box::pin(task));
        PersistentConnection::new(shared)
    }
}
