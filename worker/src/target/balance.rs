//! Spreading requests over several frontends (`--lb`): round-robin, least outstanding
//! (the endpoint with the fewest requests in flight from this process), or power of two
//! choices (two endpoints drawn at random, the less loaded taken). Per request, never per
//! token: one atomic add to pick, and each endpoint's outstanding count.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rackload_proto::v1::LoadBalance;

/// Picks endpoint indices for requests.
#[derive(Debug)]
pub(crate) struct Balancer {
    lb: LoadBalance,
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(lb: LoadBalance) -> Balancer {
        Balancer {
            lb,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn kind(&self) -> LoadBalance {
        self.lb
    }

    /// The endpoint for the next request, given each endpoint's requests in flight.
    pub(crate) fn pick(&self, outstanding: &[AtomicU64]) -> usize {
        let n = outstanding.len();
        if n <= 1 {
            return 0;
        }
        let tick = self.next.fetch_add(1, Ordering::Relaxed);
        let load = |k: usize| outstanding[k].load(Ordering::Relaxed);
        match self.lb {
            LoadBalance::LeastOutstanding => (0..n)
                .map(|k| (tick + k) % n)
                .min_by_key(|&k| load(k))
                .unwrap_or(tick % n),
            LoadBalance::P2c => {
                // Two distinct endpoints from a cheap hash of the tick (SplitMix64).
                let mut z = (tick as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let a = (z % n as u64) as usize;
                let b = (a + 1 + ((z >> 32) % (n as u64 - 1)) as usize) % n;
                if load(b) < load(a) { b } else { a }
            }
            _ => tick % n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(v: &[u64]) -> Vec<AtomicU64> {
        v.iter().map(|&x| AtomicU64::new(x)).collect()
    }

    #[test]
    fn least_outstanding_prefers_the_idle_endpoint() {
        let b = Balancer::new(LoadBalance::LeastOutstanding);
        let o = loads(&[5, 0, 3]);
        for _ in 0..10 {
            assert_eq!(b.pick(&o), 1);
        }
    }

    #[test]
    fn round_robin_cycles_and_p2c_never_picks_the_busiest_of_three() {
        let rr = Balancer::new(LoadBalance::RoundRobin);
        let o = loads(&[0, 0, 0]);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(&o)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        let p2c = Balancer::new(LoadBalance::P2c);
        let o = loads(&[1, 100, 2]);
        let mut seen = [0; 3];
        for _ in 0..3000 {
            seen[p2c.pick(&o)] += 1;
        }
        assert_eq!(seen[1], 0, "two distinct choices: the busiest always loses");
        assert!(seen[0] > seen[2] && seen[2] > 0, "{seen:?}");
    }
}
