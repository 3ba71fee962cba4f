//! Planned: a pure function from a resolved point and the capacities of the workers that
//! will run it to each worker's share — its concurrency (or cap) and its stripe of the
//! point's global request indices (DESIGN.md §4).

use rackload_workloads::shard::{Stripe, split};

use crate::resolved::Point;

/// One worker's part of a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Index into the capacities the plan was made from.
    pub worker: usize,
    /// Closed loop: this shard's streams. Open loop: its cap on requests in flight, if
    /// the point has one.
    pub concurrency: Option<u32>,
    pub stripe: Stripe,
}

/// Splits `point` over workers of the given capacities (cores; 0 counts as 1).
///
/// With a concurrency C (closed loop, or an open loop's cap), C is split into integer
/// shares weighted by capacity that sum to C; workers whose share is 0 sit the point out,
/// and each active worker's stripe is as wide as its share. Without one (an open loop with
/// no cap), every worker takes a stripe weighted by its capacity.
pub fn plan_point(point: &Point, capacities: &[u32]) -> Vec<Shard> {
    let weights: Vec<u64> = capacities.iter().map(|&c| u64::from(c.max(1))).collect();
    let shares: Vec<Option<u64>> = match point.max_concurrency {
        Some(c) => split(u64::from(c), &weights)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; weights.len()],
    };
    let active: Vec<(usize, Option<u64>, u64)> = shares
        .iter()
        .zip(&weights)
        .enumerate()
        .filter(|(_, (s, _))| s.is_none_or(|s| s > 0))
        .map(|(k, (s, w))| (k, *s, s.unwrap_or(*w)))
        .collect();
    let widths: Vec<u64> = active.iter().map(|a| a.2).collect();
    let stripes = Stripe::tile(point.total_requests(), &widths);
    active
        .into_iter()
        .zip(stripes)
        .map(|((worker, share, _), stripe)| Shard {
            worker,
            concurrency: share.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            stripe,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(c: Option<u32>, n: u64) -> Point {
        Point {
            label: "p".into(),
            max_concurrency: c,
            num_prompts: n,
            warmup: 0,
            request_rate: None,
            duration: None,
        }
    }

    #[test]
    fn concurrency_is_split_by_capacity_and_idle_workers_sit_out() {
        let shards = plan_point(&point(Some(3), 30), &[1, 1, 1, 1]);
        assert_eq!(shards.len(), 3, "{shards:?}");
        assert_eq!(
            shards.iter().map(|s| s.concurrency).collect::<Vec<_>>(),
            vec![Some(1); 3]
        );
        let shards = plan_point(&point(Some(12), 120), &[2, 1]);
        assert_eq!(shards[0].concurrency, Some(8));
        assert_eq!(shards[1].concurrency, Some(4));
    }

    #[test]
    fn an_open_loop_without_a_cap_stripes_by_capacity_and_covers_every_request() {
        let shards = plan_point(&point(None, 1000), &[4, 0, 2]);
        assert_eq!(shards.len(), 3);
        assert!(shards.iter().all(|s| s.concurrency.is_none()));
        let mut seen = vec![0u32; 1000];
        for s in &shards {
            for i in s.stripe.iter() {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "every index exactly once");
    }
}
