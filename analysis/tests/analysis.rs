//! Results of three origins on one frontier: a rackload run.json, a vLLM bench serve result
//! file and InferenceX aggregate rows (committed fixtures of their real formats).

use std::path::PathBuf;

use rackload_analysis::analyze::{Options, analyze};
use rackload_analysis::catalog::Catalog;
use rackload_analysis::inputs;
use rackload_analysis::tco::Gpus;

fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn vllm_inferencex_and_rackload_points_share_one_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run.json");
    std::fs::write(
        &run,
        serde_json::json!({
            "schema_version": 1,
            "spec": {"target": {"model": "openai/gpt-oss-120b"},
                     "workload": {"lengths": {"kind": "random", "input_len": 1024, "output_len": 1024}}},
            "environment": {"sim": {"profile": {"system": "b200"}, "gpus": 1}},
            "points": [
                {"label": "c1", "max_concurrency": 1, "completed": 2, "duration_s": 7.0,
                 "total_input_tokens": 2048, "total_output_tokens": 2030,
                 "output_throughput": 290.0, "median_tpot_ms": 3.44},
                {"label": "c128", "max_concurrency": 128, "completed": 256, "duration_s": 23.7,
                 "total_input_tokens": 262144, "total_output_tokens": 234000,
                 "output_throughput": 9887.4, "median_tpot_ms": 8.87}
            ]
        })
        .to_string(),
    )
    .expect("write");
    let rackload = inputs::read(&run).expect("run.json");
    assert_eq!(rackload.len(), 2);
    let vllm = inputs::read(&fixture("vllm-bench-serve-b200-c64.json")).expect("vllm");
    assert_eq!(vllm.len(), 1);
    assert_eq!(vllm[0].concurrency, Some(64));
    let ix = inputs::read(&fixture("inferencex-mi355x.jsonl")).expect("inferencex");
    assert_eq!(ix.len(), 3);

    let catalog = Catalog::embedded();
    // The vLLM file does not say its system or GPUs: without flags that is an error naming it.
    let mut all = rackload.clone();
    all.extend(vllm.clone());
    let e = analyze(
        &all,
        &catalog,
        &Options {
            tier: "owning".into(),
            ..Options::default()
        },
    )
    .expect_err("no system");
    assert!(
        e.to_string().contains("vllm-bench-serve-b200-c64.json"),
        "{e}"
    );
    // Tag the vLLM point as one B200 and put everything together.
    let vllm: Vec<_> = vllm
        .into_iter()
        .map(|mut p| {
            p.system = Some("b200".into());
            p.gpus = Some(Gpus::Aggregated(1));
            p
        })
        .collect();
    // Grouped as the dashboard draws them: a chart per model and nominal ISL/OSL (the
    // vLLM file has no nominal lengths: a chart of its own), a series per system, engine,
    // precision.
    let mut all = rackload.clone();
    all.extend(vllm.clone());
    all.extend(ix);
    let opts = Options {
        tier: "owning".into(),
        at: vec![150.0],
        ..Options::default()
    };
    let a = analyze(&all, &catalog, &opts).expect("analysis");
    let names: Vec<String> = a.groups.iter().map(|g| g.title()).collect();
    assert_eq!(
        names,
        [
            "gpt-oss-120b — b200 · vllm",
            "gpt-oss-120b · 1024/1024 — b200 · rackload-sim",
            "gpt-oss-120b · 1024/1024 — mi355x · vllm · fp4"
        ]
    );
    let mi = &a.groups[2];
    assert_eq!(mi.points.len(), 3);
    assert_eq!(mi.at.len(), 1, "150 tok/s/user is inside MI355X's range");
    // The vLLM fixture's mean/p90/p99 TPOT give interactivity at each.
    let v = &a.groups[0].points[0];
    assert!((v.interactivity_p99.expect("p99") - 1000.0 / 15.2).abs() < 1e-9);
    // It lies where both groups have a frontier.
    let range = |name: &str| {
        let g = a.groups.iter().find(|g| g.name == name).expect("group");
        let on: Vec<f64> = g
            .points
            .iter()
            .filter(|p| p.on_frontier)
            .map(|p| p.figures.interactivity)
            .collect();
        (
            on.iter().copied().fold(f64::INFINITY, f64::min),
            on.iter().copied().fold(0.0, f64::max),
        )
    };
    // Cost is price ÷ throughput along each frontier: where both have one (112.7 to 240
    // tok/s/user), the sim's B200 is the cheaper everywhere, so they never cross (and the
    // vLLM B200 group, one point in another chart, has no curve).
    assert!(a.crossovers.is_empty(), "{:?}", a.crossovers);
    let b200 = &a.groups[1];
    for x in [113.0, 150.0, 200.0, 239.0] {
        let cost = |g: &rackload_analysis::analyze::GroupOut| {
            let one = Options {
                at: vec![x],
                ..opts.clone()
            };
            let a = analyze(&all, &catalog, &one).expect("analysis");
            let g = a.groups.iter().find(|h| h.name == g.name).expect("group");
            g.at[0].cost_per_mtok
        };
        assert!(cost(b200) < cost(mi), "at {x}");
    }
    // The dashboard's calculator splines cost between the points themselves; between a
    // cheap and a dear point that bends above price ÷ throughput, and read that way the
    // two cross once.
    let dashboard = Options {
        interpolation: rackload_analysis::analyze::Interpolation::Inferencex,
        ..opts.clone()
    };
    let a = analyze(&all, &catalog, &dashboard).expect("analysis");
    assert_eq!(a.crossovers.len(), 1, "{:?}", a.crossovers);
    assert_eq!(
        (a.crossovers[0].a.as_str(), a.crossovers[0].b.as_str()),
        ("b200 · rackload-sim", "mi355x · vllm · fp4")
    );
    for c in &a.crossovers {
        let (lo_a, hi_a) = range(&c.a);
        let (lo_b, hi_b) = range(&c.b);
        assert!(
            c.interactivity >= lo_a.max(lo_b) && c.interactivity <= hi_a.min(hi_b),
            "{c:?}"
        );
    }

    // One frontier for the rackload run and the vLLM result of the same system.
    let mut b200_points = rackload;
    b200_points.extend(vllm);
    let one = Options {
        group: Some("b200".into()),
        ..opts.clone()
    };
    let a2 = analyze(&b200_points, &catalog, &one).expect("analysis");
    assert_eq!(a2.groups.len(), 1);
    let b200 = &a2.groups[0];
    assert_eq!(b200.points.len(), 3);
    // The vLLM point: (589,824 + 589,312) / 118.37 s on one GPU.
    let v = b200
        .points
        .iter()
        .find(|p| p.label == "c64")
        .expect("vllm point");
    assert!(
        (v.figures.tput_per_gpu - 1_179_136.0 / 118.37).abs() < 1e-6,
        "{}",
        v.figures.tput_per_gpu
    );
    assert!((v.figures.interactivity - 1000.0 / 12.48).abs() < 1e-9);
    // The sim's c128 point (112.7 tok/s/user, ~20.9 k tok/s/GPU) dominates the vLLM c64
    // point (80.1, ~9.96 k); c1 and c128 trade off.
    let on: Vec<(&str, bool)> = b200
        .points
        .iter()
        .map(|p| (p.label.as_str(), p.on_frontier))
        .collect();
    assert_eq!(on, [("c64", false), ("c128", true), ("c1", true)], "{on:?}");
    assert_eq!(b200.at.len(), 1, "150 tok/s/user is inside B200's range");
    let json = serde_json::to_value(&a).expect("json");
    assert!(json["groups"][0]["points"][0]["on_frontier"].is_boolean());
    assert!(a.csv().lines().count() == 7);
    assert_eq!(a.inferencex_rows().len(), 6);
    assert!(a.table().contains("at 150 tok/s/user"));
}

