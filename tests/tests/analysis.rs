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

    inferencex_rows_round_trip(&tag, results.path(), &dir);

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

/// `rackload frontier` as JSON, for `inputs` and extra flags.
fn frontier_json(tag: &str, inputs: &[&std::path::Path], flags: &[&str]) -> Value {
    let mut cmd = rackload(tag);
    cmd.arg("frontier").args(inputs).args(flags);
    let out = run_with_timeout(cmd, 30.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `--format inferencex` writes InferenceX's row fields (nominal lengths, latencies in
/// seconds, the framework and model), and the rows read back by `rackload frontier` with no
/// --system, --gpus or --catalog give the same points as the run they came from.
fn inferencex_rows_round_trip(tag: &str, results: &std::path::Path, run: &std::path::Path) {
    let mut cmd = rackload(tag);
    cmd.arg("frontier")
        .arg(results)
        .args(["--format", "inferencex"]);
    let out = run_with_timeout(cmd, 30.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let run_json: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).expect("run.json"))
            .expect("json");
    for row in &rows {
        assert_eq!(row["hw"], "b200");
        assert_eq!(row["framework"], "rackload-sim");
        assert_eq!(row["model"], "rackload-sim");
        assert_eq!(row["disagg"], false);
        assert_eq!(
            (row["isl"].as_f64(), row["osl"].as_f64()),
            (Some(128.0), Some(32.0))
        );
        let label = format!("c{}", row["conc"]);
        let point = run_json["points"]
            .as_array()
            .expect("points")
            .iter()
            .find(|p| p["label"] == label.as_str())
            .expect("the row's point");
        for key in [
            "median_ttft",
            "p99_ttft",
            "median_e2el",
            "median_tpot",
            "p99.9_itl",
        ] {
            let seconds = row[key].as_f64().unwrap_or_else(|| panic!("{key}: {row}"));
            let ms = point[format!("{key}_ms")].as_f64().expect("run.json ms");
            assert!(
                (seconds * 1000.0 - ms).abs() < 1e-9,
                "{key}: {seconds} s vs {ms} ms"
            );
        }
        let intvty = row["p99_intvty"].as_f64().expect("p99_intvty");
        let p99_tpot = point["p99_tpot_ms"].as_f64().expect("p99 tpot");
        assert!((intvty - 1000.0 / p99_tpot).abs() < 1e-9);
    }
    let rows_file = run.join("rows.jsonl");
    std::fs::write(&rows_file, &text).expect("write rows");
    let back = frontier_json(tag, &[&rows_file], &["--format", "json"]);
    let orig = frontier_json(tag, &[results], &["--format", "json"]);
    let points = |v: &Value| -> Vec<(u64, f64, f64, f64, f64)> {
        let mut pts: Vec<_> = v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["points"].as_array().expect("points").clone())
            .map(|p| {
                let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k}: {p}"));
                (
                    p["concurrency"].as_u64().expect("conc"),
                    f("interactivity"),
                    f("tput_per_gpu"),
                    f("output_tput_per_gpu"),
                    f("cost_per_mtok"),
                )
            })
            .collect();
        pts.sort_by_key(|p| p.0);
        pts
    };
    let (a, b) = (points(&orig), points(&back));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        for (u, v) in [(x.1, y.1), (x.2, y.2), (x.3, y.3), (x.4, y.4)] {
            assert!((u - v).abs() <= 1e-9 * u.abs().max(1.0), "{x:?} vs {y:?}");
        }
    }
    let group = |v: &Value| v["groups"][0]["name"].clone();
    assert_eq!(group(&orig), group(&back), "same group: system · engine");
}
