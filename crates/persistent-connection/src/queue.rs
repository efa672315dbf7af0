//! The commands the machine has yet to hand out: no allocation, and room for one input's
//! worth (the rule of the loop, drain `poll_command` until `None` before the next input,
//! keeps that enough).
//!
//! Only the first command is kept whole. The ones behind it wait as a [`Later`]: their ids
//! and durations, in 16 bytes, where a whole command takes as much as its largest payload
//! (an address and an event: 56 bytes for `(SocketAddr, Arc<()>, io::Error)`). An input's
//! first command is the only one that can carry what the caller handed in (an address, an
//! error, a late connection); what the later ones carry (the current connection, a
//! timeout, the newest timer's id, the configured uptime) the machine rebuilds when they
//! move to the front.

use crate::types::{AttemptId, StopKind};

/// How many commands can wait to be polled: the most one input yields.
pub(crate) const CAPACITY: usize = 4;

/// Commands behind the first.
const BEHIND: usize = CAPACITY - 1;

/// A command behind the first, without the payload the machine can rebuild.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Later {
    /// `Emit(AttemptingToConnect)`.
    Attempting,
    /// `Emit(Connected(current connection))` for `attempt`.
    Connected(AttemptId),
    /// `Emit(Disconnected)` for the connection `made_by` made; 0 for none (no attempt is
    /// numbered 0): an `Option<AttemptId>` would make every `Later` 24 bytes.
    Disconnected {
        made_by: u64,
    },
    /// The connect timeout failed `attempt`: `Emit(FailedToConnect)` or, when `again`,
    /// `FailedAgain`.
    TimedOut {
        attempt: AttemptId,
        again: bool,
    },
    Stopped(StopKind),
    ComputeRetryDelay {
        attempt: AttemptId,
        failures: u32,
    },
    /// `StartTimer` for the newest timer (one input starts at most one), with the delay as
    /// its seconds and nanoseconds: a `Duration` field would keep its padding.
    StartTimer {
        secs: u64,
        nanos: u32,
    },
    /// `StartUptimeTimer` for `attempt`, for the configured `min_uptime`.
    StartUptimeTimer(AttemptId),
    FetchAddress(AttemptId),
    CancelAttempt(AttemptId),
    /// `CloseConnection` of the current connection, made by `attempt`.
    CloseCurrent(AttemptId),
    Finished,
}

/// A FIFO of one whole command and up to [`BEHIND`] later ones.
pub(crate) struct Queue<T> {
    /// The next command; `None` only when nothing waits.
    pub(crate) front: Option<T>,
    behind: [Later; BEHIND],
    // Small: the queue is part of every Machine.
    head: u8,
    len: u8,
}

impl<T> Queue<T> {
    pub(crate) const fn new() -> Self {
        Queue {
            front: None,
            behind: [Later::Finished; BEHIND],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn free(&self) -> usize {
        CAPACITY - usize::from(self.front.is_some()) - usize::from(self.len)
    }

    /// Whether the next command pushed goes to the front (nothing waits).
    pub(crate) fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    /// Puts `item` at the front. Only while the queue is empty.
    pub(crate) fn set_front(&mut self, item: T) {
        self.front = Some(item);
    }

    /// Adds `later` at the back, behind the front. The machine checks `free()` before it
    /// accepts an input, so this never finds the queue full; if it ever did, the command
    /// would be dropped rather than panic.
    pub(crate) fn push_later(&mut self, later: Later) {
        // Commands are queued only while an input is taken, when nothing waits (the head is
        // back at 0), and drained before the next: no need to wrap around.
        let slot = usize::from(self.head) + usize::from(self.len);
        if slot < BEHIND {
            self.behind[slot] = later;
            self.len += 1;
        }
    }

    /// Takes the front command; the caller then moves the next later one up
    /// ([`pop_later`](Self::pop_later), [`set_front`](Self::set_front)).
    pub(crate) fn take_front(&mut self) -> Option<T> {
        self.front.take()
    }

    /// Whether commands wait behind the front.
    pub(crate) fn has_later(&self) -> bool {
        self.len > 0
    }

    pub(crate) fn pop_later(&mut self) -> Option<Later> {
        if self.len == 0 {
            return None;
        }
        let later = self.behind[usize::from(self.head)];
        self.len -= 1;
        self.head = if self.len == 0 { 0 } else { self.head + 1 };
        Some(later)
    }

    pub(crate) fn peek(&self) -> Option<&T> {
        self.front.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_front_then_a_fifo_that_drops_rather_than_overflows() {
        let mut q: Queue<u32> = Queue::new();
        assert_eq!(q.free(), CAPACITY);
        assert!(q.is_empty());
        assert_eq!(q.peek(), None);
        assert_eq!(q.take_front(), None);
        assert_eq!(q.pop_later(), None);
        q.set_front(7);
        assert!(!q.is_empty());
        assert_eq!(q.free(), CAPACITY - 1);
        for n in 0..BEHIND as u64 {
            q.push_later(Later::FetchAddress(AttemptId(n)));
        }
        assert_eq!(q.free(), 0);
        q.push_later(Later::Finished); // full: dropped, never a panic
        assert_eq!(q.peek(), Some(&7));
        assert_eq!(q.take_front(), Some(7));
        assert_eq!(q.free(), 1, "the front is free again");
        for n in 0..BEHIND as u64 {
            assert_eq!(q.pop_later(), Some(Later::FetchAddress(AttemptId(n))));
        }
        assert_eq!(q.pop_later(), None, "the dropped command was not kept");
        // Once drained, the queue starts over from its first slot: all of it is room again.
        for n in 0..BEHIND as u64 {
            q.push_later(Later::CancelAttempt(AttemptId(n)));
        }
        assert_eq!(q.pop_later(), Some(Later::CancelAttempt(AttemptId(0))));
        // Pushed while others wait (the machine never does): kept only while there is room
        // behind them, and the order holds.
        q.push_later(Later::Finished);
        for n in 1..BEHIND as u64 {
            assert_eq!(q.pop_later(), Some(Later::CancelAttempt(AttemptId(n))));
        }
        assert_eq!(q.pop_later(), None);
        assert_eq!(q.free(), CAPACITY);
    }

    #[test]
    fn a_later_command_takes_16_bytes() {
        assert_eq!(size_of::<Later>(), 16);
    }
}
