//! A point's timeline: the workers' interval reports binned by the second they end in
//! (every worker's reports fall on the same ticks of the shared start instant), so the
//! report can draw, per second, the requests that ended (workers count a request when it
//! ends) with their tokens and TTFT, and the requests in flight: the ramp, the steady
//! state and the drain. Only the TTFT histograms of
//! the last few open bins are held; older bins keep their figures alone, so a day-long
//! point costs ~6 MB.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use rackload_proto::histogram::{HistogramError, latency_histogram, merge_metric};
use rackload_proto::v1::{Metric, Report, TimelineBin};

/// The width of a bin: the workers' report interval, which the coordinator's plans give
/// them.
pub const STEP_NANOS: i64 = rackload_spec::defaults::REPORT_INTERVAL.as_nanos() as i64;
/// Most bins a point keeps (a day at 1 s); later reports add to the last one (a point
/// longer than a day has a last bin that holds the rest).
pub const MAX_BINS: u32 = 86_400;
/// Bins still open for late reports (a worker's report a little behind the others).
const OPEN: u32 = 3;

#[derive(Debug, Default)]
struct Open {
    bin: TimelineBin,
    in_flight: BTreeMap<String, u64>,
    ttft: Option<Histogram<u64>>,
}

impl Open {
    /// The bin's figures: in flight summed over workers, TTFT quantiles from its histogram.
    fn figures(&self) -> TimelineBin {
        let mut bin = self.bin;
        bin.in_flight = self.in_flight.values().sum();
        if let Some(h) = self.ttft.as_ref().filter(|h| !h.is_empty()) {
            bin.ttft_p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
            bin.ttft_p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
        }
        bin
    }
}

/// The bins of a running point.
#[derive(Debug, Default)]
pub struct Timeline {
    closed: BTreeMap<u32, TimelineBin>,
    open: BTreeMap<u32, Open>,
}

impl Timeline {
    /// Adds `worker`'s report to the bin its interval ends in: an interval report's on
    /// its tick (to the nearest second), a final report's (ending with its last request,
    /// between ticks) in the second that holds its end, so that the last bin of a worker
    /// may hold less than a second.
    pub fn add(&mut self, worker: &str, report: &Report, last: bool) -> Result<(), HistogramError> {
        let at = report.elapsed_nanos.max(0);
        let k = if last {
            (at as u64).div_ceil(STEP_NANOS as u64) as i64
        } else {
            at.saturating_add(STEP_NANOS / 2) / STEP_NANOS
        };
        let k = k.clamp(1, i64::from(MAX_BINS)) as u32;
        let newest = self.open.keys().next_back().copied().unwrap_or(0).max(k);
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + OPEN > newest {
                break;
            }
            let (key, open) = entry.remove_entry();
            self.closed.insert(key, open.figures());
        }
        let bin = match self.closed.get_mut(&k) {
            // A report later than the open bins: its counts still count, its TTFTs are
            // left out of the bin's quantiles.
            Some(bin) => {
                add_counts(bin, report);
                return Ok(());
            }
            None => self.open.entry(k).or_insert_with(|| Open {
                bin: TimelineBin {
                    t_s: (i64::from(k) * STEP_NANOS) as f64 / 1e9,
                    ..TimelineBin::default()
                },
                ..Open::default()
            }),
        };
        add_counts(&mut bin.bin, report);
        bin.in_flight.insert(worker.to_owned(), report.in_flight);
        merge_metric(
            &report.histograms,
            Metric::Ttft,
            bin.ttft.get_or_insert_with(latency_histogram),
        )
    }

    /// Every bin, in time order.
    pub fn bins(&self) -> Vec<TimelineBin> {
        let mut bins = self.closed.clone();
        bins.extend(self.open.iter().map(|(k, open)| (*k, open.figures())));
        bins.into_values().collect()
    }
}

fn add_counts(bin: &mut TimelineBin, report: &Report) {
    if let Some(c) = &report.counters {
        bin.completed += c.completed;
        bin.failed += c.failed();
        bin.output_tokens += c.output_tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackload_proto::histogram::encode;
    use rackload_proto::v1::Counters;

    fn report(at_ms: i64, completed: u64, ttft_us: &[u64], in_flight: u64) -> Report {
        let mut h = latency_histogram();
        for v in ttft_us {
            h.record(*v).expect("in range");
        }
        Report {
            elapsed_nanos: at_ms * 1_000_000,
            counters: Some(Counters {
                completed,
                output_tokens: completed * 10,
                ..Counters::default()
            }),
            histograms: vec![encode(Metric::Ttft, &h).expect("encode")],
            in_flight,
            ..Report::default()
        }
    }

    #[test]
    fn reports_of_one_tick_share_a_bin_and_late_ones_still_count() {
        let mut t = Timeline::default();
        t.add("a", &report(1_002, 2, &[10_000, 20_000], 3), false)
            .expect("add");
        t.add("b", &report(998, 1, &[30_000], 4), false)
            .expect("add");
        t.add("a", &report(2_001, 5, &[40_000], 1), false)
            .expect("add");
        for s in 3..=6 {
            t.add("a", &report(s * 1000, 0, &[], 0), false)
                .expect("add");
        }
        // b's report of the first second comes after the bin closed.
        t.add("b", &report(1_001, 7, &[900_000], 9), false)
            .expect("add");
        let bins = t.bins();
        assert_eq!(bins.len(), 6);
        let first = bins[0];
        assert_eq!(first.t_s, 1.0);
        assert_eq!((first.completed, first.output_tokens), (10, 100));
        assert_eq!(
            first.in_flight, 7,
            "the in-flight of each worker at the tick"
        );
        let p50 = first.ttft_p50_ms.expect("ttft");
        assert!((p50 - 20.0).abs() < 0.1, "{p50}");
        assert!(
            first.ttft_p99_ms.expect("p99") < 31.0,
            "the late TTFT is left out"
        );
        assert_eq!(bins[1].completed, 5);
        assert_eq!(bins[2].ttft_p50_ms, None, "no request ended in that second");
        // A final report 0.4 s past a tick belongs to the next second, not this one.
        t.add("a", &report(6_400, 3, &[], 0), true).expect("add");
        let bins = t.bins();
        assert_eq!((bins.len(), bins[6].t_s, bins[6].completed), (7, 7.0, 3));
    }
}
