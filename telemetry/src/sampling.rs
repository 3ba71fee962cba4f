//! Which requests get a span. Every request of a run shares the run's trace id, so the
//! SDK's trace-id-ratio sampler would keep all or none; instead each request is a
//! Bernoulli draw on a hash of (run seed, global index): deterministic for a run, costs
//! one multiply-xorshift for an unsampled request, and the kept share is binomial.

use crate::TelemetryError;

/// The share of requests traced when neither the flag nor the environment says and the
/// run's size is not known (a worker given a plan without a ratio).
pub(crate) const DEFAULT_RATIO: f64 = 0.01;

/// The default keeps about this many request spans per run: a small run is traced whole,
/// a large one at no less than [`DEFAULT_RATIO`].
pub(crate) const SPAN_BUDGET: u64 = 1000;

/// The default ratio for a run that plans `requests` requests (warmup included): every
/// request up to [`SPAN_BUDGET`], then the budget's share of them, never below
/// [`DEFAULT_RATIO`] (1% from 100,000 requests on). Tracing cost is per traced request,
/// so a small run is traced whole for free and a large, fast one pays for 1% at most.
pub fn default_ratio(requests: u64) -> f64 {
    if requests <= SPAN_BUDGET {
        1.0
    } else {
        (SPAN_BUDGET as f64 / requests as f64).max(DEFAULT_RATIO)
    }
}

/// The ratio the user asked for: `--trace-sample`, else the standard sampler variables;
/// `None` when neither says (then [`default_ratio`] applies).
pub fn configured_ratio(flag: Option<f64>) -> Result<Option<f64>, TelemetryError> {
    let check = |var: &'static str, r: f64| {
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(TelemetryError::BadSetting {
                var,
                value: r.to_string(),
                expected: "a ratio between 0 and 1",
            })
        }
    };
    if let Some(r) = flag {
        return check("--trace-sample", r).map(Some);
    }
    let sampler = crate::env("OTEL_TRACES_SAMPLER");
    match sampler.as_deref().map(str::trim) {
        None => Ok(None),
        Some("always_on" | "parentbased_always_on") => Ok(Some(1.0)),
        Some("always_off" | "parentbased_always_off") => Ok(Some(0.0)),
        Some("traceidratio" | "parentbased_traceidratio") => {
            match crate::env("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(Some(1.0)),
                Some(a) => {
                    let r = a
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| TelemetryError::BadSetting {
                            var: "OTEL_TRACES_SAMPLER_ARG",
                            value: a.clone(),
                            expected: "a ratio between 0 and 1",
                        })?;
                    check("OTEL_TRACES_SAMPLER_ARG", r).map(Some)
                }
            }
        }
        Some(other) => Err(TelemetryError::BadSetting {
            var: "OTEL_TRACES_SAMPLER",
            value: other.to_owned(),
            expected: "always_on, always_off, traceidratio or parentbased_traceidratio",
        }),
    }
}

/// Decides, per global request index, whether that request gets a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSampler {
    seed: u64,
    /// Sampled when the hash is below this; `u64::MAX` with `all` means every request.
    threshold: u64,
    all: bool,
}

impl RequestSampler {
    /// `ratio` of requests (clamped to [0, 1]), drawn with `seed`.
    pub fn new(ratio: f64, seed: u64) -> RequestSampler {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        RequestSampler {
            seed,
            threshold: (ratio * u64::MAX as f64) as u64,
            all: ratio >= 1.0,
        }
    }

    /// A seed from a run id, so every worker of a run draws the same requests.
    pub fn seed_of(run_id: &str) -> u64 {
        run_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// Never samples.
    pub fn off() -> RequestSampler {
        RequestSampler::new(0.0, 0)
    }

    pub fn is_off(&self) -> bool {
        self.threshold == 0 && !self.all
    }

    pub fn sampled(&self, index: u64) -> bool {
        self.all || splitmix(self.seed ^ index) < self.threshold
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_none_and_a_ratio_within_binomial_bounds() {
        let seed = RequestSampler::seed_of("run-1");
        assert!((0..1000).all(|i| RequestSampler::new(1.0, seed).sampled(i)));
        assert!(!(0..1000).any(|i| RequestSampler::new(0.0, seed).sampled(i)));
        assert!(RequestSampler::off().is_off());
        // 100,000 draws at 1%: mean 1,000, sd ~31.5; 5 sd either side.
        let s = RequestSampler::new(0.01, seed);
        let n = (0..100_000).filter(|&i| s.sampled(i)).count();
        assert!((843..=1157).contains(&n), "{n}");
        // Same run, same choice; another run, another one.
        let again = RequestSampler::new(0.01, seed);
        assert!((0..10_000).all(|i| s.sampled(i) == again.sampled(i)));
        let other = RequestSampler::new(0.01, RequestSampler::seed_of("run-2"));
        assert!((0..10_000).any(|i| s.sampled(i) != other.sampled(i)));
    }

    #[test]
    fn a_flag_outside_zero_to_one_is_refused() {
        assert!(configured_ratio(Some(1.5)).is_err());
        assert!(configured_ratio(Some(-0.1)).is_err());
        assert_eq!(configured_ratio(Some(0.25)).ok(), Some(Some(0.25)));
        assert!(configured_ratio(Some(f64::NAN)).is_err());
    }

    #[test]
    fn the_default_traces_a_small_run_whole_and_a_large_one_at_one_percent() {
        assert_eq!(default_ratio(0), 1.0);
        assert_eq!(default_ratio(SPAN_BUDGET), 1.0);
        assert_eq!(default_ratio(4 * SPAN_BUDGET), 0.25);
        assert_eq!(default_ratio(100 * SPAN_BUDGET), DEFAULT_RATIO);
        assert_eq!(default_ratio(u64::MAX), DEFAULT_RATIO);
    }
}
