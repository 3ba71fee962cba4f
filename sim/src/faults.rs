//! Failure injection, for testing clients against a server that misbehaves the ways real
//! ones do: refuse with 429 or 500, reset mid-stream, send malformed JSON, stall, end
//! without `data: [DONE]`, or answer well but late (`slow`: a request that misses a
//! latency SLO without failing). Which request gets which fault is a pure function of its id and
//! a seed, so a test run is reproducible.

use std::fmt;
use std::str::FromStr;

/// One way a response goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with an OpenAI error body, before any stream.
    TooMany,
    /// HTTP 500 with an OpenAI error body.
    Internal,
    /// The connection is cut after half the tokens.
    Reset,
    /// An event whose data is not JSON, after half the tokens.
    Malformed,
    /// The stream stops sending after half the tokens (and never ends by itself).
    Stall,
    /// The stream ends cleanly after its usage chunk but without `data: [DONE]`.
    NoDone,
    /// The response starts [`SLOW_START`] late, then is served as usual.
    Slow,
}

/// How late a `slow` response starts.
pub const SLOW_START: std::time::Duration = std::time::Duration::from_millis(250);

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::TooMany,
        Fault::Internal,
        Fault::Reset,
        Fault::Malformed,
        Fault::Stall,
        Fault::NoDone,
        Fault::Slow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::TooMany => "429",
            Fault::Internal => "500",
            Fault::Reset => "reset",
            Fault::Malformed => "malformed",
            Fault::Stall => "stall",
            Fault::NoDone => "no-done",
            Fault::Slow => "slow",
        }
    }
}

/// Probabilities of each fault per request (their sum is at most 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    rates: Vec<(Fault, f64)>,
    seed: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--faults {spec:?}: {reason} (expected NAME=RATE,... with NAME one of 429, 500, reset, malformed, stall, no-done, slow and rates summing to at most 1)"
)]
pub struct FaultsError {
    spec: String,
    reason: String,
}

impl FromStr for Faults {
    type Err = FaultsError;
    fn from_str(spec: &str) -> Result<Faults, FaultsError> {
        let bad = |reason: String| FaultsError {
            spec: spec.to_owned(),
            reason,
        };
        let mut rates = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} has no '='")))?;
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name.trim())
                .ok_or_else(|| bad(format!("unknown fault {name:?}")))?;
            let rate: f64 = rate
                .trim()
                .parse()
                .map_err(|_| bad(format!("rate {rate:?} is not a number")))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(bad(format!("rate {rate} is not within 0..=1")));
            }
            rates.push((fault, rate));
        }
        let total: f64 = rates.iter().map(|(_, r)| r).sum();
        if total > 1.0 + 1e-9 {
            return Err(bad(format!("rates sum to {total}")));
        }
        Ok(Faults { rates, seed: 0 })
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, (fault, rate)) in self.rates.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={rate}", fault.name())?;
        }
        Ok(())
    }
}

/// splitmix64: a good 64-bit mix of a counter.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Faults {
    /// The same rates, striking other requests.
    pub fn with_seed(self, seed: u64) -> Faults {
        Faults { seed, ..self }
    }

    pub fn is_empty(&self) -> bool {
        self.rates.iter().all(|(_, r)| *r == 0.0)
    }

    /// The fault request `id` suffers, if any.
    pub fn pick(&self, id: u64) -> Option<Fault> {
        if self.is_empty() {
            return None;
        }
        let u = (mix(id ^ mix(self.seed ^ 0xFA17)) >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for &(fault, rate) in &self.rates {
            acc += rate;
            if u < acc {
                return Some(fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_at_the_asked_rates() {
        let f: Faults = "429=0.1, reset=0.2,no-done=0.05".parse().expect("valid");
        assert_eq!(f.to_string(), "429=0.1,reset=0.2,no-done=0.05");
        let n = 100_000;
        let count = |want: Fault| (0..n).filter(|&i| f.pick(i) == Some(want)).count() as f64;
        assert!((count(Fault::TooMany) / n as f64 - 0.1).abs() < 0.01);
        assert!((count(Fault::Reset) / n as f64 - 0.2).abs() < 0.01);
        assert!((count(Fault::NoDone) / n as f64 - 0.05).abs() < 0.01);
        assert_eq!(count(Fault::Stall), 0.0);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("429", "no '='"),
            ("boom=0.1", "unknown fault"),
            ("429=x", "not a number"),
            ("429=2", "within 0..=1"),
            ("429=0.6,500=0.6", "sum to"),
        ] {
            let e = spec.parse::<Faults>().expect_err(spec).to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
        assert!("".parse::<Faults>().expect("empty is none").is_empty());
    }
}
