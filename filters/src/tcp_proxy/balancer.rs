//! Round-robin choice of upstream host, one cursor per shard (no shared state). Sans-IO.

use std::{cell::Cell, net::SocketAddr, sync::Arc};

/// Cycles through a cluster's hosts.
#[derive(Debug)]
pub struct RoundRobin {
    hosts: Arc<[SocketAddr]>,
    next: Cell<usize>,
}

impl RoundRobin {
    /// A cursor over `hosts` starting at `start` (shards start at different hosts so that few
    /// connections still spread). `hosts` must not be empty.
    pub fn new(hosts: Arc<[SocketAddr]>, start: usize) -> Self {
        Self {
            next: Cell::new(start % hosts.len()),
            hosts,
        }
    }

    /// The host for the next connection.
    pub fn pick(&self) -> SocketAddr {
        let index = self.next.get();
        self.next.set((index + 1) % self.hosts.len());
        self.hosts[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u16) -> Arc<[SocketAddr]> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn cycles_through_every_host_in_turn() {
        let rr = RoundRobin::new(hosts(3), 0);
        let ports: Vec<u16> = (0..7).map(|_| rr.pick().port()).collect();
        assert_eq!(ports, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn shards_start_at_different_hosts() {
        assert_eq!(RoundRobin::new(hosts(3), 1).pick().port(), 2);
        assert_eq!(RoundRobin::new(hosts(3), 4).pick().port(), 2);
        assert_eq!(RoundRobin::new(hosts(1), 5).pick().port(), 1);
    }
}
