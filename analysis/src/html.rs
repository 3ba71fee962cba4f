//! A run's report: one self-contained HTML file (inline CSS and SVG, no script,
//! nothing fetched) with client-health warnings, a table per point, latency by
//! percentile, each point's timeline, the frontier and cost charts, and the run's setup
//! as a table (its raw JSON folded away). `rackload run` writes it, and
//! `frontier.svg`, next to `run.json` when a run ends.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::analyze::{Analysis, Options, analyze};
use crate::catalog::Catalog;
use crate::inputs;
use crate::plot::PlotError;
use crate::results::{ResultsError, write_atomic};

/// Why a report was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(rackload_input::ReadError),
    #[error("{path} is not JSON: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Write(#[from] ResultsError),
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .or_else(|| v.as_u64().map(|x| x.to_string()))
        .unwrap_or_else(|| "–".to_owned())
}

/// The run's frontier analysis, when its system and GPUs are known.
pub(crate) fn run_analysis(
    run_json: &Path,
    tier: &str,
    catalog: &Catalog,
) -> Result<Analysis, String> {
    let points = inputs::read(run_json).map_err(|e| e.to_string())?;
    if points.is_empty() {
        return Err("no measured point".into());
    }
    let opts = Options {
        tier: tier.to_owned(),
        ..Options::default()
    };
    analyze(&points, catalog, &opts).map_err(|e| e.to_string())
}

/// Writes `report.html` (and `frontier.svg` when the analysis is possible) into `dir`.
pub fn write(dir: &Path, tier: &str, catalog: &Catalog) -> Result<PathBuf, ReportError> {
    let run_json = dir.join("run.json");
    let text = rackload_input::read_text_capped(
        &run_json,
        rackload_input::caps::DATASET,
        "a run's results",
    )
    .map_err(ReportError::Read)?;
    let run: Value = serde_json::from_str(&text).map_err(|error| ReportError::Json {
        path: run_json.clone(),
        error,
    })?;
    let analysis = run_analysis(&run_json, tier, catalog);
    let svg = match &analysis {
        Ok(a) => {
            let svg = crate::plot::frontier_svg(a)?;
            write_atomic(&dir.join("frontier.svg"), svg.as_bytes())?;
            Some(svg)
        }
        Err(_) => None,
    };
    // The pictures read the run's other files (histograms.hlog, telemetry/).
    let html = html(
        &run,
        &pictures(dir, &run),
        analysis.as_ref().ok(),
        svg.as_deref(),
        analysis.as_ref().err(),
    );
    let path = dir.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

fn html(
    run: &Value,
    pictures: &str,
    analysis: Option<&Analysis>,
    svg: Option<&str>,
    why_not: Option<&String>,
) -> String {
    let mut h = String::new();
    let id = run["run_id"].as_str().unwrap_or("");
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>rackload run {}</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}\
         td:first-child,th:first-child{{text-align:left}}.warn{{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px}}\
         pre{{background:#f7f7f7;padding:8px;overflow:auto}}figure.chart{{display:inline-block;margin:0.5em}}\
         table.setup td{{text-align:left;font-family:monospace}}</style></head><body>",
        esc(id)
    );
    let _ = write!(
        h,
        "<h1>rackload run {}</h1><p>status <b>{}</b> {} · created {} · rackload {}</p>",
        esc(id),
        esc(run["status"].as_str().unwrap_or("")),
        esc(run["message"].as_str().unwrap_or("")),
        esc(run["created"].as_str().unwrap_or("")),
        esc(run["rackload_version"].as_str().unwrap_or(""))
    );

    // Client health and gates first: they say whether the numbers can be trusted.
    let points = run["points"].as_array().cloned().unwrap_or_default();
    let warnings = warnings(&points);
    if !warnings.is_empty() {
        h.push_str("<h2>Warnings</h2>");
        for w in warnings {
            let _ = write!(h, "<p class=\"warn\">{}</p>", esc(&w));
        }
    }
    points_table(&mut h, &points);
    distributions(&mut h, &points);
    h.push_str(pictures);
    frontier_section(&mut h, analysis, svg, why_not);
    let setup = serde_json::json!({
        "spec": run["spec"],
        "environment": run["environment"],
        "workers": run["workers"],
    });
    setup_table(&mut h, &setup);
    h.push_str("<details><summary>The setup as JSON</summary><pre>");
    h.push_str(&esc(
        &serde_json::to_string_pretty(&setup).unwrap_or_default()
    ));
    h.push_str("</pre></details></body></html>\n");
    h
}

/// A chart inline, or why it could not be drawn (one chart's failure costs only it).
fn figure(h: &mut String, chart: &crate::charts::Chart) {
    match chart.svg() {
        Ok(Some(svg)) => {
            let _ = write!(h, "<figure class=\"chart\">{svg}</figure>");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(
                h,
                "<p class=\"warn\">{}: not drawn: {}</p>",
                esc(&chart.title),
                esc(&e.to_string())
            );
        }
    }
}

/// Latency by percentile across points, then each point's timeline.
fn pictures(dir: &Path, run: &Value) -> String {
    let labels: Vec<String> = run["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["label"].as_str().map(str::to_owned))
        .collect();
    let mut h = String::from("<h2>Latency by percentile</h2>");
    let hists = crate::charts::read_hlog(dir);
    let nines = crate::charts::nines_charts(&hists, &labels);
    if nines.is_empty() {
        h.push_str("<p>No histograms.hlog with latencies to draw.</p>");
    }
    for chart in &nines {
        figure(&mut h, chart);
    }
    h.push_str("<h2>Timelines</h2><p>Per second of each point, from the start instant: the client's view (the workers' merged reports) beside the server's and the meters' readings (<code>telemetry/&lt;point&gt;.jsonl.gz</code>).</p>");
    for label in &labels {
        let lines = crate::charts::read_telemetry(dir, label);
        let charts = crate::charts::timeline_charts(label, &lines);
        if charts.is_empty() {
            let _ = write!(h, "<p>{}: no timeline recorded.</p>", esc(label));
            continue;
        }
        let _ = write!(h, "<h3>{}</h3>", esc(label));
        for chart in &charts {
            figure(&mut h, chart);
        }
    }
    h
}

/// The setup as rows of `path · value`, nested objects flattened with dots and lists of
/// plain values joined (a list of objects is numbered).
fn setup_table(h: &mut String, setup: &Value) {
    fn flatten(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, rows);
                }
            }
            Value::Array(a) if a.iter().any(|v| v.is_object() || v.is_array()) => {
                for (k, v) in a.iter().enumerate() {
                    flatten(&format!("{prefix}[{k}]"), v, rows);
                }
            }
            Value::Array(a) => rows.push((
                prefix.to_owned(),
                a.iter().map(plain).collect::<Vec<_>>().join(", "),
            )),
            Value::Null => {}
            v => rows.push((prefix.to_owned(), plain(v))),
        }
    }
    fn plain(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }
    let mut rows = Vec::new();
    flatten("", setup, &mut rows);
    h.push_str("<h2>Setup</h2><table class=\"setup\"><tr><th>setting</th><th>value</th></tr>");
    for (k, v) in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&k),
            esc(&rackload_input::clip(&v, 300))
        );
    }
    h.push_str("</table>");
}

