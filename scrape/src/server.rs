//! What the server says of itself while a point runs: its running and waiting requests,
//! KV-cache use, preemptions, prefix-cache queries and hits, the prompt and generated
//! tokens it counted, and its own TTFT and
//! inter-token histograms, read from its Prometheus page under vLLM's, SGLang's,
//! TensorRT-LLM's and Dynamo's names
//! (series of one name summed over their labels: engines, models, replicas); then, over
//! the point's measurement window, gauges averaged, counters and histograms differenced.

use rackload_proto::v1::ServerFigures;

/// Names of each quantity, vLLM's first, then SGLang's, TensorRT-LLM's (`trtllm-serve`)
/// and NVIDIA Dynamo's frontend's.
const RUNNING: [&str; 3] = [
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "trtllm_num_requests_running",
];
/// Dynamo's frontend counts its queued requests among its in-flight ones: its running
/// requests are the difference.
const DYNAMO_IN_FLIGHT: &str = "dynamo_frontend_inflight_requests";
const WAITING: [&str; 4] = [
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "trtllm_num_requests_waiting",
    "dynamo_frontend_queued_requests",
];
const KV_USAGE: [&str; 4] = [
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "trtllm_kv_cache_utilization",
];
const PREEMPTIONS: [&str; 1] = ["vllm:num_preemptions_total"];
/// Prompt and generated tokens the server counted (vLLM's and SGLang's counters).
const PROMPT_TOKENS: [&str; 2] = ["vllm:prompt_tokens_total", "sglang:prompt_tokens_total"];
const GENERATION_TOKENS: [&str; 2] = [
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
];
const PREFIX_QUERIES: [&str; 2] = [
    "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_queries_total",
];
const PREFIX_HITS: [&str; 2] = [
    "vllm:prefix_cache_hits_total",
    "vllm:gpu_prefix_cache_hits_total",
];
const TTFT: [&str; 4] = [
    "vllm:time_to_first_token_seconds_bucket",
    "sglang:time_to_first_token_seconds_bucket",
    "trtllm_time_to_first_token_seconds_bucket",
    "dynamo_frontend_time_to_first_token_seconds_bucket",
];
const ITL: [&str; 5] = [
    "vllm:inter_token_latency_seconds_bucket",
    "vllm:time_per_output_token_seconds_bucket",
    "sglang:inter_token_latency_seconds_bucket",
    "trtllm_time_per_output_token_seconds_bucket",
    "dynamo_frontend_inter_token_latency_seconds_bucket",
];

/// One reading of a server's page (several servers' readings add up).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerReading {
    pub unix_nanos: i64,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    /// KV-cache use (0..1), summed over `kv_servers` servers (divided out in figures).
    pub kv_usage: Option<f64>,
    pub kv_servers: u32,
    pub preemptions: Option<f64>,
    pub prefix_queries: Option<f64>,
    pub prefix_hits: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    /// Cumulative histogram buckets: (upper bound in seconds, count), ascending.
    pub ttft: Vec<(f64, f64)>,
    pub itl: Vec<(f64, f64)>,
}

/// Most buckets kept of a histogram (servers publish a few dozen; a page with thousands
/// is hostile, and its extra bounds are ignored).
const MAX_BUCKETS: usize = 256;

/// The first of `names` that the page has, summed over its series.
fn sum(samples: &[crate::prom::Sample], names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| {
        let mut found = None;
        for s in samples
            .iter()
            .filter(|s| s.name == *n && s.value.is_finite())
        {
            *found.get_or_insert(0.0) += s.value;
        }
        found
    })
}

/// The first of `names` that the page has, averaged over its series (a fraction each
/// engine of a server reports for itself), and how many series there were.
fn mean(samples: &[crate::prom::Sample], names: &[&str]) -> Option<(f64, u32)> {
    names.iter().find_map(|n| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == *n && s.value.is_finite())
            .map(|s| s.value)
            .collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, 1))
    })
}

/// The first of `names` that the page has as a histogram, its buckets summed per bound
/// (at most [`MAX_BUCKETS`] bounds, each finite or `+Inf`).
fn buckets(samples: &[crate::prom::Sample], names: &[&str]) -> Vec<(f64, f64)> {
    for n in names {
        let mut by_le: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        for s in samples
            .iter()
            .filter(|s| s.name == *n && s.value.is_finite())
        {
            let Some(le) = s.label("le").and_then(|v| match v {
                "+Inf" => Some(f64::INFINITY),
                v => v.parse::<f64>().ok().filter(|b| b.is_finite()),
            }) else {
                continue;
            };
            // Ordered by the bound's bits (non-negative bounds sort as their bits do).
            let key = le.max(0.0).to_bits();
            if let Some(b) = by_le.get_mut(&key) {
                b.1 += s.value;
            } else if by_le.len() < MAX_BUCKETS {
                by_le.insert(key, (le.max(0.0), s.value));
            }
        }
        if !by_le.is_empty() {
            return by_le.into_values().collect();
        }
    }
    Vec::new()
}

