//! Realistic traffic through the real fabric: open-loop arrivals, ShareGPT with the real
//! tokenizer, scenario files with flag overrides, and `rackload workload sample` — each
//! run recorded in `run.json` exactly enough to be reproduced.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::path::{Path, PathBuf};

use rackload_tests::*;
use rackload_workloads::scenario::{DatasetName, WorkloadConfig};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    manifest_dir()
        .join("../workloads/tests/fixtures")
        .join(name)
}

fn run_ok(tag: &str, args: &[&str], results: &Path) -> Value {
    let mut cmd = rackload(tag);
    cmd.args(args).arg("--results-dir").arg(results);
    let out = run_with_timeout(cmd, 90.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    run_json(results).expect("run.json")
}

const FAST_SIM: [&str; 4] = ["--sim-ttft-ms", "5", "--sim-itl-ms", "1"];

/// `--save-detailed`: both workers' per-request records land in one
/// `requests/<point>.jsonl.gz` (one line per request, each index once), and the point file
/// carries vLLM's detailed arrays made from them.
#[test]
fn per_request_records_are_gathered_from_every_worker_into_vllms_detailed_arrays() {
    let tag = new_tag("records");
    let results = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "run",
        "--workers",
        "2",
        "--request-rate",
        "50",
        "--num-prompts",
        "60",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--random-range-ratio",
        "1",
        "--save-detailed",
    ];
    args.extend(FAST_SIM);
    let run = run_ok(&tag, &args, results.path());
    let point = &run["points"][0];
    assert_eq!(count(&point["completed"]), 60);
    let dir = run_dir(results.path()).expect("a run directory");
    let records = jsonl_gz(&dir.join("requests/r50.jsonl.gz"));
    let mut indices: Vec<u64> = records.iter().map(|r| count(&r["index"])).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..60).collect::<Vec<u64>>(), "each request once");
    let workers: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["worker"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for r in &records {
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert_eq!(
            (count(&r["input_tokens"]), count(&r["output_tokens"])),
            (16, 8)
        );
        assert!(
            f("ttft_ms") <= f("ttfo_ms") && f("ttfo_ms") <= f("e2el_ms"),
            "{r}"
        );
        assert!(r["error"].is_null(), "{r}");
        // Sent at or after its scheduled instant (both on the coordinator's clock).
        assert!(f("sent_us") >= f("intended_us") - 1.0, "{r}");
        assert_eq!(r["itl_ms"].as_array().map(Vec::len), Some(7), "{r}");
    }
    let vllm: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("points/r50.json")).expect("point file"),
    )
    .expect("json");
    let ttfts: Vec<f64> = vllm["ttfts"]
        .as_array()
        .expect("ttfts")
        .iter()
        .map(|t| t.as_f64().expect("seconds"))
        .collect();
    assert_eq!(ttfts.len(), 60);
    assert_eq!(vllm["output_lens"].as_array().map(Vec::len), Some(60));
    assert!(
        vllm["itls"]
            .as_array()
            .expect("itls")
            .iter()
            .all(|l| l.as_array().map(Vec::len) == Some(7))
    );
    assert!(
        vllm["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .all(|e| e == "")
    );
    // The arrays agree with the histograms: the mean TTFT of the raw values.
    let mean_ms = ttfts.iter().sum::<f64>() / 60.0 * 1000.0;
    let want = point["mean_ttft_ms"].as_f64().expect("mean ttft");
    assert!((mean_ms - want).abs() <= 0.01 * want, "{mean_ms} vs {want}");
    assert!(vllm.get("request_goodput").is_some(), "vLLM's goodput key");
}

