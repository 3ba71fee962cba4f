//! Merging one point's reports: histogram counts are added (never percentiles), counters
//! summed, and each worker's part kept for the per-worker accounting.

use std::collections::BTreeMap;

use rackload_proto::histogram::{HistogramError, LatencySet};
use rackload_proto::v1::{Counters, PointResult, PointSpec, Report, WorkerPointResult};

#[derive(Debug, Default, Clone)]
pub struct WorkerPart {
    pub concurrency: u32,
    pub counters: Counters,
    pub in_flight: u64,
    /// From the start instant to the worker's last request end; set by its final report.
    pub duration_s: f64,
    pub done: bool,
}

/// The merged state of a running point.
#[derive(Debug, Default)]
pub struct PointMerge {
    pub lat: LatencySet,
    pub counters: Counters,
    pub workers: BTreeMap<String, WorkerPart>,
}

impl PointMerge {
    /// A merge expecting one final report from each `(worker, concurrency)`.
    pub fn new(shares: impl IntoIterator<Item = (String, u32)>) -> PointMerge {
        PointMerge {
            workers: shares
                .into_iter()
                .map(|(id, concurrency)| {
                    (
                        id,
                        WorkerPart {
                            concurrency,
                            ..WorkerPart::default()
                        },
                    )
                })
                .collect(),
            ..PointMerge::default()
        }
    }

    /// Adds a report from `worker`; reports from workers outside the point are ignored.
    pub fn add(&mut self, worker: &str, report: &Report, last: bool) -> Result<(), HistogramError> {
        let Some(part) = self.workers.get_mut(worker) else {
            return Ok(());
        };
        if part.done {
            return Ok(());
        }
        self.lat.merge_wire(&report.histograms)?;
        if let Some(c) = &report.counters {
            self.counters.add(c);
            part.counters.add(c);
        }
        part.in_flight = report.in_flight;
        if last {
            part.done = true;
            part.duration_s = report.elapsed_nanos.max(0) as f64 / 1e9;
        }
        Ok(())
    }

    pub fn all_done(&self) -> bool {
        self.workers.values().all(|w| w.done)
    }

    pub fn in_flight(&self) -> u64 {
        self.workers.values().map(|w| w.in_flight).sum()
    }

    /// The point's result. Its duration is the longest worker's: all started at one
    /// instant, so that is the time from the start to the last request's end.
    pub fn result(
        &self,
        index: u32,
        point: &PointSpec,
        start_unix_nanos: i64,
    ) -> Result<PointResult, HistogramError> {
        let duration_s = self
            .workers
            .values()
            .map(|w| w.duration_s)
            .fold(0.0, f64::max);
        Ok(PointResult {
            point_index: index,
            label: point.label.clone(),
            max_concurrency: point.max_concurrency,
            num_prompts: point.num_prompts,
            duration_s,
            counters: Some(self.counters.clone()),
            histograms: self.lat.to_wire()?,
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerPointResult {
                    worker_id: id.clone(),
                    concurrency: w.concurrency,
                    counters: Some(w.counters.clone()),
                    duration_s: w.duration_s,
                })
                .collect(),
            start_unix_nanos,
        })
    }
}
