//! When requests arrive. Closed loop (a fixed number in flight, no schedule) or an open
//! loop whose schedule is a list of absolute offsets from the run's start instant — never
//! accumulated sleeps. Every inter-arrival gap j is drawn from its own random stream, so
//! the schedule is a pure function of (arrival, seed, n) and identical on every worker.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

use crate::spec::WorkloadError;

/// Keeps the arrival streams apart from the length streams of the same seed.
const ARRIVAL_SALT: u64 = 0x6172_7269_7661_6c73; // "arrivals"

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Arrival {
    /// Closed loop: each of C slots sends its next request when the previous one ends.
    #[default]
    Closed,
    /// Poisson process at `rate` requests/s (exponential gaps).
    Poisson { rate: f64 },
    /// Gamma-distributed gaps: shape `burstiness`, scale 1/(rate·burstiness); b = 1 is
    /// Poisson, b < 1 burstier, b > 1 more regular (vLLM's `--burstiness`).
    Gamma { rate: f64, burstiness: f64 },
    /// Exactly 1/rate between requests.
    Constant { rate: f64 },
    /// Rate rising (or falling) linearly from `start_rate` to `end_rate` over the point's
    /// requests, gamma gaps of shape `burstiness` at each request's rate.
    Ramp {
        start_rate: f64,
        end_rate: f64,
        burstiness: f64,
    },
    /// Replay of the dataset's timestamps, multiplied by `time_scale` (0.5 = twice as fast).
    Trace { time_scale: f64 },
}

fn positive(field: &'static str, v: f64) -> Result<(), WorkloadError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(WorkloadError::Invalid {
            field,
            reason: format!("{v} must be a positive number"),
        })
    }
}

impl Arrival {
    pub fn validate(&self) -> Result<(), WorkloadError> {
        match *self {
            Arrival::Closed => Ok(()),
            Arrival::Poisson { rate } | Arrival::Constant { rate } => {
                positive("request_rate", rate)
            }
            Arrival::Gamma { rate, burstiness } => {
                positive("request_rate", rate)?;
                positive("burstiness", burstiness)
            }
            Arrival::Ramp {
                start_rate,
                end_rate,
                burstiness,
            } => {
                positive("ramp_start_rate", start_rate)?;
                positive("ramp_end_rate", end_rate)?;
                positive("burstiness", burstiness)
            }
            Arrival::Trace { time_scale } => positive("time_scale", time_scale),
        }
    }

    /// The same process at another rate (Poisson, gamma, constant); others unchanged.
    pub fn with_rate(&self, new: f64) -> Arrival {
        match *self {
            Arrival::Poisson { .. } => Arrival::Poisson { rate: new },
            Arrival::Gamma { burstiness, .. } => Arrival::Gamma {
                rate: new,
                burstiness,
            },
            Arrival::Constant { .. } => Arrival::Constant { rate: new },
            ref other => other.clone(),
        }
    }

