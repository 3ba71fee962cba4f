//! `sharegpt-synthetic`: ShareGPT-like lengths without the dataset file. Input and output
//! lengths are drawn independently by inverse CDF from two empirical quantile tables
//! (every 2.5th percentile, linear between them), then pairs over vLLM's total bound
//! (2048) are redrawn.
//!
//! Provenance: the tables are the quantiles of the lengths of the first 10,000 entries of
//! `ShareGPT_V3_unfiltered_cleaned_split.json` (first turn as prompt, second as output),
//! counted with Qwen2.5's tokenizer and filtered by vLLM's rules (prompt and output ≥ 4,
//! prompt ≤ 1024, prompt + output ≤ 2048). Regenerate them with
//! `cargo run --release -p rackload-workloads --example fit_sharegpt -- DATA TOKENIZER`.
//! Fitted on 2026-11-22 from 8,761 kept entries (10,000 in the file; 144 with fewer than two
//! turns, 196 prompts < 4, 462 outputs < 4, 434 prompts > 1024, 3 totals > 2048 dropped).
//! Medians: prompt 113, output 131 tokens. The correlation between prompt and output length
//! is not modelled.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Prompt-length quantiles at 0, 2.5, …, 100 %.
pub const INPUT_QUANTILES: [u32; 41] = [
    4, 6, 8, 9, 10, 12, 13, 15, 17, 19, 21, 23, 27, 31, 36, 43, 51, 63, 76, 93, 113, 137, 163, 193,
    221, 251, 274, 300, 323, 348, 374, 404, 438, 475, 515, 566, 616, 682, 767, 785, 1024,
];

/// Output-length quantiles at 0, 2.5, …, 100 %.
pub const OUTPUT_QUANTILES: [u32; 41] = [
    4, 6, 8, 9, 11, 13, 15, 17, 20, 23, 27, 31, 37, 42, 51, 60, 74, 86, 100, 115, 131, 149, 169,
    186, 204, 223, 239, 257, 273, 291, 310, 330, 351, 376, 405, 444, 493, 555, 642, 769, 1856,
];

/// vLLM's bound on prompt + output.
pub(crate) const MAX_TOTAL: u32 = 2048;

fn inverse_cdf(table: &[u32], u: f64) -> u32 {
    let pos = u.clamp(0.0, 1.0) * (table.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(table.len() - 1);
    let frac = pos - lo as f64;
    let v = f64::from(table[lo]) + (f64::from(table[hi]) - f64::from(table[lo])) * frac;
    v.round().max(1.0) as u32
}

/// Draws (input, output) lengths.
pub fn sample(rng: &mut ChaCha8Rng) -> (u32, u32) {
    let mut last = (0, 0);
    for _ in 0..64 {
        let i = inverse_cdf(&INPUT_QUANTILES, rng.random::<f64>());
        let o = inverse_cdf(&OUTPUT_QUANTILES, rng.random::<f64>());
        if i + o <= MAX_TOTAL {
            return (i, o);
        }
        last = (i, o);
    }
    (last.0, MAX_TOTAL.saturating_sub(last.0).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tables_are_monotone_and_draws_respect_the_filters() {
        for t in [&INPUT_QUANTILES[..], &OUTPUT_QUANTILES[..]] {
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut below_median = 0;
        for _ in 0..10_000 {
            let (i, o) = sample(&mut rng);
            assert!(
                (4..=1024).contains(&i) && o >= 4 && i + o <= MAX_TOTAL,
                "{i} {o}"
            );
            if i <= INPUT_QUANTILES[20] {
                below_median += 1;
            }
        }
        // about half the prompts fall below the table's median
        assert!((4_700..=5_300).contains(&below_median), "{below_median}");
    }
}
