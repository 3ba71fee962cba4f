//! Conversions between wire messages and the workload crate's types. A message from the
//! wire is validated on the way in: a peer's bad spec is an error, never a panic.

use rackload_workloads as wl;

use crate::v1;

impl From<&wl::WorkloadSpec> for v1::WorkloadSpec {
    fn from(s: &wl::WorkloadSpec) -> Self {
        v1::WorkloadSpec {
            random_input_len: s.input_len,
            random_output_len: s.output_len,
            random_range_ratio: s.range_ratio,
            range_mode: s.range_mode.as_str().to_owned(),
            seed: s.seed,
            ignore_eos: s.ignore_eos,
        }
    }
}

impl TryFrom<&v1::WorkloadSpec> for wl::WorkloadSpec {
    type Error = wl::WorkloadError;
    fn try_from(s: &v1::WorkloadSpec) -> Result<Self, Self::Error> {
        let spec = wl::WorkloadSpec {
            input_len: s.random_input_len,
            output_len: s.random_output_len,
            range_ratio: s.random_range_ratio,
            range_mode: s.range_mode.parse()?,
            seed: s.seed,
            ignore_eos: s.ignore_eos,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<wl::Stripe> for v1::Stripe {
    fn from(s: wl::Stripe) -> Self {
        v1::Stripe {
            cycle: s.cycle,
            offset: s.offset,
            width: s.width,
            total: s.total,
        }
    }
}

impl From<&v1::Stripe> for wl::Stripe {
    fn from(s: &v1::Stripe) -> Self {
        wl::Stripe {
            cycle: s.cycle,
            offset: s.offset,
            width: s.width,
            total: s.total,
        }
    }
}

impl v1::Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &v1::Counters) {
        self.sent += other.sent;
        self.completed += other.completed;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.usage_missing += other.usage_missing;
        for (class, n) in &other.failed_by_class {
            *self.failed_by_class.entry(class.clone()).or_default() += n;
        }
    }

    /// Failed requests of every class.
    pub fn failed(&self) -> u64 {
        self.failed_by_class.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_round_trips_and_bad_mode_is_refused() {
        let spec = wl::WorkloadSpec::default();
        let wire = v1::WorkloadSpec::from(&spec);
        assert_eq!(wl::WorkloadSpec::try_from(&wire), Ok(spec));
        let bad = v1::WorkloadSpec {
            range_mode: "both".into(),
            ..wire
        };
        assert!(wl::WorkloadSpec::try_from(&bad).is_err());
    }
}