/// A server's page read; `None` when it has none of the series above.
pub fn read(text: &str, unix_nanos: i64) -> Option<ServerReading> {
    let samples: Vec<crate::prom::Sample> = crate::prom::samples(text).collect();
    let kv = mean(&samples, &KV_USAGE);
    let r = ServerReading {
        unix_nanos,
        running: sum(&samples, &RUNNING).or_else(|| {
            let queued = sum(&samples, &["dynamo_frontend_queued_requests"]).unwrap_or(0.0);
            sum(&samples, &[DYNAMO_IN_FLIGHT]).map(|f| (f - queued).max(0.0))
        }),
        waiting: sum(&samples, &WAITING),
        kv_usage: kv.map(|k| k.0),
        kv_servers: kv.map_or(0, |k| k.1),
        preemptions: sum(&samples, &PREEMPTIONS),
        prefix_queries: sum(&samples, &PREFIX_QUERIES),
        prefix_hits: sum(&samples, &PREFIX_HITS),
        prompt_tokens: sum(&samples, &PROMPT_TOKENS),
        generation_tokens: sum(&samples, &GENERATION_TOKENS),
        ttft: buckets(&samples, &TTFT),
        itl: buckets(&samples, &ITL),
    };
    (r != ServerReading {
        unix_nanos,
        ..ServerReading::default()
    })
    .then_some(r)
}

impl ServerReading {
    /// `self` and `other` (another server at the same moment) added.
    pub fn add(&mut self, other: &ServerReading) {
        let add = |a: &mut Option<f64>, b: Option<f64>| {
            if let Some(b) = b {
                *a.get_or_insert(0.0) += b;
            }
        };
        add(&mut self.running, other.running);
        add(&mut self.waiting, other.waiting);
        add(&mut self.kv_usage, other.kv_usage);
        self.kv_servers += other.kv_servers;
        add(&mut self.preemptions, other.preemptions);
        add(&mut self.prefix_queries, other.prefix_queries);
        add(&mut self.prefix_hits, other.prefix_hits);
        add(&mut self.prompt_tokens, other.prompt_tokens);
        add(&mut self.generation_tokens, other.generation_tokens);
        for (mine, theirs) in [(&mut self.ttft, &other.ttft), (&mut self.itl, &other.itl)] {
            for &(le, c) in theirs {
                match mine.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, m)) => *m += c,
                    None => mine.push((le, c)),
                }
            }
            mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
}

/// The `q` quantile (seconds) of cumulative `buckets`, linear within its bucket (as
/// Prometheus' `histogram_quantile`); `None` without observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, c);
    }
    Some(prev.0)
}