#[test]
fn open_loop_follows_its_poisson_schedule_through_the_fabric() {
    let tag = new_tag("open-loop");
    let results = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "run",
        "--request-rate",
        "40",
        "--num-prompts",
        "40",
        "--random-input-len",
        "32",
        "--random-output-len",
        "8",
        "--seed",
        "11",
    ];
    args.extend(FAST_SIM);
    let run = run_ok(&tag, &args, results.path());
    let point = &run["points"][0];
    assert_eq!(point["label"], "r40");
    assert_eq!(count(&point["completed"]), 40);
    let w = &run["spec"]["workload"];
    assert_eq!(w["arrival"]["kind"], "poisson");
    assert_eq!(w["arrival"]["rate"], 40.0);
    assert_eq!(w["seed"], 11);
    // No request may start before its scheduled instant: the point lasts at least until
    // the last scheduled send.
    let cfg = WorkloadConfig {
        request_rate: Some(40.0),
        random_input_len: Some(32),
        random_output_len: Some(8),
        seed: Some(11),
        ..WorkloadConfig::default()
    };
    let spec = cfg.resolve(Some(40)).expect("same workload");
    let last = spec.schedule(40)[39];
    let duration = point["duration_s"].as_f64().expect("duration");
    assert!(
        duration >= last,
        "duration {duration} < last scheduled send {last}"
    );
    // And each was sent on time: the schedule lag (actual − intended send) of the light
    // load stays small, and few requests count as late starts (> 5 ms behind).
    let lag = |k: &str| {
        point[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {point}"))
    };
    // (Bounds well inside the 25 ms mean gap, loose enough for a busy 2-core machine.)
    assert!(lag("median_schedule_lag_ms") < 10.0 * patience(), "{point}");
    assert!(lag("p99_schedule_lag_ms") < 100.0 * patience(), "{point}");
    assert!(count(&point["late_starts"]) <= 8, "{point}");
    // The files other tools read: vLLM's point file carries the run's rate, and every
    // histogram of the interval log is tagged by its metric (open-loop ones included).
    let dir = run_dir(results.path()).expect("a run directory");
    let vllm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("points/r40.json")).expect("point file"),
    )
    .expect("json");
    assert_eq!(vllm["request_rate"], 40.0, "{vllm}");
    assert_eq!(vllm["burstiness"], 1.0, "{vllm}");
    let hlog = std::fs::read_to_string(dir.join("histograms.hlog")).expect("hlog");
    let tags: Vec<&str> = hlog
        .lines()
        .filter_map(|l| l.strip_prefix("Tag="))
        .filter_map(|l| l.split(',').next())
        .collect();
    for want in [
        "r40/ttft",
        "r40/schedule_lag",
        "r40/ttft_from_intended",
        "r40/e2el_from_intended",
    ] {
        assert!(tags.contains(&want), "{want} not in {tags:?}");
    }
    assert!(!tags.iter().any(|t| t.ends_with("/unknown")), "{tags:?}");
    assert_no_processes_left(&tag);
}

#[test]
fn sharegpt_with_the_real_tokenizer_is_recorded_for_reproduction() {
    let tok = shared_tokenizer();
    let tag = new_tag("sharegpt");
    let results = tempfile::tempdir().expect("tempdir");
    let data = fixture("sharegpt_small.json");
    let (data_s, tok_s) = (
        data.to_string_lossy().into_owned(),
        tok.to_string_lossy().into_owned(),
    );
    let mut args = vec![
        "run",
        "--dataset-name",
        "sharegpt",
        "--dataset-path",
        &data_s,
        "--tokenizer",
        &tok_s,
        "--num-prompts",
        "12",
        "--max-concurrency",
        "3",
        "--seed",
        "2",
    ];
    args.extend(FAST_SIM);
    let run = run_ok(&tag, &args, results.path());
    let lengths = &run["spec"]["workload"]["lengths"];
    assert_eq!(lengths["kind"], "dataset");
    assert_eq!(lengths["name"], "sharegpt");
    assert_eq!(lengths["path"], data_s.as_str());
    assert_eq!(lengths["tokenizer"], tok_s.as_str());
    assert_eq!(lengths["token_counts"], "tokenizer");
    assert_eq!(
        lengths["report"]["kept"], 6,
        "default filters keep 6 of the fixture's 8 two-turn entries: {lengths}"
    );
    assert_eq!(lengths["report"]["oversampled"], true);
    assert!(
        lengths.get("entries").is_none(),
        "run.json keeps provenance, not the bulk"
    );
    let point = &run["points"][0];
    assert_eq!(count(&point["completed"]), 12);
    // Token totals are the tokenizer's counts of the sampled entries.
    let cfg = WorkloadConfig {
        dataset_name: Some(DatasetName::Sharegpt),
        dataset_path: Some(data),
        tokenizer: Some(tok),
        seed: Some(2),
        ..WorkloadConfig::default()
    };
    let spec = cfg.resolve(Some(12)).expect("same workload");
    let (mut input, mut output) = (0u64, 0u64);
    for i in 0..12 {
        let r = spec.request(i).expect("request");
        input += u64::from(r.input_len);
        output += u64::from(r.output_len);
    }
    assert_eq!(count(&point["total_input_tokens"]), input);
    assert_eq!(count(&point["total_output_tokens"]), output);
}

