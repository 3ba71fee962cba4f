//! The coordinator's `GET /metrics`: live while a run goes, valid Prometheus text
//! (`promtool check metrics`, and parsed here), and its totals equal the run's results.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use rackload_tests::*;

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            out.insert(key.to_owned(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    out
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_are_live_valid_and_add_up_to_the_results() {
    let tag = new_tag("metrics");
    let (_sim, sim_url) = start_sim(
        &tag,
        &["--ttft-ms", "5", "--itl-ms", "5", "--faults", "500=0.1"],
    );
    let port = closed_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let metrics_url = format!("http://{metrics_addr}");
    let (_coord, coord_url) = start_server(
        &tag,
        "coordinator",
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &metrics_addr,
        ],
    );
    let _w1 = start_worker(&tag, &coord_url, "w1");
    let _w2 = start_worker(&tag, &coord_url, "w2");
    wait_until(20.0, "two workers connected", || {
        samples(&get_text(&metrics_url, "/metrics")).get("rackload_workers_connected") == Some(&2.0)
    });

    let results = tempfile::tempdir().expect("tempdir");
    let mut cmd = rackload(&tag);
    cmd.args([
        "run",
        "--coordinator",
        &coord_url,
        "--workers",
        "2",
        "--base-url",
        &sim_url,
    ])
    .args([
        "--max-concurrency",
        "2,4",
        "--num-prompts",
        "24",
        "--warmup",
        "2",
    ])
    .args([
        "--random-output-len",
        "80",
        "--max-failure-rate",
        "1",
        "--results-dir",
    ])
    .arg(results.path())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut run = Proc {
        name: "run".into(),
        child: cmd.spawn().expect("run"),
    };

    // Live: completed requests show while the run is still going.
    let mut seen_live = false;
    wait_until(60.0, "the run to end", || {
        let text = get_text(&metrics_url, "/metrics");
        let running = run.child.try_wait().expect("wait").is_none();
        if running
            && samples(&text)
                .iter()
                .any(|(k, v)| k.starts_with("rackload_requests_completed_total{") && *v > 0.0)
            && text.contains("} 1\n")
        {
            seen_live = true;
        }
        !running
    });
    assert!(run.child.wait().expect("run").success());
    assert!(
        seen_live,
        "no completed requests on /metrics while the run went"
    );

    let text = get_text(&metrics_url, "/metrics");
    promtool_check(&text);
    let m = samples(&text);
    let run = run_json(results.path()).expect("run.json");
    let id = run["run_id"].as_str().expect("run id");
    assert_eq!(
        m.get(&format!("rackload_run_active{{run=\"{id}\"}}")),
        Some(&0.0)
    );
    assert_eq!(
        m.get(&format!("rackload_workers_lost_total{{run=\"{id}\"}}")),
        Some(&0.0)
    );
    let mut failures = 0;
    for p in run["points"].as_array().expect("points") {
        let l = format!(
            "run=\"{id}\",point=\"{}\"",
            p["label"].as_str().expect("label")
        );
        let get = |name: &str| m.get(&format!("{name}{{{l}}}")).copied().unwrap_or(-1.0);
        assert_eq!(
            get("rackload_requests_completed_total"),
            p["completed"].as_f64().expect("c")
        );
        assert_eq!(
            get("rackload_output_tokens_total"),
            p["total_output_tokens"].as_f64().expect("o")
        );
        assert_eq!(
            get("rackload_input_tokens_total"),
            p["total_input_tokens"].as_f64().expect("i")
        );
        let failed: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("rackload_requests_failed_total{{{l},")))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(failed, p["failed"].as_f64().expect("failed"));
        failures += failed as u64;
        // A histogram per metric: cumulative buckets ending at its count, which is the
        // number of completed requests for TTFT.
        assert_eq!(
            get("rackload_ttft_seconds_count"),
            p["completed"].as_f64().expect("c")
        );
        let buckets: Vec<f64> = m
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("rackload_ttft_seconds_bucket{{{l},")))
            .map(|(_, v)| *v)
            .collect();
        assert!(buckets.len() >= 10);
        let inf = m[&format!("rackload_ttft_seconds_bucket{{{l},le=\"+Inf\"}}")];
        assert_eq!(inf, get("rackload_ttft_seconds_count"));
        assert!(buckets.iter().all(|b| *b <= inf));
        // 5 ms TTFT: nothing at or under 1 ms, everything by 1 s.
        assert_eq!(
            m[&format!("rackload_ttft_seconds_bucket{{{l},le=\"0.001\"}}")],
            0.0
        );
        assert_eq!(
            m[&format!("rackload_ttft_seconds_bucket{{{l},le=\"1\"}}")],
            inf
        );
    }
    assert!(failures > 0, "the injected 500s show as failures");

    // The Grafana dashboard queries only metrics the coordinator serves.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let path = manifest_dir().join("../deploy/grafana/rackload.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let mut used = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("rackload_"))
            {
                let family = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    families.contains(&family),
                    "{} uses {name}, not served",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used > 10);
}
