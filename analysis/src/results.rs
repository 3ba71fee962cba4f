//! Results on disk, a versioned contract (DESIGN.md §7): `DIR/<run-id>/run.json` and
//! `points/<label>.json`, each written atomically (temp file + rename) and rewritten as
//! each point finishes, so a crash loses at most the point in progress; and, when asked,
//! `requests/<label>.jsonl.gz`, the workers' per-request records appended as they come
//! (gzip members, so a crash keeps every member written whole).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rackload_proto::v1::{PointResult, PointStarted, RunSpec};
use serde::Serialize;
use serde_json::{Value, json};

use crate::summary::PointSummary;
use rackload_proto::time::{compact_stamp, rfc3339, unix_nanos};

/// Bumped on any incompatible change to `run.json`. 2: in `spec`, a limit that is not set
/// is `null` where 1 wrote 0 (`target.*_timeout_s`, `points[].max_concurrency`,
/// `points[].request_rate`, `points[].duration_s`), and `target.connect_timeout_s` is the
/// timeout in force (1 wrote 0 for the 10 s default).
pub(crate) const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("point {label}: {error}")]
    Histogram {
        label: String,
        error: rackload_proto::histogram::HistogramError,
    },
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename; on any
/// failure (a full disk included) the temp file is removed and `path` is as it was.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let io = |error| ResultsError::Io {
        path: path.to_owned(),
        error,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The last resort when `write_atomic` cannot write `path` (no room for a second copy):
