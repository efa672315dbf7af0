//! The commands the machine has yet to hand out: no allocation, and room for one input's
//! worth (the rule of the loop, drain `poll_command` until `None` before the next input,
//! keeps that enough).
//!
//! A command that carries what the caller handed in (an address, an error, a late
//! connection) is kept whole, at the front; only an input's first command can. The others
//! wait as a [`Later`]: their ids and durations, in 16 bytes, where a whole command takes as
//! much as its largest payload (an address and an event: 56 bytes for `(SocketAddr,
//! Arc<()>, io::Error)`). What they carry (the current connection, a timeout, the newest
//! timer's id, the configured uptime) the machine rebuilds when they are polled, and hands
//! out directly: a command stored whole and read back at once costs the drain a
//! store-to-load forwarding stall (BENCHMARKS.md, F5).

use crate::types::{AttemptId, StopKind};

/// How many commands can wait to be polled: the most one input yields.
pub(crate) const CAPACITY: usize = 4;

/// Commands behind the first. One input may queue [`CAPACITY`] small ones: then the first
/// is built whole at the front (`Machine::make_room`), which is rare; a fourth slot would
/// make every Machine 16 bytes larger (and the herd's last-level misses 30 % more, F5).
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

/// A FIFO of one whole command and up to [`BEHIND`] later ones (`repr(C)`, the front
/// first: its first byte is read by every poll; the last slots are seldom touched).
#[repr(C)]
pub(crate) struct Queue<T> {
    /// A whole command (one that carries what the caller handed in, or one built by a
    /// peek), which comes before the later ones.
    front: Option<T>,
    /// The later ones, first first; the rest `None`. No head or length beside them: an
    /// `Option<Later>` takes no more room than a `Later`, and two bytes more would cost the
    /// Machine eight (its alignment).
    behind: [Option<Later>; BEHIND],
}

impl<T> Queue<T> {
    /// The bytes from the queue's start that an input queuing one or two commands (most
    /// do) and the drain of them read: the front's first byte (whether a whole one
    /// waits), the first two later slots and the first byte of the third (whether it is
    /// taken). The Machine keeps what an attempt touches within these and its own first
    /// fields.
    #[cfg(test)]
    pub(crate) const TOUCHED: usize =
        core::mem::offset_of!(Self, behind) + 2 * size_of::<Option<Later>>() + 1;

    pub(crate) const fn new() -> Self {
        Queue {
            front: None,
            behind: [None; BEHIND],
        }
    }

    /// How many commands wait, whole or small.
    pub(crate) fn pending(&self) -> usize {
        usize::from(self.front.is_some())
            + self.behind.iter().filter(|later| later.is_some()).count()
    }

    /// Whether nothing waits, whole or small.
    pub(crate) fn is_empty(&self) -> bool {
        self.front_is_free() && !self.has_later()
    }

    /// Whether no whole command waits at the front.
    pub(crate) fn front_is_free(&self) -> bool {
        self.front.is_none()
    }

    /// Puts `item` at the front. Only while the front is free.
    pub(crate) fn set_front(&mut self, item: T) {
        self.front = Some(item);
    }

    /// Adds `later` at the back, behind the front, or hands it back when every slot is
    /// taken (the caller then makes room).
    pub(crate) fn push_later(&mut self, later: Later) -> Result<(), Later> {
        match self.behind.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(later);
                Ok(())
            }
            None => Err(later),
        }
    }

    /// Takes the front command; once it is gone, the later ones come from
    /// [`pop_later`](Self::pop_later).
    pub(crate) fn take_front(&mut self) -> Option<T> {
        self.front.take()
    }

    /// Whether commands wait behind the front.
    pub(crate) fn has_later(&self) -> bool {
        self.behind[0].is_some()
    }

    /// Takes the first later command; the others move up one. Stops at the first empty
    /// slot: the slots behind it are empty too, and most often one later command waits,
    /// so the last slots are not read at all.
    pub(crate) fn pop_later(&mut self) -> Option<Later> {
        let later = self.behind[0].take()?;
        for i in 1..BEHIND {
            let Some(next) = self.behind[i].take() else {
                break;
            };
            self.behind[i - 1] = Some(next);
        }
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
    fn one_whole_in_front_then_a_fifo_of_small_ones_that_hands_back_rather_than_overflows() {
        let mut q: Queue<u32> = Queue::new();
        assert_eq!(q.pending(), 0);
        assert!(q.is_empty() && q.front_is_free() && !q.has_later());
        assert_eq!(q.peek(), None);
        assert_eq!(q.take_front(), None);
        assert_eq!(q.pop_later(), None);
        // Small ones alone: the queue is not empty, though its front is free.
        assert_eq!(q.push_later(Later::Finished), Ok(()));
        assert!(!q.is_empty() && q.front_is_free() && q.has_later());
        assert_eq!(q.pending(), 1);
        assert_eq!(q.pop_later(), Some(Later::Finished));
        assert!(q.is_empty());
        q.set_front(7);
        assert!(!q.is_empty() && !q.front_is_free() && !q.has_later());
        assert_eq!(q.pending(), 1);
        for n in 0..BEHIND as u64 {
            assert_eq!(q.push_later(Later::FetchAddress(AttemptId(n))), Ok(()));
        }
        assert_eq!(q.pending(), 1 + BEHIND);
        // Full: handed back, never a panic.
        assert_eq!(q.push_later(Later::Finished), Err(Later::Finished));
        assert_eq!(q.pending(), 1 + BEHIND);
        assert_eq!(q.peek(), Some(&7));
        assert_eq!(q.take_front(), Some(7));
        assert!(q.front_is_free() && !q.is_empty());
        assert_eq!(q.pending(), BEHIND, "the front is free again");
        for n in 0..BEHIND as u64 {
            assert!(q.has_later());
            assert_eq!(q.pop_later(), Some(Later::FetchAddress(AttemptId(n))));
        }
        assert_eq!(q.pop_later(), None, "the handed-back command was not kept");
        assert!(q.is_empty());
        // Once drained, the queue starts over from its first slot: all of it is room again.
        for n in 0..BEHIND as u64 {
            assert_eq!(q.push_later(Later::CancelAttempt(AttemptId(n))), Ok(()));
        }
        assert_eq!(q.pop_later(), Some(Later::CancelAttempt(AttemptId(0))));
        // Pushed while others wait (the machine never does): it goes behind them.
        assert_eq!(q.push_later(Later::Finished), Ok(()));
        assert_eq!(q.pending(), BEHIND);
        for n in 1..BEHIND as u64 {
            assert_eq!(q.pop_later(), Some(Later::CancelAttempt(AttemptId(n))));
        }
        assert_eq!(q.pop_later(), Some(Later::Finished));
        assert!(!q.has_later());
        assert_eq!(q.pop_later(), None);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn a_later_command_takes_16_bytes_and_needs_no_length_beside_it() {
        assert_eq!(size_of::<Later>(), 16);
        assert_eq!(size_of::<[Option<Later>; BEHIND]>(), 16 * BEHIND);
    }
}
