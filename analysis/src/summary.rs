//! What a merged point means in numbers: throughputs over the measurement window and
//! mean/median/std/p90/p99/p99.9 of each latency metric, read from merged histograms.
//! Keys follow vLLM bench serve (`mean_ttft_ms`, `p99.9_e2el_ms`, …) so results compare
//! line for line; DESIGN.md §5 defines each metric.

use rackload_proto::histogram::{HistogramError, LatencySet, decode};
use rackload_proto::v1::{Metric, PointResult};
use serde_json::{Map, Value, json};

/// The metrics reported, with their key names, in vLLM's order.
pub(crate) const REPORTED: [(Metric, &str); 4] = [
    (Metric::Ttft, "ttft"),
    (Metric::Tpot, "tpot"),
    (Metric::Itl, "itl"),
    (Metric::E2el, "e2el"),
];

/// Metrics beyond vLLM's, reported beside them: time to the first output token after any
/// reasoning, and inter-token latency per token (a chunk of k tokens spread over them).
pub(crate) const BEYOND_VLLM: [(Metric, &str); 2] = [
    (Metric::Ttfo, "ttfo"),
    (Metric::ItlPerToken, "itl_per_token"),
];

/// The key name of every metric with one (`histograms.hlog` tags, `histogram_counts`).
pub(crate) fn metric_name(metric: Metric) -> Option<&'static str> {
    REPORTED
        .iter()
        .chain(&BEYOND_VLLM)
        .chain(&OPEN_LOOP)
        .find(|(m, _)| *m == metric)
        .map(|(_, n)| *n)
}

/// Open-loop metrics, reported when recorded: how late sends were against their schedule,
/// and latencies measured from the intended send instant (coordinated-omission corrected).
pub(crate) const OPEN_LOOP: [(Metric, &str); 3] = [
    (Metric::ScheduleLag, "schedule_lag"),
    (Metric::TtftIntended, "ttft_from_intended"),
    (Metric::E2elIntended, "e2el_from_intended"),
];

/// Percentiles reported besides the median, with vLLM's key spelling.
pub(crate) const PERCENTILES: [(f64, &str); 3] = [(0.90, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// Summary statistics of one metric, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Stats {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Stats {
        if h.is_empty() {
            return Stats::default();
        }
        let ms = |us: f64| us / 1000.0;
        // The middle of the value's bucket: within ±0.05% of the recorded value (3
        // significant digits), without the upward bias of the bucket's top edge.
        let q = |p: f64| ms(h.median_equivalent(h.value_at_quantile(p)) as f64);
        Stats {
            count: h.len(),
            mean: ms(h.mean()),
            median: q(0.5),
            std: ms(h.stdev()),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
        }
    }
}

/// A point decoded: its counters and merged latency histograms.
#[derive(Debug)]
pub struct PointSummary<'a> {
    pub point: &'a PointResult,
    pub lat: LatencySet,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A point's measured energy, of its GPUs or of its whole nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Energy {
    /// Mean of the summed power of every measured GPU (or node) over the window.
    pub power_w: f64,
    pub energy_j: f64,
    /// GPUs (or nodes) measured.
    pub meters: u32,
    /// Per input and output token, and per output token (`None` without tokens).
    pub j_per_token: Option<f64>,
    pub j_per_output_token: Option<f64>,
}

