//! Picking a cluster's host for one request, per shard (no state shared between shards):
//! `LB_ROUNDROBIN` as smooth weighted round robin (nginx's: over a cycle of the weights' sum each
//! host is picked as often as its weight, interleaved; equal weights are plain turns), `LB_RANDOM`
//! as a draw in proportion to the weights. Sans-IO apart from the shard's random generator.

use std::cell::RefCell;

use layotto_core::config::LbPolicy;

/// One shard's balancer over one cluster's hosts (indices into its host list).
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    weights: Vec<u32>,
    total: u64,
    /// Smooth round robin's running scores.
    current: RefCell<Vec<i64>>,
}

impl Balancer {
    /// A balancer over hosts of `weights` (each at least 1); `shard` staggers where round robin
    /// starts, so shards do not all send their first request to the same host.
    pub fn new(policy: LbPolicy, weights: &[u32], shard: usize) -> Self {
        let balancer = Self {
            policy,
            weights: weights.iter().map(|w| (*w).max(1)).collect(),
            total: weights.iter().map(|w| u64::from((*w).max(1))).sum(),
            current: RefCell::new(vec![0; weights.len()]),
        };
        if policy == LbPolicy::RoundRobin {
            for _ in 0..shard % weights.len().max(1) {
                balancer.pick();
            }
        }
        balancer
    }

    /// The next host, `None` for a cluster without hosts.
    pub fn pick(&self) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        match self.policy {
            LbPolicy::Random => {
                let mut draw = fastrand::u64(0..self.total);
                self.weights.iter().position(|weight| {
                    let weight = u64::from(*weight);
                    if draw < weight {
                        true
                    } else {
                        draw -= weight;
                        false
                    }
                })
            }
            LbPolicy::RoundRobin => {
                let mut current = self.current.borrow_mut();
                let mut best = 0;
                for (i, weight) in self.weights.iter().enumerate() {
                    current[i] += i64::from(*weight);
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= self.total as i64;
                Some(best)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(balancer: &Balancer, hosts: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; hosts];
        for _ in 0..picks {
            counts[balancer.pick().unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_the_weights_exactly_per_cycle() {
        let balancer = Balancer::new(LbPolicy::RoundRobin, &[3, 1, 1], 0);
        assert_eq!(counts(&balancer, 3, 50), vec![30, 10, 10]);
        let even = Balancer::new(LbPolicy::RoundRobin, &[1, 1], 1);
        let order: Vec<_> = (0..4).map(|_| even.pick().unwrap()).collect();
        assert_eq!(order, vec![1, 0, 1, 0], "shard 1 starts one host later");
        // Interleaved, not bunched: 3:1 gives a, a, b, a.
        let smooth = Balancer::new(LbPolicy::RoundRobin, &[3, 1], 0);
        let order: Vec<_> = (0..4).map(|_| smooth.pick().unwrap()).collect();
        assert_eq!(order, vec![0, 0, 1, 0]);
    }

    #[test]
    fn random_draws_in_proportion_to_the_weights() {
        let balancer = Balancer::new(LbPolicy::Random, &[1, 3], 0);
        let counts = counts(&balancer, 2, 4000);
        // Expected 3000 of 4000 on the second host; the standard deviation is about 27.
        assert!((2800..=3200).contains(&counts[1]), "{counts:?}");
        assert_eq!(Balancer::new(LbPolicy::Random, &[], 0).pick(), None);
    }
}
