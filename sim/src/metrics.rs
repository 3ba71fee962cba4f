//! `GET /metrics`: Prometheus text with vLLM's metric names, so a dashboard built for vLLM
//! reads the sim — queue depths and KV-cache use of the batch model, token counters, and
//! TTFT and inter-token histograms with vLLM's buckets — plus the sim's own counters.
//! Written by `prometheus-client` from one scrape's figures; the token path only bumps
//! atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rackload_telemetry::exposition::{self, Labels, Value, family};

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

    /// The histogram now, as an exposition value (per-bucket counts, `+Inf` last).
    fn value(&self) -> Value {
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, c)| (b, c.load(Ordering::Relaxed)))
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        let within: u64 = buckets.iter().map(|b| b.1).sum();
        buckets.push((f64::INFINITY, count.saturating_sub(within)));
        Value::Histogram {
            buckets,
            count,
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
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

/// One scrape's figures (a collector owns what it writes).
#[derive(Debug)]
struct Page {
    labels: Labels,
    families: Vec<(&'static str, &'static str, Value)>,
}

impl Collector for Page {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        for (name, help, value) in &self.families {
            family(&mut enc, name, help, [(self.labels.clone(), value.clone())])?;
        }
        Ok(())
    }
}

/// Each simulated GPU's power, from the batch model (every GPU of a replica draws the
/// power of its running batch, per the profile); without a profile, one GPU loaded by the
/// requests in flight as a batch of 16.
fn gpu_watts(config: &SimConfig, stats: &SimStats, replicas: &[Replica]) -> Vec<f64> {
    match (&config.profile, replicas.is_empty()) {
        (Some(p), false) => replicas
            .iter()
            .flat_map(|replica| {
                let w = p.gpu_power_w(replica.stats.running.load(Ordering::Relaxed));
                std::iter::repeat_n(w, p.gpus_per_replica as usize)
            })
            .collect(),
        _ => {
            use crate::profile::{default_gpu_idle_w, default_gpu_max_w, gpu_power};
            let running = stats.in_flight.load(Ordering::Relaxed);
            vec![gpu_power(
                default_gpu_idle_w(),
                default_gpu_max_w(),
                running,
                16,
            )]
        }
    }
}

/// `/gpu/metrics`: each simulated GPU's power as NVIDIA's DCGM exporter names it.
pub fn render_gpu(config: &SimConfig, stats: &SimStats, replicas: &[Replica]) -> String {
    let mut out = String::from(
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n",
    );
    for (gpu, watts) in gpu_watts(config, stats, replicas).iter().enumerate() {
        out.push_str(&format!(
            "DCGM_FI_DEV_POWER_USAGE{{gpu=\"{gpu}\",modelName=\"rackload-sim\"}} {watts:.3}\n"
        ));
    }
    out
}

/// The whole sim as one node's chassis power, in watts: the profile's `node_base_w` (CPUs,
/// NICs, fans) plus every GPU's power.
pub fn node_watts(config: &SimConfig, stats: &SimStats, replicas: &[Replica]) -> f64 {
    let base = config
        .profile
        .as_ref()
        .map_or_else(crate::profile::default_node_base_w, |p| p.node_base_w);
    base + gpu_watts(config, stats, replicas).iter().sum::<f64>()
}

/// The whole `/metrics` page for `replicas` (all of the sim's, or one on its own port), in
/// the format `accept` asks for: its content type and text.
pub fn render(
    accept: Option<&str>,
    config: &SimConfig,
    stats: &SimStats,
    m: &Metrics,
    replicas: &[Replica],
) -> (&'static str, String) {
    let sum = |f: fn(&Replica) -> u64| replicas.iter().map(f).sum::<u64>();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let in_flight = load(&stats.in_flight);
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
    let gpus = config.profile.as_ref().map_or(0, |p| p.gpus_per_replica) * replicas.len() as u32;
    let gauge = |v: u64| Value::Gauge(v as f64);
    // vLLM's names (counters get their `_total` from the encoder), then the sim's own.
    let families = vec![
        (
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            gauge(running),
        ),
        (
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            gauge(waiting),
        ),
        (
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            Value::Gauge(kv_usage),
        ),
        (
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            Value::Counter(load(&stats.prompt_tokens)),
        ),
        (
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            Value::Counter(load(&stats.tokens)),
        ),
        (
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            Value::Counter(sum(|r| r.stats.preemptions.load(Ordering::Relaxed))),
        ),
        (
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            m.ttft.value(),
        ),
        (
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            m.itl.value(),
        ),
        (
            "rackload_sim_requests_received",
            "Requests accepted.",
            Value::Counter(load(&stats.received)),
        ),
        (
            "rackload_sim_requests_served",
            "Responses finished.",
            Value::Counter(load(&stats.served)),
        ),
        (
            "rackload_sim_requests_in_flight",
            "Requests accepted and not finished.",
            gauge(in_flight),
        ),
        (
            "rackload_sim_gpus",
            "GPUs the simulated replicas stand for.",
            gauge(u64::from(gpus)),
        ),
    ];
    exposition::negotiate(
        accept,
        Page {
            labels: vec![("model_name".to_owned(), config.model.clone())],
            families,
        },
    )
}
