//! Per-shard pool of copy buffers. A connection borrows a buffer only while it has bytes in flight
//! and gives it back when it would wait for more, so idle connections hold none and no read
//! allocates. Shard-local (`RefCell`, no lock).

use std::cell::RefCell;

/// Reusable byte buffers of one size.
#[derive(Debug)]
pub struct BufferPool {
    free: RefCell<Vec<Box<[u8]>>>,
    buffer_size: usize,
    keep: usize,
}

impl BufferPool {
    /// A pool of `buffer_size`-byte buffers keeping at most `keep` idle ones.
    pub fn new(buffer_size: usize, keep: usize) -> Self {
        Self {
            free: RefCell::new(Vec::with_capacity(keep)),
            buffer_size,
            keep,
        }
    }

    /// A buffer: a free one if any, else a new one.
    pub fn take(&self) -> Box<[u8]> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; self.buffer_size].into_boxed_slice())
    }

    /// Returns a buffer for reuse (dropped if the pool already keeps enough).
    pub fn give_back(&self, buffer: Box<[u8]>) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(buffer);
        }
    }

    /// Number of idle buffers held.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_returned_buffers() {
        let pool = BufferPool::new(8, 2);
        let first = pool.take();
        let address = first.as_ptr();
        pool.give_back(first);
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), address);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn keeps_at_most_its_limit() {
        let pool = BufferPool::new(8, 1);
        let (a, b) = (pool.take(), pool.take());
        pool.give_back(a);
        pool.give_back(b);
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.take().len(), 8);
    }
}
