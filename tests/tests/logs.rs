//! `--log-format json`: every log line is one JSON object, and a worker's lines inside a
//! shard carry the worker id, the run id and the point, so a log pipeline can join them.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;
use serde_json::Value;

#[test]
fn json_logs_carry_worker_run_and_point() {
    let tag = new_tag("logs");
    let (_sim, sim_url) = start_sim(
        &tag,
        &["--ttft-ms", "1", "--itl-ms", "1", "--faults", "500=1"],
    );
    let (_coord, coord_url) = start_coordinator(&tag);
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("worker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let worker = worker_command(&tag, &coord_url, "w-json", &["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .expect("worker");
    let _worker = Proc {
        name: "worker".into(),
        child: worker,
    };
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--coordinator",
        &coord_url,
        "--workers",
        "1",
        "--base-url",
        &sim_url,
        "--max-concurrency",
        "2",
        "--num-prompts",
        "4",
        "--warmup",
        "0",
        "--random-output-len",
        "4",
        "--max-failure-rate",
        "1",
        "--results-dir",
    ])
    .arg(results.path());
    let out = run_with_timeout(cmd, 60.0);
    let run = run_json(results.path()).expect("run.json");
    assert_eq!(
        count(&run["points"][0]["failed"]),
        4,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id = run["run_id"].as_str().expect("run id").to_owned();
    let mut failures = Vec::new();
    wait_until(10.0, "the worker's failure lines", || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        failures = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("request failed"))
            })
            .collect();
        !failures.is_empty()
    });
    for f in &failures {
        assert_eq!(f["level"], "WARN", "{f}");
        let span = &f["span"];
        assert_eq!(span["run"], run_id.as_str(), "{f}");
        assert_eq!(span["point"], 0, "{f}");
        let spans = f["spans"].as_array().expect("span list");
        assert!(spans.iter().any(|s| s["worker"] == "w-json"), "{f}");
    }
}