impl<'a> PointSummary<'a> {
    pub fn new(point: &'a PointResult) -> Result<PointSummary<'a>, HistogramError> {
        let mut lat = LatencySet::default();
        for m in &point.histograms {
            decode(m)?;
        }
        lat.merge_wire(&point.histograms)?;
        Ok(PointSummary { point, lat })
    }

    pub fn stats(&self, metric: Metric) -> Stats {
        self.lat.get(metric).map(Stats::of).unwrap_or_default()
    }

    pub fn completed(&self) -> u64 {
        self.point.counters.as_ref().map_or(0, |c| c.completed)
    }

    pub fn failed(&self) -> u64 {
        self.point.counters.as_ref().map_or(0, |c| c.failed())
    }

    pub fn input_tokens(&self) -> u64 {
        self.point.counters.as_ref().map_or(0, |c| c.input_tokens)
    }

    pub fn output_tokens(&self) -> u64 {
        self.point.counters.as_ref().map_or(0, |c| c.output_tokens)
    }

    fn per_second(&self, n: u64) -> f64 {
        if self.point.duration_s > 0.0 {
            n as f64 / self.point.duration_s
        } else {
            0.0
        }
    }

    pub fn request_throughput(&self) -> f64 {
        self.per_second(self.completed())
    }

    /// The point's measured GPU energy and what it cost per token; `None` when its GPUs
    /// were not measured.
    pub fn energy(&self) -> Option<Energy> {
        let p = self.point;
        self.energy_of(p.gpu_power_w, p.energy_j, p.gpus_measured)
    }

    /// The same for its whole nodes (BMCs over Redfish).
    pub fn node_energy(&self) -> Option<Energy> {
        let p = self.point;
        self.energy_of(p.node_power_w, p.node_energy_j, p.nodes_measured)
    }

    fn energy_of(&self, power: Option<f64>, energy: Option<f64>, meters: u32) -> Option<Energy> {
        let (power_w, energy_j) = power.zip(energy)?;
        let per = |tokens: u64| (tokens > 0).then(|| energy_j / tokens as f64);
        Some(Energy {
            power_w,
            energy_j,
            meters,
            j_per_token: per(self.input_tokens() + self.output_tokens()),
            j_per_output_token: per(self.output_tokens()),
        })
    }

    /// vLLM's request goodput: completed requests that met every SLO, per second; `None`
    /// when the run set no SLO.
    pub fn request_goodput(&self) -> Option<f64> {
        self.point
            .goodput
            .map(|_| self.per_second(self.point.counters.as_ref().map_or(0, |c| c.good_completed)))
    }

    pub fn output_throughput(&self) -> f64 {
        self.per_second(self.output_tokens())
    }

    pub fn total_token_throughput(&self) -> f64 {
        self.per_second(self.input_tokens() + self.output_tokens())
    }

    /// Reasoning tokens of completed requests.
    pub fn reasoning_tokens(&self) -> u64 {
        self.point
            .counters
            .as_ref()
            .map_or(0, |c| c.reasoning_tokens)
    }

    /// Output tokens per chunk over completed requests (1 = a token per event; more with
    /// stream intervals or speculative decoding, where it is an acceptance proxy).
    pub fn mean_tokens_per_chunk(&self) -> f64 {
        let chunks = self.point.counters.as_ref().map_or(0, |c| c.output_chunks);
        if chunks == 0 {
            return 0.0;
        }
        self.output_tokens() as f64 / chunks as f64
    }

    /// `mean_ttft_ms`, `median_ttft_ms`, `std_ttft_ms`, `p90_ttft_ms`, … for every metric
    /// (vLLM's, then TTFO and per-token ITL).
    pub(crate) fn latency_keys(&self, out: &mut Map<String, Value>) {
        for (metric, name) in REPORTED.into_iter().chain(BEYOND_VLLM) {
            let s = self.stats(metric);
            out.insert(format!("mean_{name}_ms"), json!(round3(s.mean)));
            out.insert(format!("median_{name}_ms"), json!(round3(s.median)));
            out.insert(format!("std_{name}_ms"), json!(round3(s.std)));
            for ((_, key), v) in PERCENTILES.iter().zip([s.p90, s.p99, s.p999]) {
                out.insert(format!("{key}_{name}_ms"), json!(round3(v)));
            }
        }
    }

    /// The point as it appears in `run.json`'s `points`.
    pub fn run_json(&self) -> Value {
        let p = self.point;
        let c = p.counters.clone().unwrap_or_default();
        let mut o = Map::new();
        o.insert("label".into(), json!(p.label));
        o.insert("max_concurrency".into(), json!(p.max_concurrency));
        o.insert("num_prompts".into(), json!(p.num_prompts));
        o.insert("warmup_prompts".into(), json!(p.warmup_prompts));
        if p.request_rate > 0.0 {
            o.insert("request_rate".into(), json!(p.request_rate));
        }
        // sent == completed + failed + lost
        o.insert("sent".into(), json!(c.sent));
        o.insert("completed".into(), json!(c.completed));
        o.insert("failed".into(), json!(c.failed()));
        o.insert("lost".into(), json!(p.lost));
        o.insert("degraded".into(), json!(p.degraded));
        o.insert("lost_workers".into(), json!(p.lost_workers));
        o.insert(
            "gate".into(),
            json!(if p.gate_failed { "fail" } else { "pass" }),
        );
        o.insert("failed_by_class".into(), json!(c.failed_by_class));
        o.insert("total_input_tokens".into(), json!(c.input_tokens));
        o.insert("total_output_tokens".into(), json!(c.output_tokens));
        // Completed requests without a usage block: their output tokens are chunk counts.
        o.insert(
            "output_tokens_counted_from_chunks".into(),
            json!(c.usage_missing),
        );
        o.insert("duration_s".into(), json!(round3(p.duration_s)));
        o.insert(
            "request_throughput".into(),
            json!(round3(self.request_throughput())),
        );
        o.insert(
            "request_goodput".into(),
            json!(self.request_goodput().map(round3)),
        );
        if self.point.goodput.is_some() {
            o.insert("good_completed".into(), json!(c.good_completed));
        }
        self.measurement_keys(&mut o);
        o.insert(
            "output_throughput".into(),
            json!(round3(self.output_throughput())),
        );
        o.insert(
            "total_token_throughput".into(),
            json!(round3(self.total_token_throughput())),
        );
        o.insert(
            "total_reasoning_tokens".into(),
            json!(self.reasoning_tokens()),
        );
        o.insert("total_output_chunks".into(), json!(c.output_chunks));
        o.insert(
            "mean_tokens_per_chunk".into(),
            json!(round3(self.mean_tokens_per_chunk())),
        );
        self.latency_keys(&mut o);
        let counts: Map<String, Value> = REPORTED
            .iter()
            .chain(&BEYOND_VLLM)
            .map(|&(m, name)| (name.to_owned(), json!(self.stats(m).count)))
            .collect();
        o.insert("histogram_counts".into(), Value::Object(counts));
        o.insert("workers".into(), self.workers_json());
        o.insert("client_saturated".into(), json!(p.client_saturated));
        o.insert("late_starts".into(), json!(c.late_starts));
        o.insert("output_len_mismatch".into(), json!(c.output_len_mismatch));
        for (metric, name) in OPEN_LOOP {
            let s = self.stats(metric);
            if s.count == 0 {
                continue;
            }
            o.insert(format!("mean_{name}_ms"), json!(round3(s.mean)));
            o.insert(format!("median_{name}_ms"), json!(round3(s.median)));
            o.insert(format!("p99_{name}_ms"), json!(round3(s.p99)));
        }
        if !p.endpoints.is_empty() {
            let eps: Result<Vec<Value>, HistogramError> =
                p.endpoints.iter().map(|e| self.endpoint_json(e)).collect();
            o.insert(
                "endpoints".into(),
                eps.map(Value::Array)
                    .unwrap_or_else(|e| json!(format!("unreadable: {e}"))),
            );
        }
        Value::Object(o)
    }

    /// Each worker's share of the point, as `run.json`'s `points[].workers`.
    fn workers_json(&self) -> Value {
        let p = self.point;
        Value::Array(
            p.workers
                .iter()
                .map(|w| {
                    let wc = w.counters.clone().unwrap_or_default();
                    json!({
                        "id": w.worker_id,
                        "concurrency": w.concurrency,
                        "sent": wc.sent,
                        "completed": wc.completed,
                        "failed": wc.failed(),
                        "lost": w.lost,
                        "lost_requests": w.lost_requests,
                        "cpu_percent": round3(w.cpu_percent),
                        "duration_s": round3(w.duration_s),
                        "saturated_intervals": w.saturated_intervals,
                        "saturation_reason": w.saturation_reason,
                    })
                })
                .collect(),
        )
    }

    /// One endpoint's share of the point: counters, throughput over the point's window,
    /// latency keys.
    fn endpoint_json(
        &self,
        e: &rackload_proto::v1::EndpointReport,
    ) -> Result<Value, HistogramError> {
        let mut lat = LatencySet::default();
        lat.merge_wire(&e.histograms)?;
        let c = e.counters.clone().unwrap_or_default();
        let mut o = Map::new();
        o.insert("base_url".into(), json!(e.base_url));
        o.insert("sent".into(), json!(c.sent));
        o.insert("completed".into(), json!(c.completed));
        o.insert("failed".into(), json!(c.failed()));
        o.insert("failed_by_class".into(), json!(c.failed_by_class));
        o.insert("total_output_tokens".into(), json!(c.output_tokens));
        o.insert(
            "output_throughput".into(),
            json!(round3(self.per_second(c.output_tokens))),
        );
        for (metric, name) in REPORTED {
            let s = lat.get(metric).map(Stats::of).unwrap_or_default();
            o.insert(format!("mean_{name}_ms"), json!(round3(s.mean)));
            o.insert(format!("median_{name}_ms"), json!(round3(s.median)));
            o.insert(format!("p99_{name}_ms"), json!(round3(s.p99)));
        }
        Ok(Value::Object(o))
    }

    /// The point as vLLM bench serve writes its result file. `arrival` is the run's arrival
    /// process as `run.json` records it: its rate (the point's own, when it swept rates) and
    /// burstiness are the file's `request_rate` and `burstiness`; a closed loop is `"inf"`.
    pub(crate) fn vllm_json(
        &self,
        date: &str,
        endpoint: &str,
        model: &str,
        arrival: &Value,
    ) -> Value {
        let p = self.point;
        let mut o = Map::new();
        o.insert("date".into(), json!(date));
        let backend = if endpoint.ends_with("chat/completions") {
            "openai-chat"
        } else {
            "openai"
        };
        o.insert("backend".into(), json!(backend));
        o.insert("endpoint_type".into(), json!(backend));
        o.insert("label".into(), json!(p.label));
        o.insert("model_id".into(), json!(model));
        o.insert("tokenizer_id".into(), Value::Null);
        o.insert("num_prompts".into(), json!(p.num_prompts));
        let open = matches!(
            arrival["kind"].as_str(),
            Some("poisson" | "gamma" | "constant")
        );
        let rate = (p.request_rate > 0.0)
            .then_some(p.request_rate)
            .or_else(|| arrival["rate"].as_f64())
            .filter(|_| open);
        o.insert(
            "request_rate".into(),
            rate.map_or_else(|| json!("inf"), |r| json!(r)),
        );
        let burstiness = match arrival["kind"].as_str() {
            // vLLM's constant rate is gamma with infinite burstiness; JSON has no infinity.
            Some("constant") => json!("inf"),
            _ => json!(arrival["burstiness"].as_f64().unwrap_or(1.0)),
        };
        o.insert("burstiness".into(), burstiness);
        o.insert("max_concurrency".into(), json!(p.max_concurrency));
        o.insert("duration".into(), json!(p.duration_s));
        o.insert("completed".into(), json!(self.completed()));
        o.insert("failed".into(), json!(self.failed()));
        o.insert("total_input_tokens".into(), json!(self.input_tokens()));
        o.insert("total_output_tokens".into(), json!(self.output_tokens()));
        o.insert(
            "request_throughput".into(),
            json!(self.request_throughput()),
        );
        o.insert("request_goodput".into(), json!(self.request_goodput()));
        o.insert("output_throughput".into(), json!(self.output_throughput()));
        o.insert(
            "total_token_throughput".into(),
            json!(self.total_token_throughput()),
        );
        self.latency_keys(&mut o);
        Value::Object(o)
    }

    /// run.json's keys for what was measured besides the load: the servers' own figures
    /// and the GPUs' energy.
    fn measurement_keys(&self, o: &mut serde_json::Map<String, Value>) {
        let p = self.point;
        if let Some(s) = &p.server {
            // What the servers said of themselves over the window (absent: not published).
            let figures = [
                ("mean_running", s.mean_running),
                ("mean_waiting", s.mean_waiting),
                ("mean_kv_usage", s.mean_kv_usage),
                ("preemptions", s.preemptions),
                ("prompt_tokens", s.prompt_tokens),
                ("generation_tokens", s.generation_tokens),
                ("prefix_cache_hit_rate", s.prefix_cache_hit_rate),
                ("ttft_p50_ms", s.ttft_p50_ms),
                ("ttft_p99_ms", s.ttft_p99_ms),
                ("itl_p50_ms", s.itl_p50_ms),
                ("itl_p99_ms", s.itl_p99_ms),
            ];
            let mut server: serde_json::Map<String, Value> = figures
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), json!(round3(v)))))
                .collect();
            server.insert("readings".into(), json!(s.readings));
            o.insert("server".into(), Value::Object(server));
        }
        let meters = [
            (
                self.energy(),
                [
                    "gpu_power_w",
                    "energy_j",
                    "gpus_measured",
                    "j_per_token",
                    "j_per_output_token",
                ],
            ),
            (
                self.node_energy(),
                [
                    "node_power_w",
                    "node_energy_j",
                    "nodes_measured",
                    "node_j_per_token",
                    "node_j_per_output_token",
                ],
            ),
        ];
        for (e, [power, energy, count, per_token, per_output]) in meters {
            if let Some(e) = e {
                o.insert(power.into(), json!(round3(e.power_w)));
                o.insert(energy.into(), json!(round3(e.energy_j)));
                o.insert(count.into(), json!(e.meters));
                o.insert(per_token.into(), json!(e.j_per_token));
                o.insert(per_output.into(), json!(e.j_per_output_token));
            }
        }
    }

    /// The summary table's rows for the same.
    fn measurement_rows(&self, rows: &mut Vec<(&'static str, String)>) {
        if let Some(s) = &self.point.server {
            for (k, v) in [
                ("Server mean running requests:", s.mean_running),
                ("Server mean waiting requests:", s.mean_waiting),
                ("Server median TTFT (ms):", s.ttft_p50_ms),
                ("Server P99 TTFT (ms):", s.ttft_p99_ms),
            ] {
                if let Some(v) = v {
                    rows.push((k, format!("{v:.2}")));
                }
            }
        }
        if let Some(e) = self.energy() {
            rows.push(("Mean GPU power (W, measured):", format!("{:.1}", e.power_w)));
            rows.push(("GPU energy (J):", format!("{:.1}", e.energy_j)));
            if let Some(j) = e.j_per_output_token {
                rows.push(("Energy per output token (J):", format!("{j:.4}")));
            }
        }
        if let Some(e) = self.node_energy() {
            rows.push((
                "Mean node power (W, measured):",
                format!("{:.1}", e.power_w),
            ));
            if let Some(j) = e.j_per_output_token {
                rows.push(("Node energy per output token (J):", format!("{j:.4}")));
            }
        }
    }

    /// The summary table, in vLLM bench serve's words and layout.
    pub fn table(&self) -> String {
        let mut t = Table(String::new());
        t.rule(" Serving Benchmark Result ", '=');
        let mut rows = vec![
            ("Successful requests:", self.completed().to_string()),
            ("Failed requests:", self.failed().to_string()),
            (
                "Maximum request concurrency:",
                self.point.max_concurrency.to_string(),
            ),
            (
                "Benchmark duration (s):",
                format!("{:.2}", self.point.duration_s),
            ),
            ("Total input tokens:", self.input_tokens().to_string()),
            ("Total generated tokens:", self.output_tokens().to_string()),
            (
                "Request throughput (req/s):",
                format!("{:.2}", self.request_throughput()),
            ),
            (
                "Output token throughput (tok/s):",
                format!("{:.2}", self.output_throughput()),
            ),
            (
                "Total Token throughput (tok/s):",
                format!("{:.2}", self.total_token_throughput()),
            ),
        ];
        if let Some(g) = self.request_goodput() {
            // Where vLLM prints it: after the request throughput.
            rows.insert(7, ("Request goodput (req/s):", format!("{g:.2}")));
        }
        self.measurement_rows(&mut rows);
        for (k, v) in rows {
            t.line(k, v);
        }
        let sections = [
            (Metric::Ttft, "Time to First Token", "TTFT"),
            (
                Metric::Tpot,
                "Time per Output Token (excl. 1st token)",
                "TPOT",
            ),
            (Metric::Itl, "Inter-token Latency", "ITL"),
            (Metric::E2el, "End-to-end Latency", "E2EL"),
        ];
        for (metric, title, short) in sections {
            let s = self.stats(metric);
            t.rule(title, '-');
            t.line(&format!("Mean {short} (ms):"), format!("{:.2}", s.mean));
            t.line(&format!("Median {short} (ms):"), format!("{:.2}", s.median));
            t.line(&format!("P99 {short} (ms):"), format!("{:.2}", s.p99));
            if metric == Metric::Ttft {
                self.reasoning_rows(&mut t);
            }
            if metric == Metric::Itl {
                self.per_token_rows(&mut t);
            }
        }
        self.open_loop_rows(&mut t);
        self.endpoint_rows(&mut t);
        let mut t = t.0;
        t.push_str(&"=".repeat(50));
        t.push('\n');
        let mismatch = self
            .point
            .counters
            .as_ref()
            .map_or(0, |c| c.output_len_mismatch);
        if mismatch > 0 {
            use std::fmt::Write;
            let _ = writeln!(
                t,
                "warning: {mismatch} of {} completed requests came back with another length than the one forced with ignore_eos: the server may be ignoring it, and throughput figures are optimistic",
                self.completed()
            );
        }
        for w in &self.point.workers {
            if w.saturated_intervals > 0 {
                use std::fmt::Write;
                let _ = writeln!(
                    t,
                    "warning: worker {} was saturated in {} interval(s): {}; these numbers measure the client, not the target",
                    w.worker_id, w.saturated_intervals, w.saturation_reason
                );
            }
        }
        t
    }

    /// A reasoning model's answer: TTFO and the reasoning share of the output.
    fn reasoning_rows(&self, t: &mut Table) {
        let reasoning = self.reasoning_tokens();
        if reasoning == 0 {
            return;
        }
        let s = self.stats(Metric::Ttfo);
        t.rule("Time to First Output Token (after reasoning)", '-');
        t.line("Mean TTFO (ms):", format!("{:.2}", s.mean));
        t.line("Median TTFO (ms):", format!("{:.2}", s.median));
        t.line("P99 TTFO (ms):", format!("{:.2}", s.p99));
        t.line("Reasoning tokens:", reasoning.to_string());
    }

    /// Chunks of several tokens: the ITL per token beside the per-chunk one.
    fn per_token_rows(&self, t: &mut Table) {
        let per_chunk = self.mean_tokens_per_chunk();
        if per_chunk <= 1.0 {
            return;
        }
        let s = self.stats(Metric::ItlPerToken);
        t.line("Mean tokens per chunk:", format!("{per_chunk:.2}"));
        t.line("Median ITL per token (ms):", format!("{:.2}", s.median));
        t.line("P99 ITL per token (ms):", format!("{:.2}", s.p99));
    }

    /// An open loop's schedule: late starts, lag, TTFT from the intended send.
    fn open_loop_rows(&self, t: &mut Table) {
        let lag = self.stats(Metric::ScheduleLag);
        if lag.count == 0 {
            return;
        }
        t.rule("Open-loop Schedule", '-');
        let late = self.point.counters.as_ref().map_or(0, |c| c.late_starts);
        t.line("Late starts (> 5 ms):", late.to_string());
        t.line("P99 schedule lag (ms):", format!("{:.2}", lag.p99));
        let ttft = self.stats(Metric::TtftIntended);
        t.line(
            "P99 TTFT from intended send (ms):",
            format!("{:.2}", ttft.p99),
        );
    }

    /// One line per target endpoint, when there are several.
    fn endpoint_rows(&self, t: &mut Table) {
        if self.point.endpoints.is_empty() {
            return;
        }
        t.rule("Per Endpoint", '-');
        for e in &self.point.endpoints {
            let c = e.counters.clone().unwrap_or_default();
            let mut lat = LatencySet::default();
            let ttft = lat
                .merge_wire(&e.histograms)
                .ok()
                .and_then(|()| lat.get(Metric::Ttft).map(Stats::of))
                .unwrap_or_default();
            t.line(
                &format!("{}:", e.base_url),
                format!(
                    "{} ok, {} failed, {:.0} tok/s, median TTFT {:.2} ms",
                    c.completed,
                    c.failed(),
                    self.per_second(c.output_tokens),
                    ttft.median
                ),
            );
        }
    }
}