/// InferenceX rows as its dashboard's ingest writes them, GB200 and disaggregated ones
/// included: with no `--catalog` and no `--system`, every per-GPU figure equals the row's.
#[test]
fn inferencex_rows_keep_their_own_per_gpu_figures_disaggregated_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = dir.path().join("rows.jsonl");
    // 4 prefill + 8 decode GPUs: input 4 × 1000, output 8 × 2000 tok/s, so 20,000 / 12 over
    // all GPUs. Per-GPU output (2000) is above the total per GPU (1666.7): input derived as
    // "total − output" would be 0.
    std::fs::write(
        &rows,
        [
            r#"{"hw": "gb200", "framework": "dynamo-trt", "precision": "fp4", "disagg": true, "num_prefill_gpu": 4, "num_decode_gpu": 8, "conc": 256, "isl": 1024, "osl": 1024, "tput_per_gpu": 1666.6666666666667, "output_tput_per_gpu": 2000.0, "input_tput_per_gpu": 1000.0, "median_intvty": 40.0}"#,
            r#"{"hw": "b200-trt", "framework": "trt", "precision": "fp4", "conc": 64, "isl": 1024, "osl": 1024, "tput_per_gpu": 3000.0, "output_tput_per_gpu": 1500.0, "input_tput_per_gpu": 1500.0, "median_intvty": 60.0}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let points = inputs::read(&rows).expect("rows");
    assert_eq!(points.len(), 2);
    assert_eq!(
        points[0].gpus,
        Some(Gpus::Disaggregated {
            prefill: 4,
            decode: 8
        })
    );
    let opts = Options {
        tier: "owning".into(),
        ..Options::default()
    };
    let a = analyze(&points, &Catalog::embedded(), &opts).expect("analysis");
    let find = |system: &str| {
        a.groups
            .iter()
            .flat_map(|g| &g.points)
            .find(|p| p.system == system)
            .unwrap_or_else(|| panic!("{system} in {a:?}"))
    };
    let gb = find("gb200-nvl72");
    assert!((gb.figures.tput_per_gpu - 1666.6667).abs() < 1e-3, "{gb:?}");
    assert!(
        (gb.figures.output_tput_per_gpu - 2000.0).abs() < 1e-9,
        "{gb:?}"
    );
    assert!(
        (gb.figures.input_tput_per_gpu - 1000.0).abs() < 1e-9,
        "{gb:?}"
    );
    assert!(gb.figures.cost_per_mtok.is_finite());
    let b = find("b200");
    assert!((b.figures.tput_per_gpu - 3000.0).abs() < 1e-9, "{b:?}");
    assert!(
        (b.figures.input_tput_per_gpu - 1500.0).abs() < 1e-9,
        "{b:?}"
    );
}
