//! The coordinator's live view for Prometheus (`GET /metrics`, `--metrics-listen`): per run
//! and point, requests sent, completed and failed by class, tokens, requests in flight,
//! and TTFT/TPOT/ITL/E2EL histograms; workers connected and lost. Point figures are
//! replaced each second from the point's merge (and a last time from the final merge, so
//! that the totals equal the run's results); histograms are the merged HdrHistograms cut
//! at fixed bucket bounds, in seconds. The last [`RUNS_KEPT`] runs are shown. The text is
//! written by `prometheus-client` from a collector that reads this state at each scrape.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rackload_telemetry::exposition::{self, Labels, Value, family, single};

use rackload_proto::histogram::LatencySet;
use rackload_proto::v1::{Counters, Metric};

use crate::Registry;

/// Runs kept on `/metrics` (older ones are forgotten).
pub(crate) const RUNS_KEPT: usize = 16;

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

#[derive(Debug, Default, Clone)]
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
    pub(crate) fn run_started(&self, run_id: &str) {
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
    pub(crate) fn run_finished(&self, run_id: &str) {
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
    pub(crate) fn worker_lost(&self, run_id: &str) {
        self.with_run(run_id, |r| r.workers_lost += 1);
    }

    /// A worker's session ended (for whatever reason).
    pub(crate) fn session_ended(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.worker_sessions_ended += 1;
        }
    }

    /// The exposition in the format the scraper's `Accept` asks for (OpenMetrics, else
    /// the classic text): its content type and text, written by `prometheus-client`.
    pub fn exposition(&self, registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
        let inner = match self.inner.lock() {
            Ok(inner) => inner.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        exposition::negotiate(
            accept,
            View {
                inner,
                connected: registry.len() as u64,
                idle: registry.idle_count() as u64,
            },
        )
    }

    /// The classic text exposition.
    pub fn render(&self, registry: &Registry) -> String {
        self.exposition(registry, None).1
    }
}

/// A scrape's copy of the live state (a collector owns what it writes).
struct View {
    inner: Inner,
    connected: u64,
    idle: u64,
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View").finish_non_exhaustive()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The counters of a point, with their family names (`_total` is added) and help.
const COUNTERS: [CounterFamily; 5] = [
    ("rackload_requests_sent", "Measured requests sent.", |c| {
        c.sent
    }),
    (
        "rackload_requests_completed",
        "Measured requests that streamed to their end.",
        |c| c.completed,
    ),
    (
        "rackload_input_tokens",
        "Prompt tokens of completed requests.",
        |c| c.input_tokens,
    ),
    (
        "rackload_output_tokens",
        "Output tokens of completed requests.",
        |c| c.output_tokens,
    ),
    (
        "rackload_late_starts",
        "Open-loop requests sent more than 5 ms behind schedule.",
        |c| c.late_starts,
    ),
];

impl View {
    fn fabric(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let i = &self.inner;
        single(
            enc,
            "rackload_workers_connected",
            "Workers with a live session.",
            Value::Gauge(self.connected as f64),
        )?;
        single(
            enc,
            "rackload_workers_idle",
            "Connected workers not held by a run.",
            Value::Gauge(self.idle as f64),
        )?;
        single(
            enc,
            "rackload_worker_sessions_ended",
            "Worker sessions that ended (closed, broken or silent).",
            Value::Counter(i.worker_sessions_ended),
        )?;
        single(
            enc,
            "rackload_runs_started",
            "Runs accepted.",
            Value::Counter(i.runs_started),
        )?;
        let run = |r: &RunLive| labels(&[("run", &r.run_id)]);
        family(
            enc,
            "rackload_run_active",
            "1 while the run is going, 0 once it ended.",
            i.runs
                .iter()
                .map(|r| (run(r), Value::Gauge(f64::from(u8::from(!r.finished))))),
        )?;
        family(
            enc,
            "rackload_workers_lost",
            "Workers lost in the middle of a point of the run.",
            i.runs
                .iter()
                .map(|r| (run(r), Value::Counter(r.workers_lost))),
        )
    }

    fn points(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let points: Vec<(Labels, &PointLive)> = self
            .inner
            .runs
            .iter()
            .flat_map(|r| {
                r.points
                    .iter()
                    .map(move |p| (labels(&[("run", &r.run_id), ("point", &p.label)]), p))
            })
            .collect();
        for (name, help, get) in COUNTERS {
            family(
                enc,
                name,
                help,
                points
                    .iter()
                    .map(|(l, p)| (l.clone(), Value::Counter(get(&p.counters)))),
            )?;
        }
        family(
            enc,
            "rackload_requests_failed",
            "Measured requests that failed, by error class.",
            points.iter().flat_map(|(l, p)| {
                p.counters.failed_by_class.iter().map(move |(class, n)| {
                    let mut l = l.clone();
                    l.push(("class".to_owned(), class.clone()));
                    (l, Value::Counter(*n))
                })
            }),
        )?;
        family(
            enc,
            "rackload_requests_in_flight",
            "Requests in flight on the point's workers (last report).",
            points
                .iter()
                .map(|(l, p)| (l.clone(), Value::Gauge(p.in_flight as f64))),
        )?;
        for (k, (_, name, help)) in LATENCIES.iter().enumerate() {
            family(
                enc,
                name,
                help,
                points.iter().map(|(l, p)| {
                    let b = &p.lat[k];
                    let value = Value::Histogram {
                        buckets: exposition::buckets_from_cumulative(&BUCKETS, &b.le, b.count),
                        count: b.count,
                        sum: b.sum,
                    };
                    (l.clone(), value)
                }),
            )?;
        }
        Ok(())
    }
}

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        self.fabric(&mut enc)?;
        self.points(&mut enc)
    }
}

/// A counter family: name, help, and how to read it from a point's counters.
type CounterFamily = (&'static str, &'static str, fn(&Counters) -> u64);

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
            format!("rackload_ttft_seconds_bucket{{le=\"0.0005\",{l}}} 1"),
            format!("rackload_ttft_seconds_bucket{{le=\"0.001\",{l}}} 2"),
            format!("rackload_ttft_seconds_bucket{{le=\"0.05\",{l}}} 4"),
            format!("rackload_ttft_seconds_bucket{{le=\"+Inf\",{l}}} 5"),
            format!("rackload_ttft_seconds_count{{{l}}} 5"),
            "rackload_run_active{run=\"r1\"} 1.0".to_owned(),
            "# TYPE rackload_requests_completed_total counter".to_owned(),
        ] {
            assert!(
                text.lines().any(|line| line == want),
                "{want} missing in\n{text}"
            );
        }
        live.run_finished("r1");
        assert!(
            live.render(&Registry::default())
                .contains("rackload_run_active{run=\"r1\"} 0.0")
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
