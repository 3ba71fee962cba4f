//! Latency histograms on the wire: every latency is recorded in microseconds in an
//! HdrHistogram covering 1 µs … 1 h with 3 significant digits (DESIGN.md §5), and travels
//! as V2 bytes. Merging adds counts; percentiles are never merged.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::v1::{Metric, MetricHistogram};

/// Highest trackable latency: one hour, in microseconds.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant digits kept.
pub const SIGFIG: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot serialize histogram: {0}")]
    Serialize(String),
    #[error("cannot decode {metric:?} histogram: {reason}")]
    Decode { metric: Metric, reason: String },
    #[error("cannot merge {metric:?} histogram: {reason}")]
    Merge { metric: Metric, reason: String },
}

/// An empty latency histogram (µs), auto-resizing so that no value is lost.
pub fn latency_histogram() -> Histogram<u64> {
    let mut h =
        Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG).expect("constant bounds are valid");
    h.auto(true);
    h
}

/// Serializes `hist` as a `MetricHistogram` in V2 format.
pub fn encode(metric: Metric, hist: &Histogram<u64>) -> Result<MetricHistogram, HistogramError> {
    let mut v2 = Vec::new();
    V2Serializer::new()
        .serialize(hist, &mut v2)
        .map_err(|e| HistogramError::Serialize(format!("{e:?}")))?;
    Ok(MetricHistogram {
        metric: metric as i32,
        v2,
    })
}

/// Decodes a `MetricHistogram`.
pub fn decode(m: &MetricHistogram) -> Result<(Metric, Histogram<u64>), HistogramError> {
    let metric = Metric::try_from(m.metric).unwrap_or(Metric::Unspecified);
    let hist: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &m.v2[..])
        .map_err(|e| HistogramError::Decode {
            metric,
            reason: format!("{e:?}"),
        })?;
    Ok((metric, hist))
}

/// The four latency metrics in a fixed order, for arrays indexed by metric.
pub const METRICS: [Metric; 4] = [Metric::Ttft, Metric::Itl, Metric::Tpot, Metric::E2el];

/// Position of `metric` in [`METRICS`].
pub fn metric_slot(metric: Metric) -> Option<usize> {
    METRICS.iter().position(|&m| m == metric)
}

/// One histogram per metric of [`METRICS`].
#[derive(Clone, Debug)]
pub struct LatencySet {
    pub hists: [Histogram<u64>; 4],
}

impl Default for LatencySet {
    fn default() -> Self {
        LatencySet {
            hists: std::array::from_fn(|_| latency_histogram()),
        }
    }
}

impl LatencySet {
    pub fn get(&self, metric: Metric) -> Option<&Histogram<u64>> {
        metric_slot(metric).map(|k| &self.hists[k])
    }

    /// Adds the counts of wire histograms into this set.
    pub fn merge_wire(&mut self, wire: &[MetricHistogram]) -> Result<(), HistogramError> {
        for m in wire {
            let (metric, h) = decode(m)?;
            let Some(k) = metric_slot(metric) else {
                continue;
            };
            self.hists[k].add(&h).map_err(|e| HistogramError::Merge {
                metric,
                reason: format!("{e:?}"),
            })?;
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &LatencySet) -> Result<(), HistogramError> {
        for (k, h) in other.hists.iter().enumerate() {
            self.hists[k].add(h).map_err(|e| HistogramError::Merge {
                metric: METRICS[k],
                reason: format!("{e:?}"),
            })?;
        }
        Ok(())
    }

    pub fn to_wire(&self) -> Result<Vec<MetricHistogram>, HistogramError> {
        METRICS
            .iter()
            .zip(&self.hists)
            .map(|(&m, h)| encode(m, h))
            .collect()
    }

    pub fn reset(&mut self) {
        for h in &mut self.hists {
            h.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_merge_add_counts() {
        let mut a = LatencySet::default();
        let mut b = LatencySet::default();
        for v in 1..=1000u64 {
            a.hists[0].record(v).expect("in range");
            b.hists[0].record(v * 1000).expect("in range");
        }
        b.hists[3]
            .record(MAX_LATENCY_US * 2)
            .expect("auto-resize keeps it");
        let mut merged = LatencySet::default();
        merged
            .merge_wire(&a.to_wire().expect("encode"))
            .expect("merge");
        merged
            .merge_wire(&b.to_wire().expect("encode"))
            .expect("merge");
        assert_eq!(merged.hists[0].len(), 2000);
        assert_eq!(merged.hists[3].len(), 1);
        assert_eq!(merged.hists[0].max(), b.hists[0].max());
    }
}
