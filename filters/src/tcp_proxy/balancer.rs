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

    /// The index and address of the host for the next connection: the next one in turn for which
    /// `available` holds, or the next in turn if none is (better a try than no try, as Envoy's
    /// panic mode).
    pub fn pick(&self, available: impl Fn(usize) -> bool) -> (usize, SocketAddr) {
        let len = self.hosts.len();
        let start = self.next.get();
        let index = (0..len)
            .map(|offset| (start + offset) % len)
            .find(|&i| available(i))
            .unwrap_or(start);
        self.next.set((index + 1) % len);
        (index, self.hosts[index])
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
        let ports: Vec<u16> = (0..7).map(|_| rr.pick(|_| true).1.port()).collect();
        assert_eq!(ports, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn skips_unavailable_hosts_unless_none_is_available() {
        let rr = RoundRobin::new(hosts(3), 0);
        let ports: Vec<u16> = (0..4).map(|_| rr.pick(|i| i != 1).1.port()).collect();
        assert_eq!(ports, vec![1, 3, 1, 3]);
        let ports: Vec<u16> = (0..3).map(|_| rr.pick(|_| false).1.port()).collect();
        assert_eq!(ports, vec![1, 2, 3]);
    }

    #[test]
    fn shards_start_at_different_hosts() {
        assert_eq!(RoundRobin::new(hosts(3), 1).pick(|_| true).1.port(), 2);
        assert_eq!(RoundRobin::new(hosts(3), 4).pick(|_| true).1.port(), 2);
        assert_eq!(RoundRobin::new(hosts(1), 5).pick(|_| true).1.port(), 1);
    }
}
