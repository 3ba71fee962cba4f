//! Spreading requests over several frontends (`--lb`): round-robin, or least outstanding
//! (the endpoint with the fewest requests in flight from this process). Per request, never
//! per token: one atomic add to pick, and each endpoint's outstanding count. `--lb p2c`
//! is tower's power-of-two-choices balancer in the shard's send stack
//! ([`crate::middleware`]); a send that bypasses it falls back to round-robin here.

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
    fn round_robin_cycles() {
        let rr = Balancer::new(LoadBalance::RoundRobin);
        let o = loads(&[0, 0, 0]);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(&o)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