/// What makes a point's numbers doubtful: a saturated client, a failed gate, a lost worker.
fn warnings(points: &[Value]) -> Vec<String> {
    let mut warnings = Vec::new();
    for p in points {
        let label = p["label"].as_str().unwrap_or("");
        if p["client_saturated"] == true {
            for w in p["workers"].as_array().into_iter().flatten() {
                if w["saturated_intervals"].as_u64().unwrap_or(0) > 0 {
                    warnings.push(format!(
                        "point {label}: worker {} was saturated ({}): these numbers measure the client",
                        w["id"].as_str().unwrap_or(""),
                        w["saturation_reason"].as_str().unwrap_or("")
                    ));
                }
            }
        }
        if p["gate"] == "fail" {
            warnings.push(format!(
                "point {label}: {} of {} requests failed (over the failure gate)",
                f(&p["failed"], 0),
                p["sent"].as_u64().unwrap_or(0)
            ));
        }
        if p["degraded"] == true {
            warnings.push(format!(
                "point {label}: degraded, lost workers {}",
                p["lost_workers"]
            ));
        }
    }
    warnings
}

fn points_table(h: &mut String, points: &[Value]) {
    h.push_str("<h2>Points</h2><table><tr><th>point</th><th>completed</th><th>failed</th><th>duration s</th><th>req/s</th><th>output tok/s</th><th>total tok/s</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>TPOT p50 ms</th><th>ITL p99 ms</th><th>E2EL p50 ms</th><th>tok/s/user</th></tr>");
    for p in points {
        let tpot = p["median_tpot_ms"].as_f64().unwrap_or(0.0);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(p["label"].as_str().unwrap_or("")),
            f(&p["completed"], 0),
            f(&p["failed"], 0),
            f(&p["duration_s"], 2),
            f(&p["request_throughput"], 2),
            f(&p["output_throughput"], 1),
            f(&p["total_token_throughput"], 1),
            f(&p["median_ttft_ms"], 2),
            f(&p["p99_ttft_ms"], 2),
            f(&p["median_tpot_ms"], 2),
            f(&p["p99_itl_ms"], 2),
            f(&p["median_e2el_ms"], 1),
            if tpot > 0.0 {
                format!("{:.1}", 1000.0 / tpot)
            } else {
                "–".into()
            }
        );
    }
    h.push_str("</table>");
}

