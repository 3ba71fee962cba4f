//! The simulated rack behaves like a batching inference server under load: throughput
//! rises and saturates while interactivity falls, Little's law holds on its own gauges, a
//! full KV cache makes requests wait, a queue bound answers 429, a stream interval packs
//! tokens, and `/metrics` speaks vLLM's names. A small custom profile keeps every run short.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::path::Path;
use std::time::{Duration, Instant};

use rackload_tests::*;
use serde_json::Value;

/// A fast profile: 2 ms + 0.2 ms per sequence per step, so a batch of 256 is ~25× slower
/// per step than a batch of 1 and saturation shows within a few seconds.
fn profile(dir: &Path, kv_cache_tokens: u64) -> String {
    let path = dir.join(format!("tiny-{kv_cache_tokens}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"tiny\"\ngpus_per_replica = 1\nmax_num_seqs = 256\n\
             max_num_batched_tokens = 4096\nkv_cache_tokens = {kv_cache_tokens}\n\
             step_fixed_us = 2000\nstep_per_seq_us = 200\nstep_per_kv_token_ns = 0\n\
             prefill_tokens_per_s = 2000000\n"
        ),
    )
    .expect("write profile");
    path.to_str().expect("utf-8").to_owned()
}

/// A sim with the small profile (and `extra` flags), started on port 0.
fn start_profiled_sim(
    tag: &str,
    dir: &Path,
    kv_cache_tokens: u64,
    extra: &[&str],
) -> (Proc, String) {
    let profile = profile(dir, kv_cache_tokens);
    let mut args = vec!["--profile", profile.as_str()];
    args.extend(extra);
    start_sim(tag, &args)
}

fn run_on(tag: &str, f: &Fabric, workers: usize, args: &[&str], results: &Path) -> Value {
    let mut cmd = rackload(tag);
    cmd.args(["run", "--coordinator", &f.url, "--workers"])
        .arg(workers.to_string())
        .args(args)
        .arg("--results-dir")
        .arg(results);
    let out = run_with_timeout(cmd, 120.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    run_json(results).expect("run.json")
}

/// `name{...} value` from a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

const LENGTHS: [&str; 6] = [
    "--random-input-len",
    "64",
    "--random-output-len",
    "32",
    "--random-range-ratio",
    "1",
];

#[test]
fn a_concurrency_sweep_saturates_throughput_while_interactivity_falls() {
    let tag = new_tag("sim-sweep");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, url) = start_profiled_sim(&tag, dir.path(), 1 << 24, &[]);
    let f = start_fabric(&tag, 2);
    let results = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--base-url", &url, "--max-concurrency", "1,4,16,64,256"];
    args.extend(LENGTHS);
    // Each point sends for 3 s (the ramp included: no warmup).
    args.extend(["--duration", "3", "--warmup", "0"]);
    let run = run_on(&tag, &f, 2, &args, results.path());
    let points = run["points"].as_array().expect("points");
    assert_eq!(points.len(), 5);
    let tput: Vec<f64> = points
        .iter()
        .map(|p| p["output_throughput"].as_f64().expect("tput"))
        .collect();
    let interactivity: Vec<f64> = points
        .iter()
        .map(|p| 1000.0 / p["median_tpot_ms"].as_f64().expect("tpot"))
        .collect();
    eprintln!("throughput {tput:?}\ninteractivity {interactivity:?}");
    for w in tput.windows(2) {
        assert!(
            w[1] > 0.9 * w[0],
            "throughput rises (within noise): {tput:?}"
        );
    }
    for w in interactivity.windows(2) {
        assert!(w[1] < 1.1 * w[0], "interactivity falls: {interactivity:?}");
    }
    // Rises: 16 streams do far more than one; saturates: 256 barely more than 64.
    assert!(tput[2] > 5.0 * tput[0], "{tput:?}");
    assert!(tput[4] < 1.5 * tput[3], "{tput:?}");
    assert!(
        interactivity[4] < interactivity[0] / 5.0,
        "{interactivity:?}"
    );
}

