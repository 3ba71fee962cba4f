//! Random request lengths with the jitter mode named, because the same "0.8" means
//! different workloads in InferenceX (one-sided) and vLLM (symmetric). DESIGN.md §4.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::WorkloadError;

/// How `--random-range-ratio` r widens a nominal length L.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeMode {
    /// InferenceX / SGLang: `U{⌊r·L⌋ … L}` inclusive, r in [0, 1].
    #[default]
    OneSided,
    /// vLLM bench serve: `U{⌊L(1−r)⌋ … ⌈L(1+r)⌉}` inclusive, r in [0, 1).
    Symmetric,
}

impl RangeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RangeMode::OneSided => "one-sided",
            RangeMode::Symmetric => "symmetric",
        }
    }
}

impl fmt::Display for RangeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RangeMode {
    type Err = WorkloadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one-sided" | "" => Ok(RangeMode::OneSided),
            "symmetric" => Ok(RangeMode::Symmetric),
            other => Err(WorkloadError::UnknownRangeMode(other.to_owned())),
        }
    }
}

/// Inclusive bounds `(lo, hi)` of a length drawn around `len` with ratio `ratio`.
///
/// Both bounds are at least 1: a request with no prompt or no output measures nothing.
pub fn bounds(len: u32, ratio: f64, mode: RangeMode) -> Result<(u32, u32), WorkloadError> {
    if len == 0 {
        return Err(WorkloadError::ZeroLength);
    }
    let l = f64::from(len);
    let (lo, hi) = match mode {
        RangeMode::OneSided => {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(WorkloadError::RatioOutOfRange {
                    ratio,
                    mode,
                    domain: "0 <= r <= 1",
                });
            }
            ((ratio * l).floor(), l)
        }
        RangeMode::Symmetric => {
            if !(0.0..1.0).contains(&ratio) {
                return Err(WorkloadError::RatioOutOfRange {
                    ratio,
                    mode,
                    domain: "0 <= r < 1",
                });
            }
            ((l * (1.0 - ratio)).floor(), (l * (1.0 + ratio)).ceil())
        }
    };
    // Both values are finite, non-negative and at most 2·u32::MAX, so saturate.
    let to_u32 = |v: f64| {
        if v >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            v as u32
        }
    };
    Ok((to_u32(lo).max(1), to_u32(hi).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sided_is_floor_r_l_to_l() {
        assert_eq!(
            bounds(1024, 0.8, RangeMode::OneSided).ok(),
            Some((819, 1024))
        );
        assert_eq!(
            bounds(1024, 1.0, RangeMode::OneSided).ok(),
            Some((1024, 1024))
        );
        assert_eq!(bounds(1, 0.8, RangeMode::OneSided).ok(), Some((1, 1)));
    }

    #[test]
    fn symmetric_is_vllm_range() {
        assert_eq!(
            bounds(1000, 0.1, RangeMode::Symmetric).ok(),
            Some((900, 1100))
        );
        assert_eq!(bounds(10, 0.95, RangeMode::Symmetric).ok(), Some((1, 20)));
    }

    #[test]
    fn ratio_outside_domain_is_rejected_with_mode() {
        let err = bounds(10, 1.0, RangeMode::Symmetric)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("symmetric") && err.contains("0 <= r < 1"),
            "{err}"
        );
        assert!(bounds(10, -0.1, RangeMode::OneSided).is_err());
        assert!(bounds(10, f64::NAN, RangeMode::OneSided).is_err());
    }
}
