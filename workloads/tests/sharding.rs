//! The contract that makes a fleet behave like one host: for any number of shards and any
//! weights, the union of what the shards send — indices, lengths and arrival instants — is
//! exactly the unsharded stream, and lengths always stay inside their mode's bounds.

use proptest::prelude::*;
use rackload_workloads::lengths::bounds;
use rackload_workloads::shard::split;
use rackload_workloads::{Arrival, RangeMode, Stripe, WorkloadSpec};

type Row = (u64, u32, u32, Option<f64>);

/// What one worker computes for its stripe (as `worker::schedule` does: the schedule's
/// prefix up to its last index).
fn shard_rows(spec: &WorkloadSpec, stripe: &Stripe) -> Vec<Row> {
    let schedule = spec.stripe_schedule(stripe);
    stripe
        .iter()
        .map(|i| {
            let r = spec.request(i).expect("valid");
            (
                i,
                r.input_len,
                r.output_len,
                schedule.get(i as usize).copied(),
            )
        })
        .collect()
}

fn arrival(kind: u8, rate: f64, b: f64) -> Arrival {
    match kind {
        0 => Arrival::Closed,
        1 => Arrival::Poisson { rate },
        2 => Arrival::Gamma {
            rate,
            burstiness: b,
        },
        3 => Arrival::Constant { rate },
        _ => Arrival::Ramp {
            start_rate: rate,
            end_rate: rate * 3.0,
            burstiness: b,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn union_of_shards_is_the_unsharded_stream(
        shards in 1usize..=16,
        weights in proptest::collection::vec(1u64..10, 16),
        n in 0u64..400,
        kind in 0u8..5,
        rate in 0.5f64..200.0,
        b in 0.2f64..4.0,
        seed in any::<u64>(),
        symmetric in any::<bool>(),
    ) {
        let mode = if symmetric { RangeMode::Symmetric } else { RangeMode::OneSided };
        let mut spec = WorkloadSpec::random(256, 128, 0.5, mode, seed);
        spec.arrival = arrival(kind, rate, b);
        let whole = shard_rows(&spec, &Stripe::tile(n, &[1])[0]);
        prop_assert_eq!(whole.len() as u64, n);
        // Weighted stripes as the coordinator builds them (weights = concurrency shares).
        let shares = split(weights[..shards].iter().sum::<u64>(), &weights[..shards]);
        let mut union: Vec<Row> = Stripe::tile(n, &shares).iter().flat_map(|s| shard_rows(&spec, s)).collect();
        union.sort_by_key(|r| r.0);
        prop_assert_eq!(union, whole);
    }

    #[test]
    fn lengths_stay_inside_their_modes_bounds(
        len in 1u32..20_000,
        ratio in 0.0f64..1.0,
        symmetric in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mode = if symmetric { RangeMode::Symmetric } else { RangeMode::OneSided };
        let (lo, hi) = bounds(len, ratio, mode).expect("in domain");
        let spec = WorkloadSpec::random(len, len, ratio, mode, seed);
        for i in 0..50 {
            let r = spec.request(i).expect("valid");
            prop_assert!(lo <= r.input_len && r.input_len <= hi);
            prop_assert!(lo <= r.output_len && r.output_len <= hi);
            prop_assert!(r.output_len >= 1);
        }
        match mode {
            RangeMode::OneSided => prop_assert_eq!((lo, hi), (((ratio * len as f64).floor() as u32).max(1), len)),
            RangeMode::Symmetric => prop_assert!(hi >= len && lo <= len),
        }
    }
}
