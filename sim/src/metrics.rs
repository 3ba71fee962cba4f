//! `GET /metrics`: Prometheus text with vLLM's metric names, so a dashboard built for vLLM
//! reads the sim — queue depths and KV-cache use of the batch model, token counters, and
//! TTFT and inter-token histograms with vLLM's buckets — plus the sim's own counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::batch::Replica;
use crate::server::{SimConfig, SimStats};

/// vLLM's `time_to_first_token_seconds` buckets.
const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `inter_token_latency_seconds` buckets.
const ITL_BUCKETS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// A Prometheus histogram with fixed buckets and atomic counts.
#[derive(Debug)]
struct PromHistogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl PromHistogram {
    fn new(bounds: &'static [f64]) -> PromHistogram {
        PromHistogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(k) = self.bounds.iter().position(|&b| s <= b) {
            self.counts[k].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {acc}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Token timing as the server hands events to connections.
#[derive(Debug)]
pub struct Metrics {
    ttft: PromHistogram,
    itl: PromHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ttft: PromHistogram::new(&TTFT_BUCKETS),
            itl: PromHistogram::new(&ITL_BUCKETS),
        }
    }
}

impl Metrics {
    /// A token event went out `since_arrival` after its request arrived, `since_prev`
    /// after the request's previous one (None for the first).
    pub fn token(&self, since_arrival: Duration, since_prev: Option<Duration>) {
        match since_prev {
            None => self.ttft.observe(since_arrival),
            Some(gap) => self.itl.observe(gap),
        }
    }
}

fn gauge(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    labels: &str,
    v: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {v}"
    );
}

/// The whole `/metrics` page for `replicas` (all of the sim's, or one on its own port).
pub fn render(config: &SimConfig, stats: &SimStats, m: &Metrics, replicas: &[Replica]) -> String {
    let mut out = String::new();
    let labels = format!(
        "model_name={}",
        serde_json::Value::String(config.model.clone())
    );
    let l = labels.as_str();
    let sum = |f: fn(&Replica) -> u64| replicas.iter().map(f).sum::<u64>();
    let in_flight = stats.in_flight.load(Ordering::Relaxed);
    let (running, waiting) = if replicas.is_empty() {
        (in_flight, 0)
    } else {
        (
            sum(|r| r.stats.running.load(Ordering::Relaxed)),
            sum(|r| r.stats.waiting.load(Ordering::Relaxed)),
        )
    };
    let kv_capacity = sum(|r| r.kv_capacity);
    let kv_usage = if kv_capacity > 0 {
        sum(|r| r.stats.kv_used.load(Ordering::Relaxed)) as f64 / kv_capacity as f64
    } else {
        0.0
    };
    gauge(
        &mut out,
        "gauge",
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        l,
        running,
    );
    gauge(
        &mut out,
        "gauge",
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        l,
        waiting,
    );
    gauge(
        &mut out,
        "gauge",
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        l,
        kv_usage,
    );
    let prompt = stats.prompt_tokens.load(Ordering::Relaxed);
    let generated = stats.tokens.load(Ordering::Relaxed);
    gauge(
        &mut out,
        "counter",
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        l,
        prompt,
    );
    gauge(
        &mut out,
        "counter",
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        l,
        generated,
    );
    gauge(
        &mut out,
        "counter",
        "vllm:num_preemptions_total",
        "Cumulative number of preemption from the engine.",
        l,
        sum(|r| r.stats.preemptions.load(Ordering::Relaxed)),
    );
    m.ttft.render(
        &mut out,
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        l,
    );
    m.itl.render(
        &mut out,
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        l,
    );
    gauge(
        &mut out,
        "counter",
        "rackload_sim_requests_received_total",
        "Requests accepted.",
        l,
        stats.received.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "counter",
        "rackload_sim_requests_served_total",
        "Responses finished.",
        l,
        stats.served.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "gauge",
        "rackload_sim_requests_in_flight",
        "Requests accepted and not finished.",
        l,
        in_flight,
    );
    let gpus = config.profile.as_ref().map_or(0, |p| p.gpus_per_replica) * replicas.len() as u32;
    gauge(
        &mut out,
        "gauge",
        "rackload_sim_gpus",
        "GPUs the simulated replicas stand for.",
        l,
        gpus,
    );
    out
}
