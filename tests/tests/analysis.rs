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
    assert!(
        html.contains("steffen interpolation"),
        "the report says how it reads frontiers"
    );
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

/// InferenceX rows of two models and two ISL/OSL pairs: four charts, never one mixed
/// (precision spellings and runner suffixes folded as the dashboard folds them, a repeated
/// configuration and concurrency kept once); and values read at 35 and 90 tok/s/user off a
/// two-point frontier, by rackload's interpolation and by the dashboard calculator's.
#[test]
fn inferencex_rows_group_and_read_as_the_dashboard_does() {
    let tag = new_tag("dashboard");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    for model in ["gpt-oss-120b", "deepseek-r1"] {
        for (isl, osl) in [(1024, 1024), (8192, 1024)] {
            for (k, (hw, precision)) in [("b200", "fp4"), ("b200-trt", "nvfp4"), ("b200", "mxfp4")]
                .into_iter()
                .enumerate()
            {
                let conc = [4, 64, 256][k];
                rows.push(serde_json::json!({
                    "hw": hw, "framework": "vllm", "precision": precision, "model": model,
                    "isl": isl, "osl": osl, "conc": conc,
                    "tput_per_gpu": 1000.0 * (k + 1) as f64, "output_tput_per_gpu": 500.0 * (k + 1) as f64,
                    "median_intvty": 200.0 / (k + 1) as f64,
                }));
            }
        }
    }
    // The same configuration and concurrency again, later: it replaces the first.
    let mut again = rows[0].clone();
    again["tput_per_gpu"] = serde_json::json!(1100.0);
    rows.push(again);
    let file = dir.path().join("rows.jsonl");
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(&file, text.join("\n")).expect("write");
    let v = frontier_json(&tag, &[&file], &["--format", "json"]);
    assert_eq!(v["interpolation"], "steffen");
    let groups = v["groups"].as_array().expect("groups");
    let charts: Vec<&str> = groups
        .iter()
        .map(|g| g["chart"].as_str().expect("chart"))
        .collect();
    assert_eq!(
        charts,
        [
            "deepseek-r1 · 1024/1024",
            "deepseek-r1 · 8192/1024",
            "gpt-oss-120b · 1024/1024",
            "gpt-oss-120b · 8192/1024"
        ]
    );
    for g in groups {
        assert_eq!(g["name"], "b200 · vllm · fp4", "{g}");
        assert_eq!(g["points"].as_array().map(Vec::len), Some(3), "{g}");
    }
    let oss = &groups[2];
    assert_eq!(oss["duplicates"].as_array().map(Vec::len), Some(1), "{oss}");
    let c4 = oss["points"]
        .as_array()
        .expect("points")
        .iter()
        .find(|p| p["concurrency"] == 4)
        .expect("c4");
    assert_eq!(c4["tput_per_gpu"], 1100.0, "the later row kept");

    // A two-point frontier, (20, 1000) and (100, 200) tok/s/user → tok/s/GPU, on a
    // system at $2/GPU-hour. The dashboard calculator's tangents there are 1.5·s and
    // 0.75·s (s = −10): its own functions give 794.775 at 35 and 275.391 at 90, and cost
    // splined from the points' ($0.5556 and $2.7778 per M tokens) 1.126 and 2.568.
    // rackload's Steffen is the line: 850 and 300, cost = $2 ÷ throughput.
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[system]]\nname = \"testgpu\"\ngpu = \"T\"\ngpus_per_node = 8\ngpus_per_rack = 32\ntdp_kw = 1.0\nall_in_kw_per_gpu = 2.0\ncost_per_gpu_hour = { owning = 2.0, rental = 2.0 }\nsource = \"test\"\n",
    )
    .expect("catalog");
    let two = dir.path().join("two.jsonl");
    std::fs::write(
        &two,
        [
            r#"{"hw": "testgpu", "framework": "vllm", "precision": "fp8", "model": "m", "isl": 1024, "osl": 1024, "conc": 4, "tput_per_gpu": 200.0, "output_tput_per_gpu": 100.0, "median_intvty": 100.0}"#,
            r#"{"hw": "testgpu", "framework": "vllm", "precision": "fp8", "model": "m", "isl": 1024, "osl": 1024, "conc": 64, "tput_per_gpu": 1000.0, "output_tput_per_gpu": 500.0, "median_intvty": 20.0}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let catalog = catalog.to_str().expect("utf-8");
    let at = |how: &str| -> Vec<(f64, f64)> {
        let v = frontier_json(
            &tag,
            &[&two],
            &[
                "--format",
                "json",
                "--at",
                "35,90",
                "--catalog",
                catalog,
                "--interpolation",
                how,
            ],
        );
        assert_eq!(v["interpolation"], how);
        v["groups"][0]["at"]
            .as_array()
            .expect("at")
            .iter()
            .map(|a| {
                (
                    a["tput_per_gpu"].as_f64().expect("tput"),
                    a["cost_per_mtok"].as_f64().expect("cost"),
                )
            })
            .collect()
    };
    let close = |a: f64, b: f64, tol: f64| assert!((a - b).abs() <= tol, "{a} vs {b}");
    let ix = at("inferencex");
    close(ix[0].0, 794.775, 5e-4);
    close(ix[1].0, 275.391, 5e-4);
    close(ix[0].1, 1.126, 5e-4);
    close(ix[1].1, 2.568, 5e-4);
    let st = at("steffen");
    close(st[0].0, 850.0, 1e-9);
    close(st[1].0, 300.0, 1e-9);
    close(st[0].1, 2.0 / (850.0 * 3600.0 / 1e6), 1e-12);
    close(st[1].1, 2.0 / (300.0 * 3600.0 / 1e6), 1e-12);
}
