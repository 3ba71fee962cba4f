//! `WorkloadSpec`: the validated description of a request stream, and `request(i)`,
//! the one function every worker uses to produce request `i`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::lengths::{self, RangeMode};

/// What can be wrong with a workload description.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkloadError {
    #[error("length must be at least 1 token")]
    ZeroLength,
    #[error("random range ratio {ratio} is outside the {mode} mode's domain ({domain})")]
    RatioOutOfRange {
        ratio: f64,
        mode: RangeMode,
        domain: &'static str,
    },
    #[error("unknown range mode {0:?} (expected \"one-sided\" or \"symmetric\")")]
    UnknownRangeMode(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Random-length workload (InferenceX / vLLM "random" dataset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Nominal input length L_in, tokens.
    pub input_len: u32,
    /// Nominal output length L_out, tokens.
    pub output_len: u32,
    /// Jitter ratio r.
    pub range_ratio: f64,
    pub range_mode: RangeMode,
    pub seed: u64,
    /// Ask the server to ignore EOS so that output length is exactly the request's.
    pub ignore_eos: bool,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            input_len: 1024,
            output_len: 1024,
            range_ratio: 0.8,
            range_mode: RangeMode::OneSided,
            seed: 0,
            ignore_eos: true,
        }
    }
}

/// Inclusive `(lo, hi)` bounds of a length.
pub type Bounds = (u32, u32);

/// One request of the stream, before it becomes an HTTP body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// Global index in the run's stream.
    pub index: u64,
    pub input_len: u32,
    pub output_len: u32,
    /// Seed of this request's prompt text.
    pub prompt_seed: u64,
}

impl WorkloadSpec {
    /// Checks every field; the error names the field and what was expected.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let field = |field, e: WorkloadError| WorkloadError::Invalid {
            field,
            reason: e.to_string(),
        };
        lengths::bounds(self.input_len, self.range_ratio, self.range_mode)
            .map_err(|e| field("random_input_len", e))?;
        lengths::bounds(self.output_len, self.range_ratio, self.range_mode)
            .map_err(|e| field("random_output_len", e))?;
        Ok(())
    }

    /// Inclusive bounds of input and output lengths.
    pub fn length_bounds(&self) -> Result<(Bounds, Bounds), WorkloadError> {
        Ok((
            lengths::bounds(self.input_len, self.range_ratio, self.range_mode)?,
            lengths::bounds(self.output_len, self.range_ratio, self.range_mode)?,
        ))
    }

    /// Request `index` of the stream: a pure function of `(self, index)`.
    ///
    /// Each index has its own ChaCha8 stream (seeded by `seed`, stream = index), so a
    /// request does not depend on which other requests a worker generated.
    pub fn request(&self, index: u64) -> Result<RequestSpec, WorkloadError> {
        use rand::RngExt;
        let ((ilo, ihi), (olo, ohi)) = self.length_bounds()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let input_len = rng.random_range(ilo..=ihi);
        let output_len = rng.random_range(olo..=ohi);
        let prompt_seed = rng.random::<u64>();
        Ok(RequestSpec {
            index,
            input_len,
            output_len,
            prompt_seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_index_same_request() {
        let spec = WorkloadSpec::default();
        for i in [0, 1, 7, 1_000_000] {
            assert_eq!(spec.request(i), spec.request(i));
        }
        assert_ne!(spec.request(1), spec.request(2));
    }

    #[test]
    fn lengths_stay_in_bounds_and_one_sided_mean_is_near_0_9_l() {
        let spec = WorkloadSpec::default();
        let n = 20_000u64;
        let mut sum = 0u64;
        for i in 0..n {
            let r = spec.request(i).expect("valid spec");
            assert!((819..=1024).contains(&r.input_len), "{r:?}");
            assert!((819..=1024).contains(&r.output_len), "{r:?}");
            sum += u64::from(r.output_len);
        }
        let mean = sum as f64 / n as f64;
        // E = (819 + 1024) / 2 = 921.5; the std error of the mean is ~0.4 here.
        assert!((mean - 921.5).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn validation_names_the_field() {
        let spec = WorkloadSpec {
            output_len: 0,
            ..WorkloadSpec::default()
        };
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.starts_with("random_output_len"), "{err}");
    }
}
