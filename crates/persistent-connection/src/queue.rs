//! A fixed-capacity FIFO for the commands the machine has yet to hand out: no allocation.

/// How many commands can wait to be polled.
pub(crate) const CAPACITY: usize = 8;

pub(crate) struct Queue<T> {
    items: [Option<T>; CAPACITY],
    head: usize,
    len: usize,
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
        CAPACITY - self.len
    }

    /// Adds `item` at the back. The machine checks `free()` before it accepts an input, so
    /// this never finds the queue full; if it ever did, the item would be dropped rather
    /// than panic.
    pub(crate) fn push(&mut self, item: T) {
        if self.len < CAPACITY {
            let slot = (self.head + self.len) % CAPACITY;
            self.items[slot] = Some(item);
            self.len += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.items[self.head].take();
        self.head = (self.head + 1) % CAPACITY;
        self.len -= 1;
        item
    }

    pub(crate) fn peek(&self) -> Option<&T> {
        if self.len == 0 {
            None
        } else {
            self.items[self.head].as_ref()
        }
    }
}