#[test]
fn scenario_file_gives_everything_and_flags_override_it() {
    let tag = new_tag("scenario-file");
    let results = tempfile::tempdir().expect("tempdir");
    let file = results.path().join("s.toml");
    std::fs::write(&file, "[workload]\nscenario = \"reasoning\"\nrandom_output_len = 12\nrandom_range_ratio = 1.0\nseed = 3\n\n[run]\nconcurrency_range = \"1:2:x2\"\nnum_prompts = 4\nwarmup = 0\n").expect("write");
    let file_s = file.to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        file_s.as_str(),
        "--seed",
        "5",
        "--random-input-len",
        "20",
    ];
    args.extend(FAST_SIM);
    let run = run_ok(&tag, &args, &results.path().join("out"));
    let w = &run["spec"]["workload"];
    assert_eq!(w["seed"], 5, "the flag wins");
    assert_eq!(w["lengths"]["input_len"], 20, "the flag wins");
    assert_eq!(
        w["lengths"]["output_len"], 12,
        "the file overrides the preset"
    );
    assert_eq!(w["lengths"]["range_mode"], "one-sided");
    let labels: Vec<&str> = run["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["label"].as_str())
        .collect();
    assert_eq!(
        labels,
        ["c1", "c2"],
        "the file's concurrency range is a sweep"
    );
    for point in run["points"].as_array().expect("points") {
        assert_eq!(count(&point["completed"]), 4);
        assert_eq!(count(&point["total_output_tokens"]), 4 * 12);
    }

    // An unknown key is refused with its name, exit 2.
    std::fs::write(&file, "[workload]\nrandom_input_length = 5\n").expect("write");
    let mut cmd = rackload(&tag);
    cmd.args(["run", &file_s]);
    let out = run_with_timeout(cmd, 30.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("random_input_length") && stderr.contains("s.toml"),
        "{stderr}"
    );
    assert_no_processes_left(&tag);
}

fn sample(tag: &str, n: u64, extra: &[&str]) -> Vec<Value> {
    let mut cmd = rackload(tag);
    cmd.args([
        "workload",
        "sample",
        "--num-prompts",
        &n.to_string(),
        "--seed",
        "9",
        "--request-rate",
        "7",
        "--burstiness",
        "0.5",
        "--random-input-len",
        "100",
    ])
    .args(extra);
    let out = run_with_timeout(cmd, 30.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect()
}

#[test]
fn workload_sample_shards_union_to_the_whole_stream() {
    let tag = new_tag("sample");
    let whole = sample(&tag, 50, &[]);
    assert_eq!(whole.len(), 50);
    assert!(whole.iter().all(|l| l["arrival_s"].is_f64()));
    let mut union: Vec<Value> = (0..3)
        .flat_map(|k| sample(&tag, 50, &["--shard", &format!("{k}/3")]))
        .collect();
    union.sort_by_key(|l| l["index"].as_u64());
    assert_eq!(union, whole);
    let with = sample(&tag, 2, &["--with-prompts"]);
    let words = with[0]["prompt"]
        .as_str()
        .expect("prompt text")
        .split_whitespace()
        .count() as u64;
    assert_eq!(words, with[0]["input_len"].as_u64().expect("len"));
}
