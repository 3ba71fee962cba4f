//! Merging one point's reports: histogram counts are added (never percentiles), counters
//! summed, and each worker's part kept for the per-worker accounting — including the
//! requests a lost worker had in flight, so that sent == completed + failed + lost.

use std::collections::BTreeMap;

use rackload_proto::histogram::{HistogramError, LatencySet};
use rackload_proto::v1::{Counters, EndpointReport, PointResult, Report, WorkerPointResult};

#[derive(Debug, Default, Clone)]
pub struct WorkerPart {
    pub concurrency: u32,
    pub counters: Counters,
    pub in_flight: u64,
    /// From the start instant to the worker's first measured send.
    pub window_start_nanos: Option<i64>,
    /// From the start instant to its last request's end (final report) or last report.
    pub end_nanos: i64,
    pub done: bool,
    pub lost: bool,
    /// CPU seconds the worker process used since the shard started (latest report).
    pub cpu_seconds: f64,
    pub saturated_intervals: u32,
    pub saturation_reason: String,
}

impl WorkerPart {
    /// Requests sent and not finished.
    pub(crate) fn unfinished(&self) -> u64 {
        let c = &self.counters;
        c.sent.saturating_sub(c.completed + c.failed())
    }
}

/// The merged state of a running point.
#[derive(Debug, Default)]
pub struct PointMerge {
    pub lat: LatencySet,
    pub counters: Counters,
    pub workers: BTreeMap<String, WorkerPart>,
    /// Per target endpoint, by base URL.
    pub endpoints: BTreeMap<String, (Counters, LatencySet)>,
    /// The reports binned by second, for the point's timeline.
    pub timeline: crate::timeline::Timeline,
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

