//! The worker's own hard caps (DESIGN.md §8), whatever a coordinator asks: requests in
//! flight (`--max-inflight`) and request rate (`--max-rate`). A plan that asks for more is
//! refused with a message naming the cap; a plan that asks for nothing (an open loop
//! without a concurrency) runs under the worker's in-flight cap, enforced while it runs.

use rackload_workloads::{Stripe, WorkloadSpec};

/// The in-flight cap a shard runs under: its plan's, or this worker's when the plan has
/// none (0 = the worker has no cap). `None` = no cap at all.
pub fn inflight(plan: Option<u32>, closed: bool, max_inflight: u32) -> Result<Option<u32>, String> {
    match plan {
        None if closed => Err("a closed-loop plan without a concurrency".into()),
        Some(0) => Err("a plan with a concurrency of 0".into()),
        Some(c) if max_inflight > 0 && c > max_inflight => Err(format!(
            "plan asks for {c} concurrent requests; this worker allows at most {max_inflight} (--max-inflight)"
        )),
        Some(c) => Ok(Some(c)),
        None => Ok((max_inflight > 0).then_some(max_inflight)),
    }
}

/// Checks the rate this shard will send against `cap` (req/s). A nominal rate is the
/// arrival's own (its share for this stripe); a schedule without one (trace replay) is
/// measured: the most requests of the stripe inside any 1-second window.
pub fn rate(workload: &WorkloadSpec, stripe: &Stripe, cap: f64) -> Result<(), String> {
    if !workload.arrival.is_open() || stripe.cycle == 0 {
        return Ok(());
    }
    if let Some(rate) = workload.arrival.rate() {
        let mine = rate * stripe.width as f64 / stripe.cycle as f64;
        if mine > cap {
            return Err(format!(
                "plan asks for {mine:.1} req/s from this worker; it allows at most {cap} (--max-rate)"
            ));
        }
        return Ok(());
    }
    let schedule = workload.stripe_schedule(stripe);
    let mut mine: Vec<f64> = stripe
        .iter()
        .filter_map(|i| schedule.get(i as usize).copied())
        .collect();
    mine.sort_by(f64::total_cmp);
    let (peak, at) = peak_in_one_second(&mine);
    if peak as f64 > cap {
        return Err(format!(
            "plan sends {peak} requests within one second from {at:.1} s of its schedule; \
             this worker allows at most {cap} req/s (--max-rate)"
        ));
    }
    Ok(())
}

/// The most offsets (sorted, seconds) inside any half-open window of one second, and
/// where that window starts.
pub(crate) fn peak_in_one_second(sorted: &[f64]) -> (usize, f64) {
    let (mut best, mut at, mut lo) = (0, 0.0, 0);
    for (hi, &t) in sorted.iter().enumerate() {
        while t - sorted[lo] >= 1.0 {
            lo += 1;
        }
        if hi + 1 - lo > best {
            best = hi + 1 - lo;
            at = sorted[lo];
        }
    }
    (best, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_without_a_cap_runs_under_the_workers() {
        assert_eq!(inflight(None, false, 8), Ok(Some(8)));
        assert_eq!(inflight(None, false, 0), Ok(None));
        assert_eq!(inflight(Some(4), false, 8), Ok(Some(4)));
        assert!(
            inflight(Some(16), true, 8)
                .unwrap_err()
                .contains("--max-inflight")
        );
        assert!(inflight(None, true, 8).is_err());
    }

    #[test]
    fn the_peak_counts_a_burst_anywhere_in_the_schedule() {
        assert_eq!(peak_in_one_second(&[]).0, 0);
        // Exact binary fractions: 8 a second.
        let even: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.125).collect();
        assert_eq!(peak_in_one_second(&even).0, 8);
        let mut burst = even.clone();
        burst.extend((0..32).map(|i| 5.0 + f64::from(i) / 64.0));
        burst.sort_by(f64::total_cmp);
        let (peak, at) = peak_in_one_second(&burst);
        assert_eq!(peak, 40);
        assert!((4.0..=5.0).contains(&at), "{at}");
    }
}