    /// The request rate, for the processes that have one.
    pub fn rate(&self) -> Option<f64> {
        match *self {
            Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. }
            | Arrival::Constant { rate } => Some(rate),
            Arrival::Ramp {
                start_rate,
                end_rate,
                ..
            } => Some(start_rate.max(end_rate)),
            _ => None,
        }
    }

    /// True for schedules of absolute send instants.
    pub fn is_open(&self) -> bool {
        !matches!(self, Arrival::Closed)
    }

    /// A short name for labels and tables.
    pub fn describe(&self) -> String {
        match self {
            Arrival::Closed => "closed loop".into(),
            Arrival::Poisson { rate } => format!("poisson {rate} req/s"),
            Arrival::Gamma { rate, burstiness } => {
                format!("gamma {rate} req/s, burstiness {burstiness}")
            }
            Arrival::Constant { rate } => format!("constant {rate} req/s"),
            Arrival::Ramp {
                start_rate,
                end_rate,
                ..
            } => format!("ramp {start_rate}→{end_rate} req/s"),
            Arrival::Trace { time_scale } => format!("trace replay ×{time_scale}"),
        }
    }

    /// Gap after request `j` of `n`, in seconds.
    fn gap(&self, seed: u64, j: u64, n: u64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ARRIVAL_SALT);
        rng.set_stream(j);
        let gamma = |rate: f64, b: f64, rng: &mut ChaCha8Rng| {
            Gamma::new(b, 1.0 / (rate * b)).map_or(1.0 / rate, |g| g.sample(rng))
        };
        match *self {
            Arrival::Closed | Arrival::Trace { .. } => 0.0,
            Arrival::Poisson { rate } => Exp::new(rate).map_or(1.0 / rate, |e| e.sample(&mut rng)),
            Arrival::Gamma { rate, burstiness } => gamma(rate, burstiness, &mut rng),
            Arrival::Constant { rate } => 1.0 / rate,
            Arrival::Ramp {
                start_rate,
                end_rate,
                burstiness,
            } => {
                let f = if n > 1 {
                    j as f64 / (n - 1) as f64
                } else {
                    0.0
                };
                gamma(
                    start_rate + (end_rate - start_rate) * f,
                    burstiness,
                    &mut rng,
                )
            }
        }
    }

    /// Send offsets in seconds from the start instant of requests `0..n` (request 0 at 0);
    /// `trace_ms(i)` gives trace timestamps. Empty for a closed loop.
    pub fn schedule(&self, seed: u64, n: u64, trace_ms: impl Fn(u64) -> Option<f64>) -> Vec<f64> {
        self.schedule_prefix(seed, n, n, trace_ms)
    }

    /// The first `upto` offsets of the schedule of a stream of `n` requests (a ramp's rate
    /// depends on `n`; a worker needs only the prefix up to its last request).
    pub fn schedule_prefix(
        &self,
        seed: u64,
        n: u64,
        upto: u64,
        trace_ms: impl Fn(u64) -> Option<f64>,
    ) -> Vec<f64> {
        let upto = upto.min(n);
        match *self {
            Arrival::Closed => Vec::new(),
            Arrival::Trace { time_scale } => {
                let t0 = trace_ms(0).unwrap_or(0.0);
                (0..upto)
                    .map(|i| ((trace_ms(i).unwrap_or(t0) - t0).max(0.0)) * time_scale / 1000.0)
                    .collect()
            }
            _ => self.offsets(seed, n).take(upto as usize).collect(),
        }
    }

    /// The send offsets of a drawn schedule of `n` requests (request 0 at 0): absolute
    /// instants, each the sum of the gaps before it, in one order for every caller.
    fn offsets(&self, seed: u64, n: u64) -> impl Iterator<Item = f64> + '_ {
        (0..n).scan(0.0, move |t, j| {
            let at = *t;
            *t += self.gap(seed, j, n);
            Some(at)
        })
    }

    /// How many requests a point bounded only by a duration of `seconds` has: those whose
    /// send offset falls inside it (Poisson, gamma, constant: counted on the schedule
    /// itself, so none is cut and none is left over), or for a ramp the count whose
    /// expected length is the duration (its rate goes from start to end over the point).
    /// `None` for a closed loop and a trace replay, which no schedule bounds.
    pub fn requests_within(&self, seed: u64, seconds: f64) -> Option<u64> {
        /// Far beyond any point a worker can hold in memory; ends a degenerate loop.
        const MAX: u64 = 1 << 32;
        match *self {
            Arrival::Closed | Arrival::Trace { .. } => None,
            Arrival::Ramp {
                start_rate,
                end_rate,
                ..
            } => {
                // Gaps average 1/rate and the rate is linear in the request index, so n
                // requests last n·ln(e/s)/(e−s): the logarithmic mean of the rates.
                let mean = if (end_rate - start_rate).abs() < 1e-9 * start_rate {
                    start_rate
                } else {
                    (end_rate - start_rate) / (end_rate / start_rate).ln()
                };
                Some(((seconds * mean).ceil() as u64).clamp(1, MAX))
            }
            // Past 2^27 requests (over any point's cap) the expected count is the answer:
            // drawing billions of gaps to count them would only keep the user waiting.
            _ if self
                .rate()
                .is_some_and(|r| r * seconds > (1u64 << 27) as f64) =>
            {
                Some(
                    self.rate()
                        .map_or(MAX, |r| (r * seconds).ceil().min(MAX as f64) as u64),
                )
            }
            // These gaps do not depend on the stream's length.
            _ => Some((self.offsets(seed, MAX).take_while(|&t| t < seconds).count() as u64).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(a: &Arrival, n: u64, seed: u64) -> Vec<f64> {
        let s = a.schedule(seed, n + 1, |_| None);
        s.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Kolmogorov–Smirnov statistic of `xs` against the exponential CDF of `rate`.
    fn ks_exponential(xs: &mut [f64], rate: f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(k, &x)| {
                let cdf = 1.0 - (-rate * x).exp();
                (cdf - k as f64 / n)
                    .abs()
                    .max(((k + 1) as f64 / n - cdf).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn poisson_gaps_pass_kolmogorov_smirnov_against_the_exponential() {
        let rate = 25.0;
        let n = 5000;
        for seed in [1, 2, 3] {
            let mut g = gaps(&Arrival::Poisson { rate }, n, seed);
            let d = ks_exponential(&mut g, rate);
            // Critical value at α = 0.01: 1.628/√n = 0.023.
            assert!(d < 1.628 / (n as f64).sqrt(), "seed {seed}: D = {d}");
        }
        // and a wrong rate is rejected, so the test can fail
        let mut g = gaps(&Arrival::Poisson { rate }, n, 1);
        assert!(ks_exponential(&mut g, rate * 1.2) > 1.628 / (n as f64).sqrt());
    }

    #[test]
    fn a_duration_holds_exactly_the_requests_scheduled_inside_it() {
        for a in [
            Arrival::Poisson { rate: 40.0 },
            Arrival::Gamma {
                rate: 40.0,
                burstiness: 0.5,
            },
            Arrival::Constant { rate: 40.0 },
        ] {
            let n = a.requests_within(7, 10.0).expect("open loops have a count");
            let s = a.schedule(7, n + 1, |_| None);
            assert!(
                s[n as usize - 1] < 10.0 && s[n as usize] >= 10.0,
                "{a:?}: {n}"
            );
            // about rate × duration
            assert!((300..=500).contains(&n), "{a:?}: {n}");
        }
        assert_eq!(
            Arrival::Constant { rate: 40.0 }.requests_within(1, 10.0),
            Some(400)
        );
        let ramp = Arrival::Ramp {
            start_rate: 10.0,
            end_rate: 100.0,
            burstiness: 1.0,
        };
        let n = ramp.requests_within(1, 30.0).expect("a ramp has a count");
        // 90/ln 10 = 39.1 req/s on average over the ramp's time
        assert_eq!(n, 1173);
        let span = ramp.schedule(1, n, |_| None)[n as usize - 1];
        assert!((25.0..35.0).contains(&span), "the ramp lasts {span} s");
        assert_eq!(Arrival::Closed.requests_within(1, 10.0), None);
    }

    #[test]
    fn gamma_coefficient_of_variation_is_one_over_sqrt_b() {
        for b in [0.25, 1.0, 4.0] {
            let g = gaps(
                &Arrival::Gamma {
                    rate: 10.0,
                    burstiness: b,
                },
                20_000,
                9,
            );
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (g.len() - 1) as f64;
            let cv = var.sqrt() / mean;
            let want = 1.0 / b.sqrt();
            // 20k samples: the CV's standard error is below 2.5% even for b = 0.25.
            assert!(
                (cv - want).abs() / want < 0.05,
                "b {b}: cv {cv}, want {want}"
            );
            assert!((mean - 0.1).abs() / 0.1 < 0.05, "b {b}: mean gap {mean}");
        }
    }

    #[test]
    fn achieved_rate_is_within_2_percent() {
        let n = 20_000;
        for a in [
            Arrival::Poisson { rate: 40.0 },
            Arrival::Gamma {
                rate: 40.0,
                burstiness: 0.5,
            },
            Arrival::Constant { rate: 40.0 },
        ] {
            let s = a.schedule(5, n, |_| None);
            let rate = (n - 1) as f64 / s[(n - 1) as usize];
            assert!((rate - 40.0).abs() / 40.0 < 0.02, "{a:?}: {rate}");
        }
    }

    #[test]
    fn ramp_rises_and_trace_scales() {
        let s = Arrival::Ramp {
            start_rate: 10.0,
            end_rate: 100.0,
            burstiness: 1.0,
        }
        .schedule(1, 2000, |_| None);
        let first = 99.0 / s[99];
        let last = 99.0 / (s[1999] - s[1900]);
        assert!(first < 20.0 && last > 70.0, "{first} {last}");
        let t =
            Arrival::Trace { time_scale: 0.5 }.schedule(0, 3, |i| Some(1000.0 + 400.0 * i as f64));
        assert_eq!(t, vec![0.0, 0.2, 0.4]);
    }

    #[test]
    fn schedules_are_deterministic_and_absolute() {
        let a = Arrival::Poisson { rate: 3.0 };
        assert_eq!(a.schedule(1, 100, |_| None), a.schedule(1, 100, |_| None));
        // a prefix does not depend on n
        assert_eq!(
            a.schedule(1, 10, |_| None)[..],
            a.schedule(1, 100, |_| None)[..10]
        );
        assert!(Arrival::Poisson { rate: 0.0 }.validate().is_err());
    }
}
