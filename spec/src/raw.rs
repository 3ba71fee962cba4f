//! The raw run: what flags and a scenario file say, every field optional, merged field by
//! field (flags over file). A scenario file is TOML with three tables — `[workload]` (the
//! workload flags, same names with underscores), `[target]` and `[run]`; relative paths are
//! relative to the file; unknown keys are errors that name the key.
//!
//! ```toml
//! [workload]
//! scenario = "chat"
//! request_rate = 8.0
//! [target]
//! base_url = ["http://127.0.0.1:8000"]
//! endpoint = "/v1/chat/completions"
//! [run]
//! max_concurrency = [16, 64]     # a sweep: one point each
//! num_prompts = 640
//! ```
//!
//! Values are checked where they enter ([`RawRun::check`]), so an error names the flag or
//! the file's key that said it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rackload_proto::v1::{Endpoint, HttpVersion, LoadBalance, OnWorkerLoss};
use rackload_workloads::WorkloadError;
use rackload_workloads::scenario::WorkloadConfig;
use serde::Deserialize;

use crate::SpecError;
use crate::defaults::{MAX_REQUESTS_PER_POINT, MAX_SECONDS};

/// Where a raw value came from, for naming it in an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flags,
    File(PathBuf),
}

impl Origin {
    /// `--request-timeout`, or `scenario file x.toml: target.request_timeout`.
    pub fn name(&self, table: &str, key: &str) -> String {
        match self {
            // The file's `headers` table is the repeatable `--header` flag.
            Origin::Flags if key == "headers" => "--header".to_owned(),
            // The file's list of rates is the flag's comma-separated list.
            Origin::Flags if key == "request_rates" => "--request-rate".to_owned(),
            Origin::Flags => format!("--{}", key.replace('_', "-")),
            Origin::File(p) => format!("scenario file {}: {table}.{key}", p.display()),
        }
    }
}

/// `[target]`, and the target flags.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub base_url: Option<Vec<String>>,
    pub endpoint: Option<Endpoint>,
    pub model: Option<String>,
    pub request_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub first_byte_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub http: Option<HttpVersion>,
    pub lb: Option<LoadBalance>,
    /// Extra headers, name = value (flags: `--header "Name: value"`).
    pub headers: Option<BTreeMap<String, String>>,
    /// A table merged into every request body (flags: `--extra-body JSON|@FILE`).
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    pub no_stream: Option<bool>,
    pub min_tokens: Option<bool>,
    /// Ask for usage on every chunk (`stream_options.continuous_usage_stats`) to know each
    /// chunk's tokens (flags: `--no-continuous-usage-stats` turns it off).
    pub continuous_usage_stats: Option<bool>,
    pub tls_ca: Option<PathBuf>,
    pub insecure: Option<bool>,
    /// Only from `--api-key` / `RACKLOAD_API_KEY`: a secret has no place in a file.
    #[serde(skip)]
    pub api_key: Option<String>,
}