/// The point's server figures over `[from, to]` (Unix nanoseconds): gauges averaged over
/// the readings inside it, counters and histograms the change from the last reading at or
/// before `from` (else the first) to the last inside it.
pub fn figures(readings: &[ServerReading], from: i64, to: i64) -> Option<ServerFigures> {
    let inside: Vec<&ServerReading> = readings
        .iter()
        .filter(|r| r.unix_nanos >= from && r.unix_nanos <= to)
        .collect();
    let last = *inside.last()?;
    let first = readings
        .iter()
        .rev()
        .find(|r| r.unix_nanos <= from)
        .unwrap_or(inside[0]);
    let mean = |f: fn(&ServerReading) -> Option<f64>| {
        let v: Vec<f64> = inside.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    // The readings the changes are taken over, in order: a counter that went down
    // between any two was reset (a server restarted), and its change is not known.
    let span: Vec<&ServerReading> = std::iter::once(first)
        .chain(
            inside
                .iter()
                .copied()
                .filter(|r| r.unix_nanos > first.unix_nanos),
        )
        .collect();
    let monotonic = |f: &dyn Fn(&ServerReading) -> Vec<f64>| {
        span.windows(2).all(|w| {
            let (a, b) = (f(w[0]), f(w[1]));
            a.len() != b.len() || a.iter().zip(&b).all(|(x, y)| y >= x)
        })
    };
    let delta = |f: fn(&ServerReading) -> Option<f64>| {
        let steady = monotonic(&|r: &ServerReading| f(r).into_iter().collect());
        Some(f(last)? - f(first)?).filter(|_| steady)
    };
    let counts = |h: &[(f64, f64)]| h.iter().map(|b| b.1).collect::<Vec<f64>>();
    let ttft_steady = monotonic(&|r: &ServerReading| counts(&r.ttft));
    let itl_steady = monotonic(&|r: &ServerReading| counts(&r.itl));
    let diff = |a: &[(f64, f64)], b: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let d: Vec<(f64, f64)> = a
            .iter()
            .map(|&(le, c)| {
                let before = b.iter().find(|(x, _)| *x == le).map_or(0.0, |p| p.1);
                (le, c - before)
            })
            .collect();
        if d.iter().any(|(_, c)| *c < 0.0) {
            Vec::new()
        } else {
            d
        }
    };
    let ttft = if ttft_steady {
        diff(&last.ttft, &first.ttft)
    } else {
        Vec::new()
    };
    let itl = if itl_steady {
        diff(&last.itl, &first.itl)
    } else {
        Vec::new()
    };
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    let hits = delta(|r| r.prefix_hits);
    let queries = delta(|r| r.prefix_queries);
    Some(ServerFigures {
        mean_running: mean(|r| r.running),
        mean_waiting: mean(|r| r.waiting),
        mean_kv_usage: mean(|r| r.kv_usage.map(|k| k / f64::from(r.kv_servers.max(1)))),
        preemptions: delta(|r| r.preemptions),
        prompt_tokens: delta(|r| r.prompt_tokens),
        generation_tokens: delta(|r| r.generation_tokens),
        prefix_cache_hit_rate: hits
            .zip(queries)
            .filter(|(_, q)| *q > 0.0)
            .map(|(h, q)| h / q),
        ttft_p50_ms: ms(quantile(&ttft, 0.5)),
        ttft_p99_ms: ms(quantile(&ttft, 0.99)),
        itl_p50_ms: ms(quantile(&itl, 0.5)),
        itl_p99_ms: ms(quantile(&itl, 0.99)),
        readings: inside.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn page(running: f64, hits: f64, queries: f64, fast: f64, all: f64) -> String {
        format!(
            "vllm:num_requests_running{{model_name=\"m\"}} {running}\n\
             vllm:prefix_cache_hits_total{{model_name=\"m\"}} {hits}\n\
             vllm:prefix_cache_queries_total{{model_name=\"m\"}} {queries}\n\
             vllm:time_to_first_token_seconds_bucket{{le=\"0.1\",model_name=\"m\"}} {fast}\n\
             vllm:time_to_first_token_seconds_bucket{{le=\"0.2\",model_name=\"m\"}} {all}\n\
             vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",model_name=\"m\"}} {all}\n"
        )
    }

    #[test]
    fn gauges_average_and_counters_and_histograms_difference_over_the_window() {
        let readings: Vec<ServerReading> = [
            (0, page(0.0, 0.0, 0.0, 0.0, 0.0)),
            (S, page(10.0, 50.0, 100.0, 10.0, 10.0)),
            (2 * S, page(20.0, 150.0, 200.0, 10.0, 30.0)),
        ]
        .into_iter()
        .map(|(t, p)| read(&p, t).expect("known series"))
        .collect();
        let f = figures(&readings, S / 2, 2 * S).expect("inside");
        assert_eq!(f.mean_running, Some(15.0));
        assert_eq!(f.prefix_cache_hit_rate, Some(0.75));
        // 30 first tokens in the window: 10 under 100 ms, 20 in (100, 200] ms.
        let p50 = f.ttft_p50_ms.expect("p50");
        assert!((p50 - 125.0).abs() < 1e-9, "{p50}");
        assert_eq!(f.mean_waiting, None);
        assert!(read("up 1\n", 0).is_none());
        // A server that restarted: its counters went down, their change is not known.
        let mut restarted = readings.clone();
        restarted.push(read(&page(5.0, 1.0, 2.0, 1.0, 1.0), 3 * S).expect("page"));
        let f = figures(&restarted, S / 2, 3 * S).expect("inside");
        assert_eq!((f.prefix_cache_hit_rate, f.ttft_p50_ms), (None, None));
        // Two engines of one server report KV use each: averaged, not summed.
        let two = "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.7\n";
        let k = read(two, 0).expect("kv").kv_usage.expect("kv");
        assert!((k - 0.6).abs() < 1e-12, "{k}");
        assert!(figures(&readings, 3 * S, 4 * S).is_none());
    }

    #[test]
    fn tensorrt_llm_and_dynamo_pages_are_read_under_their_own_names() {
        let trt = "trtllm_num_requests_running{model_name=\"m\"} 7\n\
            trtllm_num_requests_waiting{model_name=\"m\"} 2\n\
            trtllm_kv_cache_utilization{model_name=\"m\"} 0.25\n\
            trtllm_time_to_first_token_seconds_bucket{le=\"0.1\"} 3\n\
            trtllm_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4\n";
        let r = read(trt, 0).expect("trt-llm");
        assert_eq!(
            (r.running, r.waiting, r.kv_usage),
            (Some(7.0), Some(2.0), Some(0.25))
        );
        assert_eq!(r.ttft, vec![(0.1, 3.0), (f64::INFINITY, 4.0)]);
        let dynamo = "dynamo_frontend_inflight_requests{model=\"m\"} 12\n\
            dynamo_frontend_queued_requests{model=\"m\"} 4\n\
            dynamo_frontend_inter_token_latency_seconds_bucket{model=\"m\",le=\"0.01\"} 9\n";
        let r = read(dynamo, 0).expect("dynamo");
        assert_eq!(
            (r.running, r.waiting),
            (Some(8.0), Some(4.0)),
            "in flight less queued"
        );
        assert_eq!(r.itl, vec![(0.01, 9.0)]);
    }
}
