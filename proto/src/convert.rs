//! Conversions between wire messages and the workload crate's types. A message from the
//! wire is validated on the way in: a peer's bad spec is an error, never a panic.

use rackload_workloads as wl;

use crate::v1;

impl From<&wl::WorkloadSpec> for v1::WorkloadSpec {
    fn from(s: &wl::WorkloadSpec) -> Self {
        v1::WorkloadSpec { json: s.to_json() }
    }
}

impl TryFrom<&v1::WorkloadSpec> for wl::WorkloadSpec {
    type Error = wl::WorkloadError;
    fn try_from(s: &v1::WorkloadSpec) -> Result<Self, Self::Error> {
        wl::WorkloadSpec::from_json(&s.json)
    }
}

/// Serializes a wire workload as its provenance (for `run.json`).
pub fn workload_provenance<S: serde::Serializer>(
    w: &Option<v1::WorkloadSpec>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match w.as_ref().map(wl::WorkloadSpec::try_from) {
        Some(Ok(spec)) => spec.provenance().serialize(ser),
        Some(Err(e)) => format!("unreadable workload: {e}").serialize(ser),
        None => ser.serialize_none(),
    }
}

/// Serializes a header map as its sorted names only (values may be credentials).
pub fn header_names<S: serde::Serializer>(
    h: &std::collections::HashMap<String, String>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    let mut names: Vec<&String> = h.keys().collect();
    names.sort();
    names.serialize(ser)
}

/// Serializes JSON bytes as the JSON they hold (null when empty or unreadable).
pub fn json_bytes<S: serde::Serializer>(b: &[u8], ser: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    if b.is_empty() {
        return ser.serialize_none();
    }
    serde_json::from_slice::<serde_json::Value>(b)
        .unwrap_or(serde_json::Value::Null)
        .serialize(ser)
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

impl v1::Goodput {
    /// Does a completed request meet every SLO (vLLM's rule: each value at most its SLO;
    /// TPOT is (E2EL − TTFT) / (tokens − 1), 0 for a single token)?
    pub fn met(&self, ttft_us: u64, e2el_us: u64, output_tokens: u64) -> bool {
        let ms = |us: u64| us as f64 / 1000.0;
        let tpot_ms = if output_tokens > 1 {
            ms(e2el_us.saturating_sub(ttft_us)) / (output_tokens - 1) as f64
        } else {
            0.0
        };
        [
            (self.ttft_ms, ms(ttft_us)),
            (self.tpot_ms, tpot_ms),
            (self.e2el_ms, ms(e2el_us)),
        ]
        .into_iter()
        .all(|(slo, v)| slo.is_none_or(|s| v <= s))
    }
}

impl v1::Counters {
    /// Adds `other` into `self` (every field named, so a new counter cannot be forgotten).
    pub fn add(&mut self, other: &v1::Counters) {
        let v1::Counters {
            sent,
            completed,
            failed_by_class,
            input_tokens,
            output_tokens,
            usage_missing,
            warmup_done,
            late_starts,
            output_len_mismatch,
            reasoning_tokens,
            output_chunks,
            good_completed,
        } = other;
        self.sent += sent;
        self.completed += completed;
        self.input_tokens += input_tokens;
        self.output_tokens += output_tokens;
        self.usage_missing += usage_missing;
        self.warmup_done += warmup_done;
        self.late_starts += late_starts;
        self.output_len_mismatch += output_len_mismatch;
        self.reasoning_tokens += reasoning_tokens;
        self.output_chunks += output_chunks;
        self.good_completed += good_completed;
        for (class, n) in failed_by_class {
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

    /// vLLM's rule: every given SLO at most, TPOT over the tokens after the first.
    #[test]
    fn goodput_slos_are_met_as_vllm_counts_them() {
        let slo = v1::Goodput {
            ttft_ms: Some(100.0),
            tpot_ms: Some(10.0),
            e2el_ms: None,
        };
        // 100 ms to the first token, then 9 tokens over 90 ms: exactly at both SLOs.
        assert!(slo.met(100_000, 190_000, 10));
        assert!(!slo.met(100_001, 190_000, 10), "TTFT over");
        assert!(!slo.met(50_000, 150_000, 10), "TPOT 11.1 ms");
        assert!(slo.met(50_000, 5_000_000, 1), "one token: TPOT 0");
        assert!(v1::Goodput::default().met(u64::MAX, u64::MAX, 2), "no SLO");
        let e2el = v1::Goodput {
            e2el_ms: Some(1.0),
            ..v1::Goodput::default()
        };
        assert!(!e2el.met(0, 1_001, 2));
    }

    #[test]
    fn workload_round_trips_and_garbage_is_refused() {
        let spec = wl::WorkloadSpec::default();
        let wire = v1::WorkloadSpec::from(&spec);
        assert_eq!(wl::WorkloadSpec::try_from(&wire), Ok(spec));
        let bad = v1::WorkloadSpec {
            json: b"{\"lengths\":7}".to_vec(),
        };
        assert!(wl::WorkloadSpec::try_from(&bad).is_err());
    }

    #[test]
    fn run_json_gets_provenance() {
        let run = v1::RunSpec {
            workload: Some((&wl::WorkloadSpec::default()).into()),
            ..v1::RunSpec::default()
        };
        let v = serde_json_value(&run);
        assert_eq!(v["workload"]["lengths"]["kind"], "random");
        assert_eq!(v["workload"]["seed"], 0);
    }

    fn serde_json_value(run: &v1::RunSpec) -> serde_json::Value {
        serde_json::to_value(run).expect("serializes")
    }
}
