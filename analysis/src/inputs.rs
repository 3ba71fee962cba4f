//! Reading benchmark results into analysis points: rackload result directories and
//! `run.json` files, vLLM bench serve result files, and InferenceX aggregate rows (a JSON
//! object, a list of them, or JSON lines), so existing results land on the same chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::tco::{Gpus, Measured};

/// One measured point and what is known of where it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// `file#label`.
    pub source: String,
    pub label: String,
    /// Catalog system, when the file says.
    pub system: Option<String>,
    /// GPUs, when the file says.
    pub gpus: Option<Gpus>,
    pub measured: Measured,
    pub concurrency: Option<u32>,
    pub isl: Option<f64>,
    pub osl: Option<f64>,
    /// `isl`/`osl` are the nominal lengths (InferenceX rows, a random workload), not
    /// measured means: they name a chart.
    pub nominal_lengths: bool,
    /// Where the file came from: rackload, vllm, inferencex.
    pub format: &'static str,
    /// TPOT besides the median, ms, when the file has them (interactivity at each).
    pub tpot_mean_ms: Option<f64>,
    pub tpot_p90_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    /// What the frontier groups by besides the system: `engine`, `precision`,
    /// `spec_decode`, when the file says.
    pub meta: BTreeMap<String, String>,
    /// The model served, when the file says.
    pub model: Option<String>,
    /// Latency statistics in ms under vLLM's keys (`median_ttft_ms`, `p99.9_e2el_ms`, …),
    /// as far as the file has them.
    pub latency_ms: BTreeMap<String, f64>,
}

/// The statistics and metrics of vLLM's latency keys (`{stat}_{metric}_ms`); InferenceX
/// rows carry the same without `_ms`, in seconds.
pub(crate) const LATENCY_STATS: [&str; 6] = ["mean", "median", "std", "p90", "p99", "p99.9"];
pub(crate) const LATENCY_METRICS: [&str; 4] = ["ttft", "tpot", "itl", "e2el"];

/// The latency statistics `v` has, in ms under vLLM's keys; `seconds`: InferenceX's keys
/// and unit.
fn latency_ms(v: &Value, seconds: bool) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for stat in LATENCY_STATS {
        for metric in LATENCY_METRICS {
            let key = format!("{stat}_{metric}_ms");
            let value = if seconds {
                num(v, &format!("{stat}_{metric}")).map(|s| s * 1000.0)
            } else {
                num(v, &key)
            };
            if let Some(ms) = value {
                out.insert(key, ms);
            }
        }
    }
    out
}

fn tpots(v: &Value) -> (Option<f64>, Option<f64>, Option<f64>) {
    (
        num(v, "mean_tpot_ms"),
        num(v, "p90_tpot_ms"),
        num(v, "p99_tpot_ms"),
    )
}

/// The grouping keys a document states (`engine` also read from vLLM's `backend` and
/// InferenceX's `framework`).
fn meta_of(v: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (key, names) in [
        ("engine", &["engine", "framework", "backend"][..]),
        ("precision", &["precision"][..]),
        ("spec_decode", &["spec_decode", "spec_decoding", "mtp"][..]),
    ] {
        if let Some(v) = names.iter().find_map(|n| match &v[*n] {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_owned()),
            _ => None,
        }) {
            m.insert(key.to_owned(), v);
        }
    }
    m
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error(transparent)]
    Capped(rackload_input::ReadError),
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// Reads every point of `path`: a rackload results directory (every `*/run.json` under it,
/// or its own `run.json`), or a JSON/JSONL file of any supported format.
pub fn read(path: &Path) -> Result<Vec<Point>, InputError> {
    let shown = path.display().to_string();
    if path.is_dir() {
        let mut files: Vec<PathBuf> = Vec::new();
        if path.join("run.json").is_file() {
            files.push(path.join("run.json"));
        } else {
            let entries = std::fs::read_dir(path).map_err(|e| InputError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            for e in entries.flatten() {
                if e.path().join("run.json").is_file() {
                    files.push(e.path().join("run.json"));
                }
            }
            files.sort();
        }
        if files.is_empty() {
            return Err(InputError::Format {
                path: shown,
                reason: "no run.json in it or in its subdirectories".into(),
            });
        }
        let mut out = Vec::new();
        for f in files {
            out.extend(read(&f)?);
        }
        return Ok(out);
    }
    let text =
        rackload_input::read_text_capped(path, rackload_input::caps::DATASET, "a results file")
            .map_err(InputError::Capped)?;
    let bad = |reason: String| InputError::Format {
        path: shown.clone(),
        reason,
    };
    let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(whole) => {
            // JSON lines
            let mut docs = Vec::new();
            for (k, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                docs.push(serde_json::from_str(line).map_err(|e| {
                    bad(format!(
                        "neither JSON ({whole}) nor JSON lines (line {}: {e})",
                        k + 1
                    ))
                })?);
            }
            docs
        }
    };
    let mut out = Vec::new();
    for (k, doc) in docs.iter().enumerate() {
        let at = if docs.len() > 1 {
            format!("{shown}[{k}]")
        } else {
            shown.clone()
        };
        if doc.get("schema_version").is_some() && doc.get("points").is_some() {
            out.extend(rackload_run(&at, doc).map_err(bad)?);
        } else if doc.get("tput_per_gpu").is_some() {
            out.push(inferencex_row(&at, doc).map_err(bad)?);
        } else if doc.get("total_output_tokens").is_some() && doc.get("duration").is_some() {
            out.push(vllm_result(&at, doc).map_err(bad)?);
        } else {
            return Err(bad(format!(
                "entry {k} is not a rackload run.json, a vLLM bench serve result or an InferenceX row"
            )));
        }
    }
    Ok(out)
}