/// vLLM's summary layout: `key value` lines under centred rules.
struct Table(String);

impl Table {
    fn line(&mut self, k: &str, v: String) {
        use std::fmt::Write;
        let _ = writeln!(self.0, "{k:<40} {v:<10}");
    }

    fn rule(&mut self, title: &str, c: char) {
        use std::fmt::Write;
        let _ = writeln!(self.0, "{}", center(title, 50, c));
    }
}

fn center(s: &str, width: usize, fill: char) -> String {
    let n = s.chars().count();
    if n >= width {
        return s.to_owned();
    }
    let left = (width - n) / 2;
    let right = width - n - left;
    format!(
        "{}{s}{}",
        fill.to_string().repeat(left),
        fill.to_string().repeat(right)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackload_proto::v1::Counters;

    #[test]
    fn throughputs_and_keys() {
        let mut lat = LatencySet::default();
        for v in [10_000u64, 20_000, 30_000] {
            lat.hists[0].record(v).expect("in range");
        }
        let point = PointResult {
            label: "c4".into(),
            max_concurrency: 4,
            duration_s: 2.0,
            counters: Some(Counters {
                completed: 3,
                input_tokens: 300,
                output_tokens: 30,
                ..Counters::default()
            }),
            histograms: lat.to_wire().expect("encode"),
            ..PointResult::default()
        };
        let s = PointSummary::new(&point).expect("decode");
        let v = s.run_json();
        assert_eq!(v["request_throughput"], json!(1.5));
        assert_eq!(v["total_token_throughput"], json!(165.0));
        let median = v["median_ttft_ms"].as_f64().unwrap_or(0.0);
        assert!((median - 20.0).abs() <= 0.02, "{median}");
        assert_eq!(v["histogram_counts"]["ttft"], json!(3));
        assert!(v.get("p99.9_e2el_ms").is_some());
        assert!(
            s.table()
                .contains("Successful requests:                     3")
        );
        assert_eq!(center(" x ", 7, '='), "== x ==");
    }
}
