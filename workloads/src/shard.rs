//! Deterministic sharding with exact integer arithmetic: integer shares that always sum
//! to the whole, and weighted stripes of global request indices whose union is the
//! whole stream (DESIGN.md §4).

use serde::{Deserialize, Serialize};

/// Splits `total` into integer shares proportional to `weights` (largest remainder,
/// ties to the lower index). The shares always sum to `total`; all-zero weights count
/// as equal weights.
pub fn split(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let equal;
    let weights = if weights.iter().all(|&w| w == 0) {
        equal = vec![1u64; weights.len()];
        &equal[..]
    } else {
        weights
    };
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut shares: Vec<u64> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (k, &w) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(w);
        // exact / sum <= total, so it fits in u64.
        shares.push(u64::try_from(exact / sum).unwrap_or(u64::MAX));
        remainders.push((exact % sum, k));
    }
    let given: u64 = shares.iter().sum();
    let mut left = total - given;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, k) in &remainders {
        if left == 0 {
            break;
        }
        shares[k] += 1;
        left -= 1;
    }
    shares
}

/// The global indices `i < total` with `offset <= i mod cycle < offset + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stripe {
    pub cycle: u64,
    pub offset: u64,
    pub width: u64,
    pub total: u64,
}

impl Stripe {
    /// Stripes for shards of the given widths over a stream of `total` requests: the
    /// cycle is the sum of the widths, and the stripes tile it in order.
    pub fn tile(total: u64, widths: &[u64]) -> Vec<Stripe> {
        let cycle: u64 = widths.iter().sum();
        let mut offset = 0;
        widths
            .iter()
            .map(|&width| {
                let s = Stripe {
                    cycle,
                    offset,
                    width,
                    total,
                };
                offset += width;
                s
            })
            .collect()
    }

    pub fn contains(&self, index: u64) -> bool {
        self.cycle > 0 && index < self.total && {
            let pos = index % self.cycle;
            pos >= self.offset && pos < self.offset + self.width
        }
    }

    /// Number of indices in the stripe.
    pub fn len(&self) -> u64 {
        if self.cycle == 0 || self.width == 0 {
            return 0;
        }
        let full = self.total / self.cycle;
        let rem = self.total % self.cycle;
        full * self.width + rem.saturating_sub(self.offset).min(self.width)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k`-th index of the stripe, in increasing order.
    pub fn nth(&self, k: u64) -> Option<u64> {
        if self.width == 0 {
            return None;
        }
        let index = (k / self.width)
            .checked_mul(self.cycle)?
            .checked_add(self.offset + k % self.width)?;
        (index < self.total).then_some(index)
    }

    /// The stripe's highest index, if it has any.
    pub fn last(&self) -> Option<u64> {
        self.len().checked_sub(1).and_then(|k| self.nth(k))
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).filter_map(|k| self.nth(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_sums_to_total() {
        assert_eq!(split(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(split(7, &[0, 0]), vec![4, 3]);
        assert_eq!(split(100, &[3, 1]), vec![75, 25]);
    }

    proptest! {
        #[test]
        fn shares_sum_and_stripes_tile_the_stream(
            total in 0u64..5_000,
            weights in proptest::collection::vec(0u64..50, 1..=16),
            c in 1u64..300,
        ) {
            let shares = split(c, &weights);
            prop_assert_eq!(shares.iter().sum::<u64>(), c);
            let stripes = Stripe::tile(total, &shares);
            let mut seen = vec![0u8; total as usize];
            for s in &stripes {
                let idx: Vec<u64> = s.iter().collect();
                prop_assert_eq!(idx.len() as u64, s.len());
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                for i in idx {
                    prop_assert!(s.contains(i));
                    seen[i as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }
}
