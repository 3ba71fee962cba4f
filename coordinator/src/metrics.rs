//! The coordinator's live view for Prometheus (`GET /metrics`, `--metrics-listen`): per run
//! and point, requests sent, completed and failed by class, tokens, requests in flight,
//! and TTFT/TPOT/ITL/E2EL histograms; workers connected and lost. Point figures are
//! replaced each second from the point's merge (and a last time from the final merge, so
//! that the totals equal the run's results); histograms are the merged HdrHistograms cut
//! at fixed bucket bounds, in seconds. The last [`RUNS_KEPT`] runs are shown.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use rackload_proto::histogram::LatencySet;
use rackload_proto::v1::{Counters, Metric};

use crate::Registry;

/// Runs kept on `/metrics` (older ones are forgotten).
pub const RUNS_KEPT: usize = 16;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// The latency histograms shown, with their metric names and help.
const LATENCIES: [(Metric, &str, &str); 4] = [
    (
        Metric::Ttft,
        "rackload_ttft_seconds",
        "Time to first token of completed requests.",
    ),
    (
        Metric::Tpot,
        "rackload_tpot_seconds",
        "Time per output token after the first, one sample per completed request.",
    ),
    (
        Metric::Itl,
        "rackload_itl_seconds",
        "Inter-token (inter-chunk) latency, one sample per chunk.",
    ),
    (
        Metric::E2el,
        "rackload_e2el_seconds",
        "End-to-end latency of completed requests.",
    ),
];

#[derive(Debug, Clone)]
struct Buckets {
    /// Cumulative counts at each of [`BUCKETS`].
    le: [u64; BUCKETS.len()],
    count: u64,
    /// Seconds (the histogram's mean × count: HdrHistograms keep no exact sum).
    sum: f64,
}

#[derive(Debug, Clone)]
struct PointLive {
    label: String,
    counters: Counters,
    in_flight: u64,
    lat: Vec<Buckets>,
}

#[derive(Debug, Clone)]
struct RunLive {
    run_id: String,
    points: Vec<PointLive>,
    workers_lost: u64,
    finished: bool,
}

#[derive(Debug, Default)]
struct Inner {
    runs: VecDeque<RunLive>,
    runs_started: u64,
    worker_sessions_ended: u64,
}

/// What `/metrics` shows; updated by runs and the fabric.
#[derive(Debug, Default)]
pub struct Live {
    inner: Mutex<Inner>,
}

fn buckets(lat: &LatencySet, metric: Metric) -> Buckets {
    let Some(h) = lat.get(metric) else {
        return Buckets {
            le: [0; BUCKETS.len()],
            count: 0,
            sum: 0.0,
        };
    };
    let mut le = [0; BUCKETS.len()];
    for (k, bound) in BUCKETS.iter().enumerate() {
        // Values are microseconds.
        le[k] = h.count_between(0, (bound * 1e6) as u64);
    }
    Buckets {
        le,
        count: h.len(),
        sum: h.mean() * h.len() as f64 / 1e6,
    }
}