/// One value or a list of them (`max_concurrency = 16` or `= [4, 8, 16]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected one value or a list of them, e.g. 16 or [4, 8, 16]"
)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[run]`, and the run flags.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunTable {
    pub workers: Option<u32>,
    pub max_concurrency: Option<OneOrMany<i64>>,
    /// `"4:1024:x2"`, as `--concurrency-range`.
    pub concurrency_range: Option<String>,
    pub worker_wait: Option<f64>,
    pub request_rates: Option<Vec<f64>>,
    pub num_prompts: Option<u64>,
    pub warmup: Option<u64>,
    pub duration: Option<f64>,
    pub cooldown: Option<f64>,
    pub max_failure_rate: Option<f64>,
    pub on_worker_loss: Option<OnWorkerLoss>,
    /// As `--trace-sample`.
    pub trace_sample: Option<f64>,
    pub results_dir: Option<PathBuf>,
    /// As `--save-requests`: one record per request in `requests/<point>.jsonl.gz`.
    pub save_requests: Option<bool>,
    /// As `--save-detailed`: vLLM's per-request arrays in the point files (implies
    /// `save_requests`).
    pub save_detailed: Option<bool>,
    /// As `--goodput ttft:MS tpot:MS e2el:MS`: `goodput = { ttft_ms = 2000, tpot_ms = 50 }`.
    pub goodput: Option<GoodputSlo>,
    /// As `--gpu-metrics URL` (repeatable): GPU exporters sampled during every point.
    pub gpu_metrics: Option<Vec<String>>,
    /// As `--telemetry-interval S`.
    pub telemetry_interval: Option<f64>,
    /// As `--server-metrics URL` (repeatable): the servers' own Prometheus pages.
    pub server_metrics: Option<Vec<String>>,
    /// As `--node-power URL` (repeatable): BMCs' Redfish power pages.
    pub node_power: Option<Vec<String>>,
}

/// vLLM's goodput SLOs, in milliseconds; a request is good when it meets every one given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputSlo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl GoodputSlo {
    /// `ttft:2000 tpot:50` (vLLM's `--goodput` values), each `KEY:MS`.
    pub fn parse<'a>(parts: impl IntoIterator<Item = &'a str>) -> Result<GoodputSlo, String> {
        let mut slo = GoodputSlo::default();
        for part in parts {
            let (key, ms) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not KEY:MS (e.g. ttft:2000)"))?;
            let ms: f64 = ms
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: {ms:?} is not a number of milliseconds"))?;
            let slot = match key.trim() {
                "ttft" => &mut slo.ttft_ms,
                "tpot" => &mut slo.tpot_ms,
                "e2el" => &mut slo.e2el_ms,
                other => return Err(format!("{other:?} is not ttft, tpot or e2el")),
            };
            *slot = Some(ms);
        }
        Ok(slo)
    }

    /// Every SLO given is a positive number of milliseconds up to 30 days, and one is given.
    pub fn check(&self) -> Result<(), String> {
        let given = [
            ("ttft", self.ttft_ms),
            ("tpot", self.tpot_ms),
            ("e2el", self.e2el_ms),
        ];
        if given.iter().all(|(_, v)| v.is_none()) {
            return Err("give at least one of ttft, tpot, e2el".into());
        }
        let max = MAX_SECONDS * 1000.0;
        for (key, v) in given {
            if let Some(v) = v.filter(|v| !(*v > 0.0 && *v <= max)) {
                return Err(format!(
                    "{key}: {v:?} is not a number of milliseconds in (0, {max}]"
                ));
            }
        }
        Ok(())
    }

    pub fn to_proto(self) -> rackload_proto::v1::Goodput {
        rackload_proto::v1::Goodput {
            ttft_ms: self.ttft_ms,
            tpot_ms: self.tpot_ms,
            e2el_ms: self.e2el_ms,
        }
    }
}

/// Everything a run can be told, as told.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    #[serde(default)]
    pub workload: WorkloadConfig,
    #[serde(default)]
    pub target: RawTarget,
    #[serde(default)]
    pub run: RawRunTable,
}

macro_rules! or_fields {
    ($a:expr, $b:expr; $($f:ident),* $(,)?) => {
        $( if $a.$f.is_none() { $a.$f = $b.$f; } )*
    };
}

impl RawRun {
    /// Reads a scenario file and checks its values (errors name the file and the key).
    pub fn load(path: &Path) -> Result<RawRun, SpecError> {
        let origin = Origin::File(path.to_owned());
        let text =
            rackload_input::read_text_capped(path, rackload_input::caps::CONFIG, "a scenario file")
                .map_err(|e| SpecError::new("scenario file", e.to_string()))?;
        let mut raw: RawRun = toml::from_str(&text).map_err(|e| {
            SpecError::new(
                format!("scenario file {}", path.display()),
                rackload_input::located(&text, e.span(), e.message()),
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        raw.workload.rebase_paths(dir);
        for p in [&mut raw.target.tls_ca, &mut raw.run.results_dir]
            .into_iter()
            .flatten()
        {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        }
        raw.check(&origin)?;
        Ok(raw)
    }

    /// `self` where it says something, else `base` (headers and body keys merge, `self`'s
    /// winning).
    pub fn or(mut self, base: RawRun) -> RawRun {
        self.workload = self.workload.or(base.workload);
        let (t, b) = (&mut self.target, base.target);
        let headers = merge_maps(b.headers, t.headers.take());
        let extra_body = merge_maps(b.extra_body, t.extra_body.take());
        or_fields!(t, b; base_url, endpoint, model, request_timeout, connect_timeout,
            first_byte_timeout, idle_timeout, http, lb, no_stream, min_tokens,
            continuous_usage_stats, tls_ca, insecure, api_key);
        t.headers = headers;
        t.extra_body = extra_body.map(|m| m.into_iter().collect());
        let (r, b) = (&mut self.run, base.run);
        // A range and a list are one setting: the one given first wins whole.
        if r.max_concurrency.is_none() && r.concurrency_range.is_none() {
            r.max_concurrency = b.max_concurrency;
            r.concurrency_range = b.concurrency_range;
        }
        or_fields!(r, b; workers, worker_wait, request_rates, num_prompts, warmup, duration,
            cooldown, max_failure_rate, on_worker_loss, trace_sample, results_dir,
            save_requests, save_detailed, goodput, gpu_metrics, telemetry_interval,
            server_metrics, node_power);
        self
    }

    /// Checks each value on its own; errors name it as `origin` spells it.
    pub fn check(&self, origin: &Origin) -> Result<(), SpecError> {
        check_workload(&self.workload, origin)?;
        self.check_target(origin)?;
        self.check_run(origin)?;
        self.check_measurements(origin)
    }

    /// `[target]`: timeouts, the CA file's path, URLs, headers.
    fn check_target(&self, origin: &Origin) -> Result<(), SpecError> {
        let t = &self.target;
        let bad = |table: &str, key: &str, reason: String| {
            Err(SpecError::new(origin.name(table, key), reason))
        };
        for (key, v) in [
            ("request_timeout", t.request_timeout),
            ("connect_timeout", t.connect_timeout),
            ("first_byte_timeout", t.first_byte_timeout),
            ("idle_timeout", t.idle_timeout),
        ] {
            if let Some(v) = v.filter(|v| !(0.0..=MAX_SECONDS).contains(v)) {
                return bad(
                    "target",
                    key,
                    format!("{v} is not a number of seconds from 0 (none) to {MAX_SECONDS}"),
                );
            }
        }
        if t.tls_ca.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return bad("target", "tls_ca", "is empty (expected a path)".into());
        }
        for u in t.base_url.iter().flatten() {
            crate::resolve::check_url(&origin.name("target", "base_url"), u)?;
        }
        for (name, _) in t.headers.iter().flatten() {
            if name.trim().is_empty() {
                return bad("target", "headers", "a header has an empty name".into());
            }
            if let Some(why) = rackload_proto::headers::framing_header(name) {
                return bad("target", "headers", why);
            }
        }
        Ok(())
    }

    /// `[run]`: waits, durations, counts, the sweep, rates, ratios, the results folder.
    fn check_run(&self, origin: &Origin) -> Result<(), SpecError> {
        let r = &self.run;
        let bad = |table: &str, key: &str, reason: String| {
            Err(SpecError::new(origin.name(table, key), reason))
        };
        for (key, v) in [("worker_wait", r.worker_wait), ("cooldown", r.cooldown)] {
            if let Some(v) = v.filter(|v| !(0.0..=MAX_SECONDS).contains(v)) {
                return bad(
                    "run",
                    key,
                    format!("{v} is not a number of seconds from 0 to {MAX_SECONDS}"),
                );
            }
        }
        if let Some(d) = r.duration.filter(|d| !(*d > 0.0 && *d <= MAX_SECONDS)) {
            return bad(
                "run",
                "duration",
                format!("{d} is not a positive number of seconds up to {MAX_SECONDS}"),
            );
        }
        for (key, v) in [("num_prompts", r.num_prompts), ("warmup", r.warmup)] {
            if let Some(n) = v.filter(|n| *n > MAX_REQUESTS_PER_POINT) {
                return bad(
                    "run",
                    key,
                    format!("{n} is over the cap of {MAX_REQUESTS_PER_POINT} requests a point"),
                );
            }
        }
        if let Some(w) = r
            .workers
            .filter(|w| !(1..=crate::defaults::MAX_WORKERS).contains(w))
        {
            return bad(
                "run",
                "workers",
                format!("{w} is not in 1..={}", crate::defaults::MAX_WORKERS),
            );
        }
        if let Some(c) = &r.max_concurrency
            && let Some(c) = c
                .to_vec()
                .into_iter()
                .find(|c| !(1..=i64::from(u32::MAX)).contains(c))
        {
            return bad(
                "run",
                "max_concurrency",
                format!("{c} is not a whole number of at least 1"),
            );
        }
        if let Some(s) = &r.concurrency_range
            && let Err(e) = concurrency_range(s)
        {
            return bad("run", "concurrency_range", format!("{s:?}: {e}"));
        }
        if r.num_prompts == Some(0) {
            return bad("run", "num_prompts", "must be at least 1".into());
        }
        let (lo, hi) = rackload_workloads::scenario::RATE_BOUNDS;
        if let Some(rate) = r
            .request_rates
            .iter()
            .flatten()
            .find(|r| !(lo..=hi).contains(*r))
        {
            return bad(
                "run",
                "request_rates",
                format!("{rate:?} is not a rate between {lo} and {hi} per second"),
            );
        }
        for (key, v) in [
            ("max_failure_rate", r.max_failure_rate),
            ("trace_sample", r.trace_sample),
        ] {
            if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
                return bad("run", key, format!("{v} is not a ratio between 0 and 1"));
            }
        }
        if r.results_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad("run", "results_dir", "is empty (expected a path)".into());
        }
        Ok(())
    }

    /// What is measured besides the load: goodput SLOs, metrics pages, their interval.
    fn check_measurements(&self, origin: &Origin) -> Result<(), SpecError> {
        let r = &self.run;
        let bad = |table: &str, key: &str, reason: String| {
            Err(SpecError::new(origin.name(table, key), reason))
        };
        if let Some(Err(e)) = r.goodput.map(|g| g.check()) {
            return bad("run", "goodput", e);
        }
        for (key, urls) in [
            ("gpu_metrics", &r.gpu_metrics),
            ("server_metrics", &r.server_metrics),
            ("node_power", &r.node_power),
        ] {
            for u in urls.iter().flatten() {
                crate::resolve::check_metrics_url(&origin.name("run", key), u)?;
            }
        }
        if let Some(v) = r
            .telemetry_interval
            .filter(|v| !(0.05..=3600.0).contains(v))
        {
            return bad(
                "run",
                "telemetry_interval",
                format!("{v} is not a number of seconds from 0.05 to 3600"),
            );
        }
        Ok(())
    }

    /// The concurrencies of the sweep, duplicates dropped (a point swept twice would only
    /// measure the same thing again under the same label).
    pub fn concurrencies(&self) -> Vec<u32> {
        let all: Vec<u32> = match (&self.run.concurrency_range, &self.run.max_concurrency) {
            (Some(r), _) => concurrency_range(r).unwrap_or_default(),
            (None, Some(c)) => c
                .to_vec()
                .into_iter()
                .filter_map(|c| u32::try_from(c).ok())
                .collect(),
            (None, None) => Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        all.into_iter().filter(|c| seen.insert(*c)).collect()
    }
}

/// The workload's values, each on its own ([`WorkloadConfig::check_values`]), named as
/// `origin` spells them.
pub fn check_workload(w: &WorkloadConfig, origin: &Origin) -> Result<(), SpecError> {
    w.check_values().map_err(|e| match e {
        WorkloadError::Invalid { field, reason } => {
            SpecError::new(origin.name("workload", field), reason)
        }
        e => SpecError::new(origin.name("workload", "workload"), e.to_string()),
    })
}

fn merge_maps<V>(
    base: Option<impl IntoIterator<Item = (String, V)>>,
    over: Option<impl IntoIterator<Item = (String, V)>>,
) -> Option<BTreeMap<String, V>> {
    if base.is_none() && over.is_none() {
        return None;
    }
    let mut m: BTreeMap<String, V> = base.into_iter().flatten().collect();
    m.extend(over.into_iter().flatten());
    Some(m)
}

/// `START:END:xF` (multiply) or `START:END:+N` (add), END included when reached.
pub fn concurrency_range(s: &str) -> Result<Vec<u32>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [start, end, step] = parts[..] else {
        return Err("expected START:END:STEP, e.g. 4:1024:x2 or 8:64:+8".into());
    };
    let num = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} {v:?} is not a whole number"))
    };
    let (start, end) = (num(start, "START")?, num(end, "END")?);
    if start == 0 || end < start {
        return Err(format!("need 1 <= START <= END, got {start}:{end}"));
    }
    let (mul, n) = match step.strip_prefix('x') {
        Some(f) => (true, num(f, "factor")?),
        None => (false, num(step.strip_prefix('+').unwrap_or(step), "step")?),
    };
    if mul && n < 2 {
        return Err("the factor must be at least 2".into());
    }
    if !mul && n == 0 {
        return Err("the step must be at least 1".into());
    }
    let mut out = Vec::new();
    let mut c = u64::from(start);
    while c <= u64::from(end) {
        out.push(c as u32);
        c = if mul {
            c * u64::from(n)
        } else {
            c + u64::from(n)
        };
        if out.len() > 1000 {
            return Err("more than 1000 points is too many for one sweep".into());
        }
    }
    Ok(out)
}
