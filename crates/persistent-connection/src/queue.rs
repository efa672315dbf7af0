//! A fixed-capacity FIFO for the commands the machine has yet to hand out: no allocation.

/// How many commands can wait to be polled: the most one input yields. The rule of the
/// loop (drain `poll_command` until `None` before the next input) keeps it enough.
pub(crate) const CAPACITY: usize = 4;

pub(crate) struct Queue<T> {
    items: [Option<T>; CAPACITY],
    // Small: the queue is part of every Machine.
    head: u8,
    len: u8,
}

impl<T> Queue<T> {
    pub(crate) const fn new() -> Self {
        Queue {
            items: [const { None }; CAPACITY],
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn free(&self) -> usize {
        CAPACITY - usize::from(self.len)
    }

    /// Adds `item` at the back. The machine checks `free()` before it accepts an input, so
    /// this never finds the queue full; if it ever did, the item would be dropped rather
    /// than panic.
    pub(crate) fn push(&mut self, item: T) {
        if usize::from(self.len) < CAPACITY {
            let slot = (usize::from(self.head) + usize::from(self.len)) % CAPACITY;
            self.items[slot] = Some(item);
            self.len += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.items[usize::from(self.head)].take();
        self.head = (self.head + 1) % CAPACITY as u8;
        self.len -= 1;
        item
    }

    pub(crate) fn peek(&self) -> Option<&T> {
        if self.len == 0 {
            None
        } else {
            self.items[usize::from(self.head)].as_ref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_that_drops_rather_than_overflows() {
        let mut q: Queue<u32> = Queue::new();
        assert_eq!(q.free(), CAPACITY);
        assert_eq!(q.peek(), None);
        assert_eq!(q.pop(), None);
        for n in 0..CAPACITY as u32 {
            q.push(n);
        }
        assert_eq!(q.free(), 0);
        q.push(99); // full: dropped, never a panic
        assert_eq!(q.peek(), Some(&0));
        for n in 0..CAPACITY as u32 {
            assert_eq!(q.pop(), Some(n));
        }
        assert_eq!(q.pop(), None, "the dropped item was not kept");
        // Wrapping around the end of the array keeps the order.
        q.push(1);
        q.push(2);
        assert_eq!(q.pop(), Some(1));
        q.push(3);
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.free(), CAPACITY);
    }
}
