//! The foundation's end-to-end contract, with every part a real process on loopback:
//! sim, coordinator, three workers and the CLI. Counts must agree exactly between the
//! merged result, the workers' own counts and what the sim served.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;
use rackload_workloads::{RangeMode, WorkloadSpec};
use serde_json::Value;

#[test]
fn three_workers_merge_exactly_what_the_sim_served() {
    let tag = new_tag("e2e-3w");
    let (_sim, sim_url) = start_server(
        &tag,
        "sim",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "1",
        ],
    );
    let (_coord, coord_url) = start_server(
        &tag,
        "coordinator",
        &["coordinator", "--listen", "127.0.0.1:0"],
    );
    let _workers: Vec<Proc> = (1..=3)
        .map(|k| start_worker(&tag, &coord_url, &format!("w{k}")))
        .collect();

    let results = tempfile::tempdir().expect("tempdir");
    let (concurrency, prompts) = (10u64, 47u64);
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--coordinator",
        &coord_url,
        "--base-url",
        &sim_url,
        "--workers",
        "3",
        "--max-concurrency",
        &concurrency.to_string(),
        "--num-prompts",
        &prompts.to_string(),
        "--random-input-len",
        "64",
        "--random-output-len",
        "32",
        "--seed",
        "7",
        "--warmup",
        "0",
        "--results-dir",
    ]);
    cmd.arg(results.path());
    let out = run_with_timeout(cmd, 60.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Serving Benchmark Result"), "{stdout}");

    let run = run_json(results.path()).expect("run.json parses");
    assert_eq!(run["schema_version"], 2);
    // Unset limits are null, set ones their value (schema 1 wrote 0 for both kinds).
    let target = &run["spec"]["target"];
    assert_eq!(target["connect_timeout_s"], 10.0, "{target}");
    assert!(target["idle_timeout_s"].is_null(), "{target}");
    assert_eq!(target["endpoint"], "/v1/completions");
    assert_eq!(run["status"], "completed");
    let point = &run["points"][0];
    let completed = count(&point["completed"]);
    assert_eq!(completed, prompts, "every request completed");
    assert_eq!(count(&point["failed"]), 0);

    // merged == Σ per-worker == what the sim served
    let workers = run["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 3);
    let per_worker: u64 = workers.iter().map(|w| count(&w["completed"])).sum();
    assert_eq!(per_worker, completed);
    let stats = get_json(&sim_url, "/stats");
    assert_eq!(count(&stats["served"]), completed, "sim stats {stats}");
    assert_eq!(count(&stats["received"]), completed, "sim stats {stats}");
    assert_eq!(count(&stats["in_flight"]), 0);

    // merged histogram counts == completed requests
    let counts = &point["histogram_counts"];
    assert_eq!(count(&counts["ttft"]), completed);
    assert_eq!(count(&counts["e2el"]), completed);
    assert_eq!(
        count(&counts["tpot"]),
        completed,
        "every output is longer than one token"
    );

    // shares sum to the requested concurrency, and requests to num_prompts
    let shards = run["shards"]["c10"].as_array().expect("shards of c10");
    assert_eq!(
        shards.iter().map(|s| count(&s["concurrency"])).sum::<u64>(),
        concurrency
    );
    assert_eq!(
        shards.iter().map(|s| count(&s["requests"])).sum::<u64>(),
        prompts
    );

    // the sim honoured ignore_eos: output tokens are exactly the requested lengths
    let spec = WorkloadSpec::random(64, 32, 0.8, RangeMode::OneSided, 7);
    let requested: u64 = (0..prompts)
        .map(|i| u64::from(spec.request(i).expect("valid").output_len))
        .sum();
    assert_eq!(count(&point["total_output_tokens"]), requested);
    let requested_in: u64 = (0..prompts)
        .map(|i| u64::from(spec.request(i).expect("valid").input_len))
        .sum();
    assert_eq!(count(&point["total_input_tokens"]), requested_in);

    // ITL samples: one per chunk after the first
    assert_eq!(count(&counts["itl"]), requested - completed);

    // the vLLM-shaped point file
    let dir = run_dir(results.path()).expect("a run directory");
    let vllm: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("points/c10.json")).expect("point file"),
    )
    .expect("json");
    for key in [
        "completed",
        "total_input_tokens",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_tpot_ms",
        "p99_itl_ms",
        "p99.9_e2el_ms",
    ] {
        assert!(vllm.get(key).is_some(), "points/c10.json lacks {key}");
    }
    // the interval log: one tagged histogram per metric of the point
    let hlog = std::fs::read_to_string(dir.join("histograms.hlog")).expect("histograms.hlog");
    let tags: Vec<&str> = hlog
        .lines()
        .filter_map(|l| l.strip_prefix("Tag="))
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        tags,
        [
            "c10/ttft",
            "c10/itl",
            "c10/tpot",
            "c10/e2el",
            "c10/ttfo",
            "c10/itl_per_token"
        ],
        "{hlog}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn embedded_run_writes_results_and_leaves_no_process() {
    let tag = new_tag("e2e-embedded");
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--max-concurrency",
        "4",
        "--num-prompts",
        "12",
        "--random-input-len",
        "32",
        "--random-output-len",
        "16",
        "--sim-ttft-ms",
        "5",
        "--sim-itl-ms",
        "1",
        "--results-dir",
    ]);
    cmd.arg(results.path());
    let out = run_with_timeout(cmd, 60.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = run_json(results.path()).expect("run.json parses");
    assert_eq!(run["environment"]["mode"], "embedded");
    assert_eq!(count(&run["points"][0]["completed"]), 12);
    assert_eq!(run["workers"].as_array().map(Vec::len), Some(2));
    assert_no_processes_left(&tag);
}