    /// Does a report from `worker` count: is it part of the point, and neither finished
    /// nor lost?
    pub fn accepts(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|p| !p.done)
    }

    /// Adds a report from `worker`; reports from workers outside the point, or after
    /// their final one, are ignored.
    pub fn add(&mut self, worker: &str, report: &Report, last: bool) -> Result<(), HistogramError> {
        let Some(part) = self.workers.get_mut(worker) else {
            return Ok(());
        };
        if part.done {
            return Ok(());
        }
        self.lat.merge_wire(&report.histograms)?;
        self.timeline.add(worker, report, last)?;
        if let Some(c) = &report.counters {
            self.counters.add(c);
            part.counters.add(c);
        }
        for e in &report.endpoints {
            let (c, lat) = self.endpoints.entry(e.base_url.clone()).or_default();
            if let Some(ec) = &e.counters {
                c.add(ec);
            }
            lat.merge_wire(&e.histograms)?;
        }
        if report.client_saturated {
            part.saturated_intervals += 1;
            part.saturation_reason = report.saturation_reason.clone();
        }
        part.in_flight = report.in_flight;
        part.cpu_seconds = part.cpu_seconds.max(report.cpu_seconds);
        if report.window_start_nanos >= 0 {
            part.window_start_nanos = Some(report.window_start_nanos);
        }
        part.end_nanos = part.end_nanos.max(report.elapsed_nanos);
        if last {
            part.done = true;
            part.end_nanos = report.elapsed_nanos.max(0);
        }
        Ok(())
    }

    /// Marks `worker` lost: what it had in flight is lost, and nothing more is expected
    /// from it. Returns false when it is not (or no longer) part of the point.
    pub(crate) fn lose(&mut self, worker: &str) -> bool {
        match self.workers.get_mut(worker) {
            Some(part) if !part.done => {
                part.done = true;
                part.lost = true;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn all_done(&self) -> bool {
        self.workers.values().all(|w| w.done)
    }

    pub fn in_flight(&self) -> u64 {
        self.workers
            .values()
            .filter(|w| !w.done)
            .map(|w| w.in_flight)
            .sum()
    }

    /// Requests in flight on lost workers.
    pub fn lost(&self) -> u64 {
        self.workers
            .values()
            .filter(|w| w.lost)
            .map(WorkerPart::unfinished)
            .sum()
    }

    /// The measurement window, in nanoseconds from the start instant (all workers share
    /// it): the first measured send of any worker to the last request's end.
    pub fn window_nanos(&self) -> (i64, i64) {
        let start = self
            .workers
            .values()
            .filter_map(|w| w.window_start_nanos)
            .min()
            .unwrap_or(0);
        let end = self
            .workers
            .values()
            .map(|w| w.end_nanos)
            .max()
            .unwrap_or(0);
        (start, end.max(start))
    }

    /// The measurement window in seconds.
    pub fn duration_s(&self) -> f64 {
        let (start, end) = self.window_nanos();
        (end - start) as f64 / 1e9
    }

    /// The point's result.
    pub fn result(
        &self,
        index: u32,
        point: &rackload_spec::Point,
        start_unix_nanos: i64,
        max_failure_rate: f64,
    ) -> Result<PointResult, HistogramError> {
        let lost_workers: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.lost)
            .map(|(id, _)| id.clone())
            .collect();
        let c = &self.counters;
        let finished = c.completed + c.failed();
        let gate_failed = (finished > 0
            && (c.failed() as f64 / finished as f64) > max_failure_rate)
            || c.completed == 0;
        Ok(PointResult {
            // Set by the run, which knows its SLOs and its meters.
            goodput: None,
            gpu_power_w: None,
            energy_j: None,
            gpus_measured: 0,
            power_samples: Vec::new(),
            server: None,
            server_samples: Vec::new(),
            node_power_w: None,
            node_energy_j: None,
            nodes_measured: 0,
            node_power_samples: Vec::new(),
            timeline: self.timeline.bins(),
            point_index: index,
            label: point.label.clone(),
            max_concurrency: point.max_concurrency.unwrap_or(0),
            num_prompts: point.num_prompts,
            duration_s: self.duration_s(),
            counters: Some(c.clone()),
            histograms: self.lat.to_wire()?,
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerPointResult {
                    worker_id: id.clone(),
                    concurrency: w.concurrency,
                    counters: Some(w.counters.clone()),
                    duration_s: w.end_nanos.max(0) as f64 / 1e9,
                    lost: w.lost,
                    lost_requests: if w.lost { w.unfinished() } else { 0 },
                    cpu_percent: if w.end_nanos > 0 {
                        100.0 * w.cpu_seconds / (w.end_nanos as f64 / 1e9)
                    } else {
                        0.0
                    },
                    saturated_intervals: w.saturated_intervals,
                    saturation_reason: w.saturation_reason.clone(),
                })
                .collect(),
            endpoints: self
                .endpoints
                .iter()
                .map(|(url, (c, lat))| {
                    Ok(EndpointReport {
                        base_url: url.clone(),
                        counters: Some(c.clone()),
                        histograms: lat.to_wire()?,
                    })
                })
                .collect::<Result<_, HistogramError>>()?,
            client_saturated: self.workers.values().any(|w| w.saturated_intervals > 0),
            start_unix_nanos,
            lost: self.lost(),
            degraded: !lost_workers.is_empty(),
            lost_workers,
            gate_failed,
            warmup_prompts: point.warmup,
            request_rate: point.request_rate.unwrap_or(0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sent: u64, completed: u64, in_flight: u64, elapsed: i64, start: i64) -> Report {
        Report {
            counters: Some(Counters {
                sent,
                completed,
                ..Counters::default()
            }),
            in_flight,
            elapsed_nanos: elapsed,
            window_start_nanos: start,
            ..Report::default()
        }
    }

    #[test]
    fn a_lost_worker_keeps_sent_equal_to_completed_failed_and_lost() {
        let mut m = PointMerge::new([("a".to_owned(), 2), ("b".to_owned(), 2)]);
        m.add("a", &report(5, 3, 2, 1_000_000_000, 100), false)
            .expect("merge");
        m.add("b", &report(4, 4, 0, 2_000_000_000, 50), true)
            .expect("merge");
        assert!(!m.all_done());
        assert!(m.lose("a"));
        assert!(!m.lose("b"), "b had finished");
        assert!(m.all_done());
        let point = rackload_spec::Point {
            label: "c1".into(),
            max_concurrency: Some(1),
            num_prompts: 1,
            warmup: 0,
            request_rate: None,
            duration: None,
        };
        let r = m.result(0, &point, 0, 0.05).expect("result");
        let c = r.counters.clone().unwrap_or_default();
        assert_eq!((c.sent, c.completed, c.failed(), r.lost), (9, 7, 0, 2));
        assert_eq!(c.sent, c.completed + c.failed() + r.lost);
        assert!(r.degraded);
        assert_eq!(r.lost_workers, vec!["a".to_owned()]);
        assert!(
            (r.duration_s - (2.0 - 50e-9)).abs() < 1e-9,
            "{}",
            r.duration_s
        );
    }
}
