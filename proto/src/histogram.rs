//! Latency histograms on the wire: every latency is recorded in microseconds in an
//! HdrHistogram covering 1 µs … 1 h with 3 significant digits (DESIGN.md §5), and travels
//! as V2 bytes. Merging adds counts; percentiles are never merged.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::v1::{Metric, MetricHistogram};

/// Highest trackable latency: one hour, in microseconds.
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant digits kept.
pub(crate) const SIGFIG: u8 = 3;

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

/// Adds the counts of the wire histograms of `metric` into `into` (a histogram of
/// [`latency_histogram`]'s shape).
pub fn merge_metric(
    wire: &[MetricHistogram],
    metric: Metric,
    into: &mut Histogram<u64>,
) -> Result<(), HistogramError> {
    for m in wire.iter().filter(|m| m.metric == metric as i32) {
        merge_one(m, into)?;
    }
    Ok(())
}

fn merge_one(m: &MetricHistogram, into: &mut Histogram<u64>) -> Result<(), HistogramError> {
    let metric = Metric::try_from(m.metric).unwrap_or(Metric::Unspecified);
    match merge_v2_into(&m.v2, into) {
        Ok(true) => Ok(()),
        // Not plain V2 (e.g. DEFLATE-compressed): decode it whole.
        Ok(false) => {
            let (_, h) = decode(m)?;
            into.add(&h).map_err(|e| HistogramError::Merge {
                metric,
                reason: format!("{e:?}"),
            })
        }
        Err(reason) => Err(HistogramError::Decode { metric, reason }),
    }
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

const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_HEADER: usize = 40;

/// Adds the counts of a plain V2-serialized histogram into `into` without building the
/// histogram: the coordinator merges thousands of reports a second, and a full-range
/// latency histogram is ~360 KiB of counters to allocate and zero per decode. Returns
/// `Ok(false)` when the bytes are not plain V2 (the caller decodes them the slow way).
pub(crate) fn merge_v2_into(bytes: &[u8], into: &mut Histogram<u64>) -> Result<bool, String> {
    let be32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let be64 = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    if be32(0) != Some(V2_COOKIE) {
        return Ok(false);
    }
    let (Some(len), Some(offset), Some(digits), Some(low), Some(ratio)) =
        (be32(4), be32(8), be32(12), be64(16), be64(32))
    else {
        return Err("truncated V2 header".into());
    };
    if offset != 0 || f64::from_bits(ratio) != 1.0 || !(1..=5).contains(&digits) || low == 0 {
        return Ok(false);
    }
    let payload = bytes
        .get(V2_HEADER..V2_HEADER + len as usize)
        .ok_or("V2 payload shorter than its header says")?;
    // The index -> value mapping of HdrHistogram for (low, digits).
    let unit_magnitude = 63 - low.leading_zeros();
    let single_unit = 2 * 10u64.pow(digits);
    let sub_bucket_count_magnitude = 64 - (single_unit - 1).leading_zeros();
    let half_magnitude = sub_bucket_count_magnitude.saturating_sub(1);
    let half_count = 1u64 << half_magnitude;
    let value_at = |index: u64| -> Option<u64> {
        let mut bucket = (index >> half_magnitude) as i64 - 1;
        let mut sub = (index & (half_count - 1)) + half_count;
        if bucket < 0 {
            sub -= half_count;
            bucket = 0;
        }
        sub.checked_shl(bucket as u32 + unit_magnitude)
    };
    let mut index: u64 = 0;
    let mut at = 0;
    while at < payload.len() {
        // LEB128 varint (the 9th byte carries 8 bits), then zig-zag.
        let mut raw: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *payload.get(at).ok_or("truncated varint")?;
            at += 1;
            if shift == 56 {
                raw |= u64::from(b) << 56;
                break;
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let n = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
        if n < 0 {
            index = index.saturating_add(n.unsigned_abs());
        } else {
            if n > 0 {
                let v = value_at(index).ok_or("count beyond the value range")?;
                into.record_n(v, n as u64).map_err(|e| format!("{e:?}"))?;
            }
            index += 1;
        }
    }
    Ok(true)
}

/// Every recorded metric, in slot order. The first four always travel; the others only
/// when non-empty: open-loop ones (schedule lag and latencies from the intended send
/// instant), TTFO (streams that answered) and per-token ITL (streams of 2+ chunks).
pub const METRICS: [Metric; 9] = [
    Metric::Ttft,
    Metric::Itl,
    Metric::Tpot,
    Metric::E2el,
    Metric::ScheduleLag,
    Metric::TtftIntended,
    Metric::E2elIntended,
    Metric::Ttfo,
    Metric::ItlPerToken,
];

/// Metrics always sent, even empty.
const ALWAYS_SENT: usize = 4;

/// Position of `metric` in [`METRICS`].
pub(crate) fn metric_slot(metric: Metric) -> Option<usize> {
    METRICS.iter().position(|&m| m == metric)
}

/// One histogram per metric of [`METRICS`].
#[derive(Clone, Debug)]
pub struct LatencySet {
    pub hists: [Histogram<u64>; METRICS.len()],
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

    pub fn get_mut(&mut self, metric: Metric) -> Option<&mut Histogram<u64>> {
        metric_slot(metric).map(|k| &mut self.hists[k])
    }

    /// Records `value` (µs) for `metric`, saturating at the histogram's range.
    pub fn record(&mut self, metric: Metric, value: u64) {
        if let Some(k) = metric_slot(metric) {
            self.hists[k].saturating_record(value);
        }
    }

    /// Adds the counts of wire histograms into this set.
    pub fn merge_wire(&mut self, wire: &[MetricHistogram]) -> Result<(), HistogramError> {
        for m in wire {
            let metric = Metric::try_from(m.metric).unwrap_or(Metric::Unspecified);
            let Some(k) = metric_slot(metric) else {
                continue;
            };
            merge_one(m, &mut self.hists[k])?;
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
            .enumerate()
            .filter(|(k, (_, h))| *k < ALWAYS_SENT || !h.is_empty())
            .map(|(_, (&m, h))| encode(m, h))
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
    fn the_fast_v2_merge_equals_decode_and_add() {
        let mut h = latency_histogram();
        let mut x: u64 = 7;
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(1 + (x >> 33) % 100_000_000).expect("in range");
        }
        h.record(MAX_LATENCY_US * 3).expect("auto-resized");
        let wire = encode(Metric::Itl, &h).expect("encode");
        let mut fast = latency_histogram();
        assert_eq!(merge_v2_into(&wire.v2, &mut fast), Ok(true));
        let (_, slow) = decode(&wire).expect("decode");
        assert_eq!(fast.len(), slow.len());
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                fast.value_at_quantile(q),
                slow.value_at_quantile(q),
                "q {q}"
            );
        }
        assert_eq!(fast.max(), slow.max());
        // compressed bytes take the slow path
        let mut z = Vec::new();
        hdrhistogram::serialization::V2DeflateSerializer::new()
            .serialize(&h, &mut z)
            .expect("deflate");
        assert_eq!(merge_v2_into(&z, &mut latency_histogram()), Ok(false));
        assert!(merge_v2_into(&wire.v2[..30], &mut latency_histogram()).is_err());
    }

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