fn distributions(h: &mut String, points: &[Value]) {
    h.push_str("<h2>Latency distributions (ms)</h2><table><tr><th>point · metric</th><th>mean</th><th>median</th><th>std</th><th>p90</th><th>p99</th><th>p99.9</th></tr>");
    for p in points {
        for m in ["ttft", "tpot", "itl", "e2el"] {
            let _ = write!(
                h,
                "<tr><td>{} · {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["label"].as_str().unwrap_or("")),
                m.to_uppercase(),
                f(&p[format!("mean_{m}_ms")], 2),
                f(&p[format!("median_{m}_ms")], 2),
                f(&p[format!("std_{m}_ms")], 2),
                f(&p[format!("p90_{m}_ms")], 2),
                f(&p[format!("p99_{m}_ms")], 2),
                f(&p[format!("p99.9_{m}_ms")], 2)
            );
        }
    }
    h.push_str("</table>");
}

fn frontier_section(
    h: &mut String,
    analysis: Option<&Analysis>,
    svg: Option<&str>,
    why_not: Option<&String>,
) {
    h.push_str("<h2>Frontier and cost</h2>");
    match (analysis, svg) {
        (Some(a), Some(svg)) => {
            h.push_str(svg);
            h.push_str("<table><tr><th>group · point</th><th>tok/s/user</th><th>tok/s/GPU</th><th>$/M tokens</th><th>tok/s/MW</th><th>J/token</th><th>energy $/M tokens</th><th>J/token (measured)</th><th>energy $/M tokens (measured)</th><th>frontier</th></tr>");
            let money = |c: Option<f64>| c.map(|c| format!("{c:.4}")).unwrap_or_default();
            for g in &a.groups {
                for p in &g.points {
                    let m = p.figures.measured_power;
                    let _ = write!(
                        h,
                        "<tr><td>{} · {}</td><td>{:.1}</td><td>{:.1}</td><td>{:.4}</td><td>{:.0}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&g.title()),
                        esc(&p.label),
                        p.figures.interactivity,
                        p.figures.tput_per_gpu,
                        p.figures.cost_per_mtok,
                        p.figures.tok_per_s_per_mw,
                        p.figures.joules_per_token,
                        money(p.figures.energy_cost_per_mtok),
                        m.map(|m| format!(
                            "{:.4} (×{:.2} overhead)",
                            m.joules_per_token, m.overhead
                        ))
                        .unwrap_or_default(),
                        money(m.and_then(|m| m.energy_cost_per_mtok)),
                        if p.on_frontier { "yes" } else { "" }
                    );
                }
            }
            h.push_str("</table>");
            let _ = write!(
                h,
                "<p>Between frontier points: {} interpolation.</p>",
                a.interpolation.name()
            );
        }
        _ => {
            let _ = write!(
                h,
                "<p>No frontier: {}. Give the run's system and GPUs (<code>rackload run --system NAME --gpus N</code>), or use <code>rackload frontier --system NAME --gpus N</code>.</p>",
                esc(why_not.map_or("nothing to analyse", String::as_str))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_self_contained_and_escapes_what_it_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = serde_json::json!({
            "schema_version": 1, "run_id": "r<1>", "status": "completed", "message": "",
            "environment": {"sim": {"profile": {"system": "b200"}, "gpus": 1}},
            "spec": {"target": {"base_urls": ["http://127.0.0.1:1"]}},
            "points": [
                {"label": "c1", "max_concurrency": 1, "completed": 2, "failed": 0, "sent": 2,
                 "duration_s": 7.0, "total_input_tokens": 2048, "total_output_tokens": 2030,
                 "output_throughput": 290.0, "median_tpot_ms": 3.44, "gate": "pass"},
                {"label": "c128", "max_concurrency": 128, "completed": 256, "failed": 30, "sent": 286,
                 "duration_s": 23.7, "total_input_tokens": 262144, "total_output_tokens": 234000,
                 "output_throughput": 9887.4, "median_tpot_ms": 8.87, "gate": "fail",
                 "client_saturated": true,
                 "workers": [{"id": "w1", "saturated_intervals": 3, "saturation_reason": "worker CPU at 95%"}]}
            ]
        });
        std::fs::write(dir.path().join("run.json"), run.to_string()).expect("write");
        let path = write(dir.path(), "owning", &Catalog::embedded()).expect("report");
        let html = std::fs::read_to_string(&path).expect("read");
        assert!(html.contains("rackload run r&lt;1&gt;"), "escaped");
        assert!(
            !html.contains("<script")
                && !html.contains("src=\"http")
                && !html.contains("href=\"http")
        );
        assert!(html.contains("<svg"), "the chart is inline");
        assert!(html.contains("worker w1 was saturated (worker CPU at 95%)"));
        assert!(html.contains("over the failure gate"));
        assert!(dir.path().join("frontier.svg").is_file());

        // Without a system there is no frontier, and the report says how to get one.
        let mut bare = run.clone();
        bare["environment"] = serde_json::json!({});
        std::fs::write(dir.path().join("run.json"), bare.to_string()).expect("write");
        let html = std::fs::read_to_string(
            write(dir.path(), "owning", &Catalog::embedded()).expect("report"),
        )
        .expect("read");
        assert!(html.contains("--system NAME --gpus N"), "{html}");
    }
}