/// `bytes` over the old contents in place, padded with spaces (JSON allows them) to the
/// old length, so the file neither grows nor shrinks: overwriting pages a file already
/// holds needs no new space on a full disk. Refused (the old file kept whole) when the
/// new record is longer than the old.
fn overwrite_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let old = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    if bytes.len() > old {
        return Err(std::io::Error::other("the record is longer than the file"));
    }
    let mut padded = bytes.to_vec();
    padded.resize(old, b' ');
    if let Some(last) = padded.last_mut() {
        *last = b'\n';
    }
    f.write_all(&padded)?;
    f.sync_all()
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), ResultsError> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| ResultsError::Io {
        path: path.to_owned(),
        error: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The spec as run.json shows it: target URLs with their secrets hidden (the API key
/// never travels in it).
fn shown_spec(spec: &RunSpec) -> RunSpec {
    let mut spec = spec.clone();
    if let Some(t) = spec.target.as_mut() {
        for u in &mut t.base_urls {
            *u = rackload_proto::redact::url(u);
        }
    }
    for u in spec
        .gpu_metrics
        .iter_mut()
        .chain(&mut spec.server_metrics)
        .chain(&mut spec.node_power)
    {
        *u = rackload_proto::redact::url(u);
    }
    spec
}

#[derive(Debug, Default, Clone, Serialize)]
struct WorkerTotals {
    id: String,
    sent: u64,
    completed: u64,
    failed: u64,
    /// Requests in flight on it when it was lost.
    lost: u64,
    /// Points during which it was lost.
    lost_in_points: Vec<String>,
}

/// `run.json` as it grows during a run.
#[derive(Debug, Serialize)]
pub struct RunRecord {
    schema_version: u32,
    run_id: String,
    rackload_version: &'static str,
    created: String,
    status: String,
    message: String,
    spec: RunSpec,
    environment: Value,
    workers: Vec<WorkerTotals>,
    points: Vec<Value>,
    /// Per point: each worker's share, request count and clock offset.
    shards: BTreeMap<String, Value>,
    #[serde(skip)]
    dir: PathBuf,
    /// Finished points' merged histograms, for `histograms.hlog`.
    #[serde(skip)]
    hlog: Vec<PointResult>,
    /// The arrival process as `spec` records it (kind, rate, burstiness), for the vLLM
    /// point files.
    #[serde(skip)]
    arrival: Value,
}

impl RunRecord {
    /// A record for `run_id` under `base/<run_id>/`, written at once as "running".
    pub fn create(
        base: &Path,
        run_id: &str,
        spec: &RunSpec,
        environment: Value,
    ) -> Result<RunRecord, ResultsError> {
        let rec = RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.to_owned(),
            rackload_version: rackload_proto::BUILD_VERSION,
            created: rfc3339(unix_nanos() / 1_000_000_000),
            status: "running".to_owned(),
            message: String::new(),
            spec: shown_spec(spec),
            environment,
            workers: Vec::new(),
            points: Vec::new(),
            shards: BTreeMap::new(),
            dir: base.join(run_id),
            hlog: Vec::new(),
            arrival: serde_json::to_value(spec)
                .map(|v| v["workload"]["arrival"].clone())
                .unwrap_or_default(),
        };
        rec.write()?;
        Ok(rec)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write(&self) -> Result<(), ResultsError> {
        write_json(&self.dir.join("run.json"), self)
    }

    pub fn point_started(&mut self, started: &PointStarted) {
        let shares: Vec<Value> = started
            .shares
            .iter()
            .map(|s| {
                json!({
                    "worker": s.worker_id,
                    "concurrency": s.concurrency,
                    "requests": s.requests,
                    "clock_offset_ms": s.clock_offset_nanos as f64 / 1e6,
                    "clock_rtt_ms": if s.clock_rtt_nanos < 0 { Value::Null } else { json!(s.clock_rtt_nanos as f64 / 1e6) },
                })
            })
            .collect();
        self.shards
            .insert(started.label.clone(), Value::Array(shares));
    }

    /// Where the per-request records of point `label` go.
    pub fn requests_path(&self, label: &str) -> PathBuf {
        self.dir.join("requests").join(format!("{label}.jsonl.gz"))
    }

    /// Appends one gzip member of per-request records of point `label`.
    pub fn add_requests(&mut self, label: &str, gz: &[u8]) -> Result<(), ResultsError> {
        let path = self.requests_path(label);
        let io = |error| ResultsError::Io {
            path: path.clone(),
            error,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(gz))
            .map_err(io)
    }

    /// Adds a finished point, writes `points/<label>.json`, and rewrites `run.json`.
    pub fn add_point(&mut self, point: &PointResult) -> Result<(), ResultsError> {
        let summary = PointSummary::new(point).map_err(|error| ResultsError::Histogram {
            label: point.label.clone(),
            error,
        })?;
        let target = self.spec.target.clone().unwrap_or_default();
        let date = compact_stamp(point.start_unix_nanos / 1_000_000_000);
        let mut vllm = summary.vllm_json(
            &date,
            target.endpoint().name(),
            &target.model,
            &self.arrival,
        );
        if self.spec.save_detailed {
            // A damaged records file costs the arrays, never the point.
            let path = self.requests_path(&point.label);
            match crate::detailed::arrays(&path, point.start_unix_nanos) {
                Ok(Value::Object(d)) => {
                    if let Value::Object(o) = &mut vllm {
                        o.extend(d);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        "point {}: no detailed arrays, {} is unreadable: {e}",
                        point.label,
                        path.display()
                    );
                    vllm["detailed_error"] = json!(format!("{}: {e}", path.display()));
                }
            }
        }
        write_json(
            &self
                .dir
                .join("points")
                .join(format!("{}.json", point.label)),
            &vllm,
        )?;
        self.write_telemetry(point)?;
        self.points.push(summary.run_json());
        // Only what histograms.hlog is written from is kept for the run.
        self.hlog.push(PointResult {
            histograms: point.histograms.clone(),
            label: point.label.clone(),
            start_unix_nanos: point.start_unix_nanos,
            duration_s: point.duration_s,
            ..PointResult::default()
        });
        self.write_hlog()?;
        for w in &point.workers {
            let c = w.counters.clone().unwrap_or_default();
            let t = match self.workers.iter_mut().find(|t| t.id == w.worker_id) {
                Some(t) => t,
                None => {
                    self.workers.push(WorkerTotals {
                        id: w.worker_id.clone(),
                        ..WorkerTotals::default()
                    });
                    self.workers.last_mut().expect("just pushed")
                }
            };
            t.sent += c.sent;
            t.completed += c.completed;
            t.failed += c.failed();
            t.lost += w.lost_requests;
            if w.lost {
                t.lost_in_points.push(point.label.clone());
            }
        }
        self.write()
    }

    /// Writes `telemetry/<label>.jsonl.gz`: one JSON line per sample taken during the
    /// point, in time order within each `kind` — `client` (the workers' merged report
    /// intervals), `gpu` (summed GPU power), `node` (summed node power), `server` (the
    /// servers' pages summed). The README documents the keys.
    fn write_telemetry(&self, point: &PointResult) -> Result<(), ResultsError> {
        let lines = telemetry_lines(point);
        if lines.is_empty() {
            return Ok(());
        }
        let path = self
            .dir
            .join("telemetry")
            .join(format!("{}.jsonl.gz", point.label));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for line in lines {
            let _ = writeln!(gz, "{line}");
        }
        let bytes = gz.finish().map_err(|error| ResultsError::Io {
            path: path.clone(),
            error,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Rewrites `histograms.hlog`: an HdrHistogram interval log (V2 + DEFLATE), one
    /// interval per finished point and metric, tagged `<label>/<metric>`, values in µs
    /// (the Max column in ms). Readable by HdrHistogram's `HistogramLogProcessor`.
    fn write_hlog(&self) -> Result<(), ResultsError> {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use std::time::{Duration, UNIX_EPOCH};

        let path = self.dir.join("histograms.hlog");
        let fail = |e: String| ResultsError::Io {
            path: path.clone(),
            error: std::io::Error::other(e),
        };
        let Some(first) = self.hlog.first() else {
            return Ok(());
        };
        let base_ns = first.start_unix_nanos.max(0);
        let base = UNIX_EPOCH + Duration::from_nanos(base_ns as u64);
        let mut buf = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "rackload {} run {}: latencies in microseconds",
                rackload_proto::BUILD_VERSION,
                self.run_id
            ))
            .with_start_time(base)
            .with_base_time(base)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(|e| fail(e.to_string()))?;
        for point in &self.hlog {
            let start =
                Duration::from_nanos((point.start_unix_nanos.max(0) - base_ns).max(0) as u64);
            let duration = Duration::try_from_secs_f64(point.duration_s).unwrap_or_default();
            for m in &point.histograms {
                let (metric, h) =
                    rackload_proto::histogram::decode(m).map_err(|e| fail(e.to_string()))?;
                let name = crate::summary::metric_name(metric).unwrap_or("unknown");
                let tag = format!("{}/{name}", point.label);
                log.write_histogram(&h, start, duration, Tag::new(&tag))
                    .map_err(|e| fail(format!("{e:?}")))?;
            }
        }
        drop(log);
        write_atomic(&path, &buf)
    }

    /// Records how the run ended and writes `run.json`. When there is no room for the
    /// usual atomic rewrite (a full disk), `run.json` is overwritten in place, compact,
    /// so that it still says how the run ended.
    pub fn finish(&mut self, status: &str, message: &str) -> Result<(), ResultsError> {
        status.clone_into(&mut self.status);
        message.clone_into(&mut self.message);
        let Err(e) = self.write() else {
            return Ok(());
        };
        let path = self.dir.join("run.json");
        let compact = serde_json::to_vec(self).map_err(|error| ResultsError::Io {
            path: path.clone(),
            error: std::io::Error::other(error),
        })?;
        match overwrite_in_place(&path, &compact) {
            Ok(()) => {
                tracing::warn!("{e}: wrote {} in place instead", path.display());
                Ok(())
            }
            Err(_) => Err(e),
        }
    }
}

/// A point's telemetry lines (see [`RunRecord::write_telemetry`]).
fn telemetry_lines(point: &PointResult) -> Vec<Value> {
    let mut lines = Vec::new();
    for b in &point.timeline {
        let at = point.start_unix_nanos + (b.t_s * 1e9) as i64;
        lines.push(json!({"kind": "client", "unix_nanos": at, "t_s": b.t_s,
            "completed": b.completed, "failed": b.failed, "output_tokens": b.output_tokens,
            "in_flight": b.in_flight, "ttft_p50_ms": b.ttft_p50_ms, "ttft_p99_ms": b.ttft_p99_ms}));
    }
    for s in &point.power_samples {
        lines.push(
            json!({"kind": "gpu", "unix_nanos": s.unix_nanos, "watts": s.watts, "gpus": s.gpus,
                "energy_j": s.energy_j, "util_pct": s.util_pct, "fb_used_mib": s.fb_used_mib,
                "per_gpu": s.per_gpu.iter().map(|g| (g.gpu.clone(), json!(g.watts)))
                    .collect::<serde_json::Map<String, Value>>()}),
        );
    }
    for s in &point.node_power_samples {
        lines.push(
            json!({"kind": "node", "unix_nanos": s.unix_nanos, "watts": s.watts, "nodes": s.gpus}),
        );
    }
    for s in &point.server_samples {
        lines.push(
            json!({"kind": "server", "unix_nanos": s.unix_nanos, "running": s.running,
            "waiting": s.waiting, "kv_usage": s.kv_usage, "preemptions": s.preemptions,
            "prefix_queries": s.prefix_queries, "prefix_hits": s.prefix_hits}),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a/b.json");
        write_atomic(&p, b"{}").expect("write");
        write_atomic(&p, b"{\"x\":1}").expect("overwrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"{\"x\":1}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("ls")
            .collect();
        assert_eq!(names.len(), 1);
        // A write that fails (here: the target is a folder, so the rename fails) leaves
        // no temporary behind.
        // The full-disk fallback: a shorter record overwrites in place, padded to the old
        // length (still JSON); a longer one is refused and the old file kept whole.
        let p = dir.path().join("a/b.json");
        std::fs::write(&p, b"{\"status\": \"running\", \"points\": []}\n").expect("write");
        overwrite_in_place(&p, br#"{"status":"failed"}"#).expect("fits");
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(text.len(), 36, "the old length");
        let v: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(v["status"], "failed");
        overwrite_in_place(&p, &[b' '; 64]).expect_err("longer");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), text);
        std::fs::create_dir(dir.path().join("a/c.json")).expect("mkdir");
        write_atomic(&dir.path().join("a/c.json"), b"{}").expect_err("a folder");
        assert_eq!(
            std::fs::read_dir(dir.path().join("a")).expect("ls").count(),
            2
        );
    }
}