impl Live {
    fn with_run(&self, run_id: &str, f: impl FnOnce(&mut RunLive)) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(r) = inner.runs.iter_mut().find(|r| r.run_id == run_id) {
            f(r);
        }
    }

    /// A run started.
    pub fn run_started(&self, run_id: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.runs_started += 1;
        if inner.runs.len() >= RUNS_KEPT {
            inner.runs.pop_front();
        }
        inner.runs.push_back(RunLive {
            run_id: run_id.to_owned(),
            points: Vec::new(),
            workers_lost: 0,
            finished: false,
        });
    }

    /// A run ended (its figures stay until newer runs push them out).
    pub fn run_finished(&self, run_id: &str) {
        self.with_run(run_id, |r| r.finished = true);
    }

    /// The merged state of point `label` of `run_id`, replacing the previous one.
    pub fn point(
        &self,
        run_id: &str,
        label: &str,
        counters: &Counters,
        in_flight: u64,
        lat: &LatencySet,
    ) {
        let live = PointLive {
            label: label.to_owned(),
            counters: counters.clone(),
            in_flight,
            lat: LATENCIES.iter().map(|(m, ..)| buckets(lat, *m)).collect(),
        };
        self.with_run(run_id, |r| {
            match r.points.iter_mut().find(|p| p.label == label) {
                Some(p) => *p = live,
                None => r.points.push(live),
            }
        });
    }

    /// A worker was lost in the middle of one of `run_id`'s points.
    pub fn worker_lost(&self, run_id: &str) {
        self.with_run(run_id, |r| r.workers_lost += 1);
    }

    /// A worker's session ended (for whatever reason).
    pub fn session_ended(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.worker_sessions_ended += 1;
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, registry: &Registry) -> String {
        let Ok(inner) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::with_capacity(16 * 1024);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "rackload_workers_connected",
            "gauge",
            "Workers with a live session.",
        );
        let _ = writeln!(out, "rackload_workers_connected {}", registry.len());
        family(
            &mut out,
            "rackload_workers_idle",
            "gauge",
            "Connected workers not held by a run.",
        );
        let _ = writeln!(out, "rackload_workers_idle {}", registry.idle_count());
        family(
            &mut out,
            "rackload_worker_sessions_ended_total",
            "counter",
            "Worker sessions that ended (closed, broken or silent).",
        );
        let _ = writeln!(
            out,
            "rackload_worker_sessions_ended_total {}",
            inner.worker_sessions_ended
        );
        family(
            &mut out,
            "rackload_runs_started_total",
            "counter",
            "Runs accepted.",
        );
        let _ = writeln!(out, "rackload_runs_started_total {}", inner.runs_started);

        family(
            &mut out,
            "rackload_run_active",
            "gauge",
            "1 while the run is going, 0 once it ended.",
        );
        for r in &inner.runs {
            let _ = writeln!(
                out,
                "rackload_run_active{{run=\"{}\"}} {}",
                escape(&r.run_id),
                u8::from(!r.finished)
            );
        }
        family(
            &mut out,
            "rackload_workers_lost_total",
            "counter",
            "Workers lost in the middle of a point of the run.",
        );
        for r in &inner.runs {
            let _ = writeln!(
                out,
                "rackload_workers_lost_total{{run=\"{}\"}} {}",
                escape(&r.run_id),
                r.workers_lost
            );
        }

        let points: Vec<(String, &PointLive)> = inner
            .runs
            .iter()
            .flat_map(|r| {
                r.points.iter().map(move |p| {
                    (
                        format!(
                            "run=\"{}\",point=\"{}\"",
                            escape(&r.run_id),
                            escape(&p.label)
                        ),
                        p,
                    )
                })
            })
            .collect();
        let counters: [CounterFamily; 5] = [
            (
                "rackload_requests_sent_total",
                "Measured requests sent.",
                |c| c.sent,
            ),
            (
                "rackload_requests_completed_total",
                "Measured requests that streamed to their end.",
                |c| c.completed,
            ),
            (
                "rackload_input_tokens_total",
                "Prompt tokens of completed requests.",
                |c| c.input_tokens,
            ),
            (
                "rackload_output_tokens_total",
                "Output tokens of completed requests.",
                |c| c.output_tokens,
            ),
            (
                "rackload_late_starts_total",
                "Open-loop requests sent more than 5 ms behind schedule.",
                |c| c.late_starts,
            ),
        ];
        for (name, help, get) in counters {
            family(&mut out, name, "counter", help);
            for (labels, p) in &points {
                let _ = writeln!(out, "{name}{{{labels}}} {}", get(&p.counters));
            }
        }
        family(
            &mut out,
            "rackload_requests_failed_total",
            "counter",
            "Measured requests that failed, by error class.",
        );
        for (labels, p) in &points {
            for (class, n) in &p.counters.failed_by_class {
                let _ = writeln!(
                    out,
                    "rackload_requests_failed_total{{{labels},class=\"{}\"}} {n}",
                    escape(class)
                );
            }
        }
        family(
            &mut out,
            "rackload_requests_in_flight",
            "gauge",
            "Requests in flight on the point's workers (last report).",
        );
        for (labels, p) in &points {
            let _ = writeln!(
                out,
                "rackload_requests_in_flight{{{labels}}} {}",
                p.in_flight
            );
        }
        for (k, (_, name, help)) in LATENCIES.iter().enumerate() {
            family(&mut out, name, "histogram", help);
            for (labels, p) in &points {
                let b = &p.lat[k];
                for (bound, n) in BUCKETS.iter().zip(b.le) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", b.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", b.sum);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", b.count);
            }
        }
        out
    }
}

/// A counter family: name, help, and how to read it from a point's counters.
type CounterFamily = (&'static str, &'static str, fn(&Counters) -> u64);

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_totals_are_the_merge() {
        let live = Live::default();
        live.run_started("r1");
        let mut lat = LatencySet::default();
        for us in [300, 800, 2_000, 40_000, 2_000_000] {
            lat.record(Metric::Ttft, us);
        }
        let counters = Counters {
            sent: 6,
            completed: 5,
            output_tokens: 50,
            failed_by_class: [("http_5xx".to_owned(), 1)].into(),
            ..Counters::default()
        };
        live.point("r1", "c=4", &counters, 0, &lat);
        let text = live.render(&Registry::default());
        let l = r#"run="r1",point="c=4""#;
        for want in [
            format!("rackload_requests_completed_total{{{l}}} 5"),
            format!("rackload_output_tokens_total{{{l}}} 50"),
            format!("rackload_requests_failed_total{{{l},class=\"http_5xx\"}} 1"),
            format!("rackload_ttft_seconds_bucket{{{l},le=\"0.0005\"}} 1"),
            format!("rackload_ttft_seconds_bucket{{{l},le=\"0.001\"}} 2"),
            format!("rackload_ttft_seconds_bucket{{{l},le=\"0.05\"}} 4"),
            format!("rackload_ttft_seconds_bucket{{{l},le=\"+Inf\"}} 5"),
            format!("rackload_ttft_seconds_count{{{l}}} 5"),
            "rackload_run_active{run=\"r1\"} 1".to_owned(),
        ] {
            assert!(
                text.lines().any(|line| line == want),
                "{want} missing in\n{text}"
            );
        }
        live.run_finished("r1");
        assert!(
            live.render(&Registry::default())
                .contains("rackload_run_active{run=\"r1\"} 0")
        );
    }

    #[test]
    fn only_the_newest_runs_are_kept() {
        let live = Live::default();
        for k in 0..RUNS_KEPT + 3 {
            live.run_started(&format!("run-{k}"));
        }
        let text = live.render(&Registry::default());
        assert!(!text.contains("run=\"run-0\""));
        assert!(text.contains(&format!("run=\"run-{}\"", RUNS_KEPT + 2)));
        assert!(text.contains(&format!("rackload_runs_started_total {}", RUNS_KEPT + 3)));
    }
}