fn rackload_run(source: &str, doc: &Value) -> Result<Vec<Point>, String> {
    // `rackload run --system/--gpus` say it; else the embedded sim's profile does.
    let env = &doc["environment"];
    let sim = &env["sim"];
    let system = env["system"]
        .as_str()
        .or_else(|| sim["profile"]["system"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let gpus = env["gpus"]
        .as_u64()
        .or_else(|| sim["gpus"].as_u64())
        .and_then(|g| u32::try_from(g).ok())
        .map(Gpus::Aggregated);
    let mut meta = meta_of(env);
    if env.get("sim").is_some_and(Value::is_object) {
        meta.entry("engine".into())
            .or_insert_with(|| "rackload-sim".into());
    }
    let model = doc["spec"]["target"]["model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    // InferenceX's isl/osl are the nominal lengths of a random workload.
    let lengths = &doc["spec"]["workload"]["lengths"];
    let nominal = (lengths["kind"] == "random")
        .then(|| (num(lengths, "input_len"), num(lengths, "output_len")));
    let points = doc["points"].as_array().ok_or("points is not a list")?;
    let mut out = Vec::new();
    for p in points {
        let label = p["label"].as_str().unwrap_or("").to_owned();
        let duration = num(p, "duration_s").unwrap_or(0.0);
        if duration <= 0.0 || p["completed"].as_u64().unwrap_or(0) == 0 {
            continue; // nothing measured
        }
        let input = num(p, "total_input_tokens").ok_or("a point lacks total_input_tokens")?;
        let (tpot_mean_ms, tpot_p90_ms, tpot_p99_ms) = tpots(p);
        out.push(Point {
            tpot_mean_ms,
            tpot_p90_ms,
            tpot_p99_ms,
            meta: meta.clone(),
            source: format!("{source}#{label}"),
            label,
            system: system.clone(),
            gpus,
            measured: Measured {
                input_tps: input / duration,
                output_tps: num(p, "output_throughput").ok_or("a point lacks output_throughput")?,
                median_tpot_ms: num(p, "median_tpot_ms").unwrap_or(0.0),
                gpu_power: num(p, "gpu_power_w").zip(
                    p["gpus_measured"]
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok()),
                ),
            },
            concurrency: p["max_concurrency"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok()),
            isl: nominal.and_then(|n| n.0).or_else(|| {
                num(p, "total_input_tokens")
                    .zip(num(p, "completed"))
                    .map(|(t, n)| t / n)
            }),
            osl: nominal.and_then(|n| n.1).or_else(|| {
                num(p, "total_output_tokens")
                    .zip(num(p, "completed"))
                    .map(|(t, n)| t / n)
            }),
            format: "rackload",
            nominal_lengths: nominal.is_some(),
            model: model.clone(),
            latency_ms: latency_ms(p, false),
        });
    }
    Ok(out)
}

fn vllm_result(source: &str, doc: &Value) -> Result<Point, String> {
    let duration = num(doc, "duration")
        .filter(|d| *d > 0.0)
        .ok_or("duration is not positive")?;
    let input = num(doc, "total_input_tokens").ok_or("total_input_tokens missing")?;
    let output = num(doc, "total_output_tokens").ok_or("total_output_tokens missing")?;
    let completed = num(doc, "completed").filter(|c| *c > 0.0);
    let label = doc["label"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| doc["max_concurrency"].as_u64().map(|c| format!("c{c}")))
        .unwrap_or_default();
    let (tpot_mean_ms, tpot_p90_ms, tpot_p99_ms) = tpots(doc);
    Ok(Point {
        tpot_mean_ms,
        tpot_p90_ms,
        tpot_p99_ms,
        meta: meta_of(doc),
        source: format!("{source}#{label}"),
        label,
        system: None,
        gpus: None,
        measured: Measured {
            input_tps: input / duration,
            output_tps: output / duration,
            median_tpot_ms: num(doc, "median_tpot_ms").ok_or("median_tpot_ms missing")?,
            gpu_power: None,
        },
        concurrency: doc["max_concurrency"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok()),
        isl: completed.map(|n| input / n),
        osl: completed.map(|n| output / n),
        format: "vllm",
        nominal_lengths: false,
        model: doc["model_id"].as_str().map(str::to_owned),
        latency_ms: latency_ms(doc, false),
    })
}

/// An InferenceX aggregate row already holds per-GPU figures. An aggregated row becomes a
/// one-GPU point; a disaggregated one (`disagg`, `num_prefill_gpu`, `num_decode_gpu`) keeps
/// its prefill and decode GPUs apart, with InferenceX's denominators: total ÷ all GPUs,
/// output ÷ decode GPUs, input ÷ prefill GPUs. The row's own `input_tput_per_gpu` is used
/// when it has one.
fn inferencex_row(source: &str, doc: &Value) -> Result<Point, String> {
    let tput = num(doc, "tput_per_gpu").ok_or("tput_per_gpu is not a number")?;
    let output = num(doc, "output_tput_per_gpu").ok_or("output_tput_per_gpu missing")?;
    let input = num(doc, "input_tput_per_gpu");
    let intvty = num(doc, "median_intvty")
        .filter(|i| *i > 0.0)
        .ok_or("median_intvty missing")?;
    let conc = doc["conc"].as_u64().and_then(|c| u32::try_from(c).ok());
    let label = conc.map(|c| format!("c{c}")).unwrap_or_default();
    let interactivity = |k: &str| num(doc, k).filter(|i| *i > 0.0).map(|i| 1000.0 / i);
    let gpus_of = |k: &str| {
        doc[k]
            .as_u64()
            .and_then(|g| u32::try_from(g).ok())
            .filter(|g| *g > 0)
    };
    let disagg = doc["disagg"].as_bool().unwrap_or(false);
    let (gpus, measured) = match (
        disagg,
        gpus_of("num_prefill_gpu"),
        gpus_of("num_decode_gpu"),
    ) {
        (true, Some(prefill), Some(decode)) => {
            let all = f64::from(prefill + decode);
            let output_tps = output * f64::from(decode);
            let input_tps = match input {
                Some(i) => i * f64::from(prefill),
                None => (tput * all - output_tps).max(0.0),
            };
            let gpus = Gpus::Disaggregated { prefill, decode };
            (gpus, (input_tps, output_tps))
        }
        (true, ..) => {
            return Err("a disaggregated row needs num_prefill_gpu and num_decode_gpu".into());
        }
        (false, ..) => (
            Gpus::Aggregated(1),
            (input.unwrap_or((tput - output).max(0.0)), output),
        ),
    };
    Ok(Point {
        tpot_mean_ms: interactivity("mean_intvty"),
        tpot_p90_ms: interactivity("p90_intvty"),
        tpot_p99_ms: interactivity("p99_intvty"),
        meta: meta_of(doc),
        source: format!("{source}#{label}"),
        label,
        system: doc["hw"].as_str().map(str::to_lowercase),
        gpus: Some(gpus),
        measured: Measured {
            input_tps: measured.0,
            output_tps: measured.1,
            median_tpot_ms: 1000.0 / intvty,
            gpu_power: None,
        },
        concurrency: conc,
        isl: num(doc, "isl"),
        osl: num(doc, "osl"),
        format: "inferencex",
        nominal_lengths: num(doc, "isl").is_some() && num(doc, "osl").is_some(),
        model: doc["model"].as_str().map(str::to_owned),
        latency_ms: latency_ms(doc, true),
    })
}
