//! A worker is aimed only where its operator allows: a plan for a target outside its
//! `--allow-target` list, or above its `--max-inflight` or `--max-rate`, is refused with a
//! message that reaches the CLI, and not one request is sent; a plan that sets no cap runs
//! under the worker's.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;

fn run(tag: &str, coord: &str, sim: &str, concurrency: &str) -> (Option<i32>, String) {
    let results = tempfile::tempdir().expect("tempdir");
    let load = [
        "--max-concurrency",
        concurrency,
        "--num-prompts",
        "8",
        "--warmup",
        "0",
        "--random-output-len",
        "4",
    ];
    run_load(tag, coord, sim, &load, results.path())
}

/// `rackload run` on one worker of `coord` against `sim` with `load` flags, results in
/// `results`; returns the exit code and stderr.
fn run_load(
    tag: &str,
    coord: &str,
    sim: &str,
    load: &[&str],
    results: &std::path::Path,
) -> (Option<i32>, String) {
    let mut cmd = rackload(tag);
    cmd.args([
        "run",
        "--coordinator",
        coord,
        "--workers",
        "1",
        "--base-url",
        sim,
    ])
    .args(load)
    .arg("--results-dir")
    .arg(results);
    let out = run_with_timeout(cmd, 90.0);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

#[test]
fn plans_outside_the_allowlist_or_over_the_caps_are_refused() {
    let tag = new_tag("caps");
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    // A worker that may only aim at 10.0.0.0/8.
    let (_c1, coord1) = start_coordinator(&tag);
    let _w1 = start_worker_with(&tag, &coord1, "fenced", &["--allow-target", "10.0.0.0/8"]);
    let (code, stderr) = run(&tag, &coord1, &sim_url, "2");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--allow-target") && stderr.contains(&sim_url),
        "{stderr}"
    );
    assert_eq!(
        count(&get_json(&sim_url, "/stats")["received"]),
        0,
        "nothing was sent"
    );

    // A worker allowed loopback but at most 4 in flight.
    let (_c2, coord2) = start_coordinator(&tag);
    let _w2 = start_worker_with(
        &tag,
        &coord2,
        "capped",
        &["--allow-target", "127.0.0.0/8", "--max-inflight", "4"],
    );
    let (code, stderr) = run(&tag, &coord2, &sim_url, "8");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-inflight"), "{stderr}");
    assert_eq!(count(&get_json(&sim_url, "/stats")["received"]), 0);
    let (code, stderr) = run(&tag, &coord2, &sim_url, "4");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(count(&get_json(&sim_url, "/stats")["received"]), 8);
}

/// An open loop without `--max-concurrency` used to be accepted with "concurrency 0" and
/// then ran with no cap at all; it now runs under the worker's `--max-inflight`.
#[test]
fn an_uncapped_open_loop_runs_under_the_workers_inflight_cap() {
    let tag = new_tag("inflight");
    // 100 ms a request at 200 req/s: about 20 in flight without a cap.
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "60", "--itl-ms", "10"]);
    let (_c, coord) = start_coordinator(&tag);
    let _w = start_worker_with(&tag, &coord, "capped", &["--max-inflight", "3"]);
    let results = tempfile::tempdir().expect("tempdir");
    let load = [
        "--request-rate",
        "200",
        "--num-prompts",
        "60",
        "--random-output-len",
        "4",
        "--random-range-ratio",
        "1",
    ];
    let (code, stderr) = run_load(&tag, &coord, &sim_url, &load, results.path());
    assert_eq!(code, Some(0), "{stderr}");
    let stats = get_json(&sim_url, "/stats");
    assert_eq!(count(&stats["served"]), 60, "{stats}");
    let peak = count(&stats["peak_in_flight"]);
    assert!((1..=3).contains(&peak), "the worker held its cap: {stats}");
}

/// Trace replay has no nominal rate, so `--max-rate` used to be skipped for it; now the
/// busiest second of the shard's schedule is held against the cap.
#[test]
fn trace_replay_over_the_rate_cap_is_refused() {
    let tag = new_tag("tracecap");
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("burst.jsonl");
    // 4 requests a second, then a burst of 30 inside 300 ms: 32 in its busiest second.
    let mut lines = String::new();
    for i in 0..20 {
        lines.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": 8, \"output_length\": 2}}\n",
            i * 250
        ));
    }
    for i in 0..30 {
        lines.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": 8, \"output_length\": 2}}\n",
            5000 + i * 10
        ));
    }
    std::fs::write(&trace, lines).expect("write trace");
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let (_c, coord) = start_coordinator(&tag);
    let _w = start_worker_with(&tag, &coord, "paced", &["--max-rate", "10"]);
    let results = tempfile::tempdir().expect("tempdir");
    let trace = trace.to_string_lossy().into_owned();
    let load = ["--dataset-name", "trace", "--dataset-path", trace.as_str()];
    let (code, stderr) = run_load(&tag, &coord, &sim_url, &load, results.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-rate") && stderr.contains("32 requests within one second"),
        "{stderr}"
    );
    assert_eq!(count(&get_json(&sim_url, "/stats")["received"]), 0);
}

/// A closed loop has no nominal rate, so `--max-rate` could not be checked in its plan and
/// used not to hold at all; the worker now holds it while the load runs (tower's rate
/// limit, one budget for the shard).
#[test]
fn a_closed_loop_runs_under_the_workers_rate_cap() {
    let tag = new_tag("ratecap");
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "1", "--itl-ms", "1"]);
    let (_c, coord) = start_coordinator(&tag);
    let _w = start_worker_with(&tag, &coord, "paced", &["--max-rate", "20"]);
    let results = tempfile::tempdir().expect("tempdir");
    let load = [
        "--max-concurrency",
        "8",
        "--num-prompts",
        "60",
        "--warmup",
        "0",
        "--random-output-len",
        "4",
        "--random-range-ratio",
        "1",
    ];
    let (code, stderr) = run_load(&tag, &coord, &sim_url, &load, results.path());
    assert_eq!(code, Some(0), "{stderr}");
    let run = run_json(results.path()).expect("run.json");
    let p = &run["points"][0];
    assert_eq!(count(&p["completed"]), 60, "{p}");
    // 20 a second: the 60 requests need three one-second windows, whatever the server.
    let d = p["duration_s"].as_f64().expect("duration");
    assert!(d >= 1.9, "60 requests in {d} s is over 20 req/s");
}
