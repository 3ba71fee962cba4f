//! The coordinator's `GET /metrics`: live while a run goes, valid exposition text (checked
//! in-process everywhere, and by `promtool check metrics` where it is installed), and its
//! totals equal the run's results.

#![allow(clippy::disallowed_types)] // these tests wait on real processes, in real time

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use rackload_tests::*;

/// `name{labels}` → value, for every sample line, with `le` moved last (the encoder
/// writes it first) so that keys read as `name{run=..,point=..,le=..}`.
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
        let key = match key.split_once('{') {
            Some((name, rest)) => {
                let labels = parse_labels(rest.strip_suffix('}').expect("closing brace"));
                let (le, mut other): (Vec<_>, Vec<_>) =
                    labels.into_iter().partition(|(k, _)| k == "le");
                other.extend(le);
                let body: Vec<String> = other.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{name}{{{}}}", body.join(","))
            }
            None => key.to_owned(),
        };
        assert!(
            out.insert(key.clone(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    out
}

/// `k="v",k2="v2"` (values with `\\`, `\"` and `\n` escapes) → pairs, strictly.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels {s:?}"));
        assert!(
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {k:?} in {s:?}"
        );
        let mut v = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => v.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => v.push(c),
                    other => panic!("bad escape {other:?} in {s:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => v.push(c),
                None => panic!("unterminated label value in {s:?}"),
            }
        };
        out.push((k.to_owned(), v));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// Checks the exposition in-process, as a scraper would read it: every sample belongs to
/// the family declared before it with a name its type allows, histograms are cumulative
/// and end at `+Inf`; OpenMetrics text (names counter families without `_total`) ends
/// with `# EOF`, classic text (names them with it) does not.
fn check_exposition(text: &str, openmetrics: bool) {
    let mut family: Option<(String, String)> = None;
    let mut declared = std::collections::HashSet::new();
    let mut lines: Vec<&str> = text.lines().collect();
    if openmetrics {
        assert_eq!(
            lines.pop(),
            Some("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }
    assert!(
        !lines.contains(&"# EOF"),
        "# EOF only at the end of OpenMetrics"
    );
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in &lines {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').expect("TYPE name kind");
            assert!(declared.insert(name.to_owned()), "{name} declared twice");
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, kind) = family
            .as_ref()
            .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        let suffix = sample
            .strip_prefix(name.as_str())
            .unwrap_or_else(|| panic!("{line} outside {name}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" if openmetrics => &["_total"],
            "counter" => {
                assert!(name.ends_with("_total"), "classic counter {name}");
                &[""]
            }
            "gauge" => &[""],
            _ => &["_bucket", "_sum", "_count"],
        };
        assert!(allowed.contains(&suffix), "{line}: {suffix:?} in a {kind}");
        if suffix == "_bucket" {
            let m = samples(line);
            let (key, v) = m.iter().next().expect("one sample");
            let (series, le) = key
                .rsplit_once(",le=\"")
                .or_else(|| key.rsplit_once("{le=\""))
                .expect("le");
            let le = le.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le number")
            };
            buckets.entry(series.to_owned()).or_default().push((le, *v));
        }
    }
    for (series, b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{series}: {b:?}"
        );
        assert_eq!(
            b.last().map(|x| x.0),
            Some(f64::INFINITY),
            "{series} ends at +Inf"
        );
    }
    assert!(!buckets.is_empty(), "histograms are served");
}

/// `promtool check metrics` where it is installed (CI installs it); the in-process check
/// above runs everywhere.
fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("promtool is not installed: the exposition was checked in-process only");
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
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
        let m = samples(&text);
        // (The run-active gauge reads 1 — "1.0" on the page — while the run goes.)
        if running
            && m.iter()
                .any(|(k, v)| k.starts_with("rackload_requests_completed_total{") && *v > 0.0)
            && m.iter()
                .any(|(k, v)| k.starts_with("rackload_run_active{") && *v == 1.0)
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
    check_exposition(&text, false);
    promtool_check(&text);
    // What Prometheus asks for: OpenMetrics, the same samples.
    let om = get_text_with(
        &metrics_url,
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    );
    check_exposition(&om, true);
    assert_eq!(samples(&om), samples(&text));
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
            m[&format!("rackload_ttft_seconds_bucket{{{l},le=\"1.0\"}}")],
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
