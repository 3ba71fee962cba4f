//! A real run's results, a vLLM bench serve result file and InferenceX aggregate rows on one
//! frontier, through the `rackload` binary; and the report a run leaves behind.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use rackload_tests::*;
use serde_json::Value;

#[test]
fn a_run_vllm_results_and_inferencex_rows_share_one_frontier() {
    let tag = new_tag("analysis");
    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--max-concurrency",
        "2,16",
        "--num-prompts",
        "32",
        "--warmup",
        "0",
        "--random-input-len",
        "128",
        "--random-output-len",
        "32",
        "--random-range-ratio",
        "1",
        "--results-dir",
    ])
    .arg(results.path());
    let out = run_with_timeout(cmd, 120.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = run_dir(results.path()).expect("a run directory");
    // The run left its report and chart next to run.json.
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && html.contains("Latency distributions"));
    assert!(!html.contains("<script") && !html.contains("src=\"http"));
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).expect("frontier.svg");
    assert!(
        svg.contains("b200 · rackload-sim"),
        "the sim's points, labelled"
    );

    let fixtures = manifest_dir().join("../analysis/tests/fixtures");
    let mut cmd = rackload(&tag);
    cmd.arg("frontier")
        .arg(results.path())
        .arg(fixtures.join("vllm-bench-serve-b200-c64.json"))
        .arg(fixtures.join("inferencex-mi355x.jsonl"))
        .args([
            "--system", "b200", "--gpus", "1", "--group", "all", "--format", "json",
        ]);
    let out = run_with_timeout(cmd, 30.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1);
    let points = groups[0]["points"].as_array().expect("points");
    let sources: Vec<&str> = points
        .iter()
        .map(|p| p["source"].as_str().expect("source"))
        .collect();
    assert_eq!(points.len(), 2 + 1 + 3, "{sources:?}");
    assert!(sources.iter().any(|s| s.ends_with("run.json#c16")));
    assert!(sources.iter().any(|s| s.contains("vllm-bench-serve")));
    assert!(sources.iter().any(|s| s.contains("inferencex-mi355x")));
    // The frontier is the undominated set: check it against the points themselves.
    let xy: Vec<(f64, f64, bool)> = points
        .iter()
        .map(|p| {
            (
                p["interactivity"].as_f64().expect("x"),
                p["tput_per_gpu"].as_f64().expect("y"),
                p["on_frontier"].as_bool().expect("flag"),
            )
        })
        .collect();
    for &(x, y, on) in &xy {
        let dominated = xy
            .iter()
            .any(|&(a, b, _)| a >= x && b >= y && (a > x || b > y));
        assert_eq!(on, !dominated, "({x}, {y})");
    }
    assert!(xy.iter().filter(|p| p.2).count() >= 2);
    assert_no_processes_left(&tag);
}