/// Ctrl-C in the middle of a sweep — or SIGTERM, as Kubernetes and Slurm stop a job, or
/// SIGHUP — aborts the run: every child is reaped, and the points that finished before it
/// are on disk, in run.json and their own point files. A second signal leaves at once.
#[test]
fn a_signal_aborts_the_run_keeps_results_and_reaps_children() {
    for signal in ["INT", "TERM", "HUP"] {
        interrupted_run(signal, None);
    }
    // A second signal while the coordinator does not answer (stopped): out at once.
    let tag = new_tag("e2e-sig-twice");
    let (coordinator, url) = start_coordinator(&tag);
    let _worker = start_worker(&tag, &url, "w1");
    let (_sim, sim_url) = start_sim(&tag, &["--ttft-ms", "5", "--itl-ms", "1"]);
    let run = interrupted_run("TERM", Some((&url, &sim_url, coordinator.child.id())));
    let message = run["message"].as_str().unwrap_or_default();
    assert!(message.contains("twice"), "{message}");
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &coordinator.child.id().to_string()])
        .status();
}

/// Runs a two-point sweep, embedded, or on `standing` (coordinator URL, target URL, and
/// the coordinator's pid, stopped once the first point is on disk, so that one signal is
/// answered by nobody and a second one is sent); sends `signal` once the first point is on
/// disk and checks what is left; returns run.json.
fn interrupted_run(signal: &str, standing: Option<(&str, &str, u32)>) -> serde_json::Value {
    let tag = new_tag(&format!("e2e-sig{}", signal.to_lowercase()));
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    if let Some((coordinator, target, _)) = standing {
        cmd.args(["run", "--coordinator", coordinator, "--workers", "1"])
            .args(["--base-url", target]);
    } else {
        cmd.args(["run", "--sim-ttft-ms", "5", "--sim-itl-ms", "1"]);
    }
    // Two points: 20 requests at 50 req/s (under a second), then 20 at 1 req/s, surely
    // still running when interrupted.
    cmd.args([
        "--request-rate",
        "50,1",
        "--num-prompts",
        "20",
        "--random-output-len",
        "8",
        "--results-dir",
    ]);
    cmd.arg(results.path());
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let point_file = || {
        run_dir(results.path())
            .map(|d| d.join("points/r50.json"))
            .filter(|p| p.exists())
    };
    wait_until(60.0, "the first point's file", || point_file().is_some());
    let kill = |args: &[&str]| {
        let status = std::process::Command::new("kill")
            .args(args)
            .status()
            .expect("kill");
        assert!(status.success(), "kill {args:?}");
    };
    if let Some((_, _, coordinator)) = standing {
        kill(&["-STOP", &coordinator.to_string()]);
    }
    kill(&[&format!("-{signal}"), &pid.to_string()]);
    if standing.is_some() {
        std::thread::sleep(std::time::Duration::from_millis(300));
        kill(&[&format!("-{signal}"), &pid.to_string()]);
    }
    let mut waited = 0;
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        waited += 1;
        assert!(
            waited < (400.0 * patience()) as u32,
            "the CLI did not stop after SIG{signal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(code, Some(2), "SIG{signal}: {stderr}");
    assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = run_json(results.path()).expect("run.json parses");
    assert_eq!(run["status"], "aborted", "{stderr}");
    let points = run["points"].as_array().expect("points");
    assert_eq!(points.len(), 1, "the finished point only: {points:?}");
    assert_eq!(points[0]["label"], "r50");
    assert_eq!(count(&points[0]["completed"]), 20);
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(point_file().expect("point file")).expect("read"),
    )
    .expect("the point file parses");
    assert_eq!(count(&file["completed"]), 20, "{file}");
    let dir = run_dir(results.path()).expect("run dir");
    assert!(
        dir.join("report.html").exists(),
        "the report of what finished"
    );
    if standing.is_none() {
        assert_no_processes_left(&tag);
    }
    run
}

/// `--duration` without `--num-prompts`: the clock, not the default count, ends a point.
#[test]
fn a_duration_alone_ends_a_point_by_time_not_by_the_default_count() {
    let tag = new_tag("e2e-duration");
    let embedded = |load: &[&str]| {
        let results = tempfile::tempdir().expect("tempdir");
        let mut cmd = rackload(&tag);
        cmd.args(["run", "--duration", "2", "--warmup", "0"])
            .args(["--random-input-len", "32", "--random-output-len", "4"])
            .args(["--sim-ttft-ms", "2", "--sim-itl-ms", "1", "--results-dir"])
            .arg(results.path())
            .args(load);
        let out = run_with_timeout(cmd, 60.0);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        run_json(results.path()).expect("run.json parses")
    };

    // Closed loop, 2 streams of ~6 ms requests: hundreds in 2 s, where the default count
    // (10 × C) would have ended the point after 20.
    let run = embedded(&["--max-concurrency", "2"]);
    let p = &run["points"][0];
    let completed = count(&p["completed"]);
    assert!(completed > 60, "{completed} requests in 2 s");
    let lasted = p["duration_s"].as_f64().expect("duration_s");
    assert!((1.9..10.0).contains(&lasted), "the point lasted {lasted} s");

    // Open loop: exactly the requests scheduled inside the 2 s, all of them sent (the
    // default count at 100 req/s would have been 1000, cut at about 200).
    let run = embedded(&["--request-rate", "100"]);
    let p = &run["points"][0];
    let planned = count(&run["spec"]["points"][0]["num_prompts"]);
    assert!((130..=270).contains(&planned), "{planned} scheduled in 2 s");
    assert_eq!(count(&p["sent"]), planned);
    assert_eq!(count(&p["completed"]), planned);
    assert_no_processes_left(&tag);
}