#[test]
fn littles_law_holds_on_the_sims_own_gauges() {
    let tag = new_tag("sim-little");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, url) = start_profiled_sim(&tag, dir.path(), 1 << 24, &[]);
    let f = start_fabric(&tag, 1);
    let results = tempfile::tempdir().expect("tempdir");
    // Poisson at 40 req/s for ~6 s; each request ~32 steps of a few ms.
    let mut args = vec![
        "--base-url",
        &url,
        "--request-rate",
        "40",
        "--num-prompts",
        "240",
    ];
    args.extend(LENGTHS);
    let sampler = {
        let url = url.clone();
        std::thread::spawn(move || {
            // Sample L = running + waiting every 20 ms while requests are in the system.
            let mut samples = Vec::new();
            let start = Instant::now();
            let mut seen = false;
            while start.elapsed() < Duration::from_secs(60) {
                let page = get_text(&url, "/metrics");
                let l = metric(&page, "vllm:num_requests_running")
                    + metric(&page, "vllm:num_requests_waiting");
                let served = metric(&page, "rackload_sim_requests_served_total");
                if l > 0.0 {
                    seen = true;
                }
                if seen {
                    samples.push(l);
                }
                if served >= 240.0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };
    let run = run_on(&tag, &f, 1, &args, results.path());
    let samples = sampler.join().expect("sampler");
    let p = &run["points"][0];
    let lambda = p["request_throughput"].as_f64().expect("λ");
    let w = p["mean_e2el_ms"].as_f64().expect("W") / 1000.0;
    let l = samples.iter().sum::<f64>() / samples.len() as f64;
    eprintln!(
        "L {l:.2} from {} samples; λ {lambda:.2}/s × W {w:.4} s = {:.2}",
        samples.len(),
        lambda * w
    );
    assert!(samples.len() > 50);
    assert!(
        (l - lambda * w).abs() < 0.2 * lambda * w,
        "Little's law: L = {l:.2}, λW = {:.2}",
        lambda * w
    );
}

#[test]
fn a_full_kv_cache_makes_requests_wait_and_ttft_grow() {
    let tag = new_tag("sim-kv");
    let dir = tempfile::tempdir().expect("tempdir");
    // 96 tokens per request (64 in, 32 out): the small cache holds ~8 of 64.
    let (_big, big_url) = start_profiled_sim(&tag, dir.path(), 1 << 24, &[]);
    let (_small, small_url) = start_profiled_sim(&tag, dir.path(), 800, &[]);
    let f = start_fabric(&tag, 1);
    let ttft = |url: &str, sample: bool| {
        let results = tempfile::tempdir().expect("tempdir");
        let mut args = vec![
            "--base-url",
            url,
            "--max-concurrency",
            "64",
            "--num-prompts",
            "192",
            "--warmup",
            "0",
        ];
        args.extend(LENGTHS);
        let waiting = sample.then(|| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut most: f64 = 0.0;
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(30) {
                    let page = get_text(&url, "/metrics");
                    most = most.max(metric(&page, "vllm:num_requests_waiting"));
                    if metric(&page, "rackload_sim_requests_served_total") >= 192.0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (
                    most,
                    metric(&get_text(&url, "/metrics"), "vllm:kv_cache_usage_perc"),
                )
            })
        });
        let run = run_on(&tag, &f, 1, &args, results.path());
        let p = run["points"][0].clone();
        (
            p["median_ttft_ms"].as_f64().expect("ttft"),
            waiting.map(|t| t.join().expect("sampler")),
        )
    };
    let (roomy, _) = ttft(&big_url, false);
    let (cramped, sampled) = ttft(&small_url, true);
    let (most_waiting, _) = sampled.expect("sampled");
    eprintln!(
        "median TTFT: {roomy:.1} ms with room, {cramped:.1} ms with 800 KV tokens; most waiting {most_waiting}"
    );
    assert!(
        most_waiting > 10.0,
        "requests queued for KV: {most_waiting}"
    );
    assert!(cramped > 3.0 * roomy, "TTFT grows: {roomy} vs {cramped}");
}

#[test]
fn queue_bound_stream_interval_and_vllm_metrics() {
    let tag = new_tag("sim-edges");
    let dir = tempfile::tempdir().expect("tempdir");
    // The sim counts prompts with the tokenizer, as a server does; the run's built-in
    // words are one Qwen2.5 token each, so the sim must count 64 per prompt.
    let tokenizer = shared_tokenizer();
    let (_sim, url) = start_profiled_sim(
        &tag,
        dir.path(),
        800,
        &[
            "--max-waiting",
            "4",
            "--stream-interval",
            "4",
            "--tokenizer",
            tokenizer.to_str().expect("utf-8 path"),
        ],
    );
    let f = start_fabric(&tag, 1);
    let results = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "--base-url",
        &url,
        "--max-concurrency",
        "32",
        "--num-prompts",
        "96",
        "--warmup",
        "0",
        "--max-failure-rate",
        "1",
    ];
    args.extend(LENGTHS);
    let run = run_on(&tag, &f, 1, &args, results.path());
    let p = &run["points"][0];
    let rejected = p["failed_by_class"]["http_4xx"].as_u64().unwrap_or(0);
    let completed = count(&p["completed"]);
    assert!(rejected > 0, "429 beyond 4 waiting: {p}");
    assert_eq!(completed + rejected, 96, "{p}");
    // 32 tokens in events of 4: 8 events, so 7 inter-chunk gaps per request; usage says 32.
    assert_eq!(count(&p["total_output_tokens"]), 32 * completed);
    assert_eq!(count(&p["histogram_counts"]["itl"]), 7 * completed);
    assert_eq!(count(&p["output_tokens_counted_from_chunks"]), 0);

    let page = get_text(&url, "/metrics");
    assert_eq!(
        metric(&page, "vllm:generation_tokens_total"),
        (32 * completed) as f64
    );
    assert_eq!(
        metric(&page, "vllm:prompt_tokens_total"),
        (64 * completed) as f64
    );
    assert_eq!(
        metric(&page, "vllm:time_to_first_token_seconds_count"),
        completed as f64
    );
    assert_eq!(
        metric(&page, "vllm:inter_token_latency_seconds_count"),
        (7 * completed) as f64
    );
    assert_eq!(metric(&page, "vllm:num_requests_running"), 0.0);
    assert_eq!(
        metric(&page, "rackload_sim_requests_served_total"),
        completed as f64
    );
    assert!(page.contains("# TYPE vllm:time_to_first_token_seconds histogram"));
    assert!(page.contains("le=\"+Inf\""));
}
