//! The resolved run: every setting decided, typed (enums, `Duration`s, `Option` wherever
//! "none" is a value), and its wire form. [`ResolvedRun::to_proto`] is what the CLI sends;
//! [`ResolvedRun::from_proto`] is how the coordinator reads a submitted run — it trusts no
//! client, so every field is checked and an error names it, but it defaults nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use rackload_proto::v1::{
    Endpoint, HttpVersion, LoadBalance, OnWorkerLoss, PointSpec, RunSpec, TargetSpec,
};
use rackload_workloads::WorkloadSpec;

use crate::SpecError;

/// Where the load goes and how it is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Empty until the embedded mode starts its sim.
    pub base_urls: Vec<String>,
    pub endpoint: Endpoint,
    /// Empty until learned from the target's `/v1/models`.
    pub model: String,
    pub api_key: Option<String>,
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub http: HttpVersion,
    pub lb: LoadBalance,
    pub headers: BTreeMap<String, String>,
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    pub no_stream: bool,
    pub min_tokens: bool,
    /// Ask for usage on every chunk (tokens per chunk from the server's own count).
    pub continuous_usage: bool,
    pub tls_insecure: bool,
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// `c16`, `r8`, `r8-c64`, `ramp`, `trace`.
    pub label: String,
    /// Closed loop: the concurrency. Open loop: a cap on requests in flight, if any.
    pub max_concurrency: Option<u32>,
    pub num_prompts: u64,
    pub warmup: u64,
    /// Open loop: this point's rate, replacing the workload's.
    pub request_rate: Option<f64>,
    /// Send nothing new after this long from the start instant.
    pub duration: Option<Duration>,
}

/// A whole run, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedRun {
    pub target: Target,
    pub workload: WorkloadSpec,
    pub points: Vec<Point>,
    pub workers: u32,
    pub worker_wait: Duration,
    /// 0 = any failed request fails the point's gate.
    pub max_failure_rate: f64,
    pub cooldown: Duration,
    pub on_worker_loss: OnWorkerLoss,
    /// Share of requests that get a trace span.
    pub trace_sample: f64,
    /// Workers send a record of every measured request.
    pub save_requests: bool,
    /// The records carry chunk gaps, and point files vLLM's detailed arrays.
    pub save_detailed: bool,
    /// vLLM's goodput SLOs (none: no goodput measured).
    pub goodput: Option<rackload_proto::v1::Goodput>,
    /// GPU exporters the coordinator reads during every point, and how often.
    pub gpu_metrics: Vec<String>,
    pub telemetry_interval: Duration,
    /// The servers' own Prometheus pages, read likewise.
    pub server_metrics: Vec<String>,
    /// BMCs' Redfish power pages, read likewise.
    pub node_power: Vec<String>,
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

impl Target {
    pub fn to_proto(&self) -> TargetSpec {
        TargetSpec {
            base_urls: self.base_urls.clone(),
            endpoint: self.endpoint.into(),
            model: self.model.clone(),
            api_key: self.api_key.clone().unwrap_or_default(),
            request_timeout_s: secs(self.request_timeout),
            http: self.http.into(),
            connect_timeout_s: secs(self.connect_timeout),
            first_byte_timeout_s: secs(self.first_byte_timeout),
            idle_timeout_s: secs(self.idle_timeout),
            headers: self.headers.clone().into_iter().collect(),
            extra_body_json: self
                .extra_body
                .as_ref()
                .and_then(|m| serde_json::to_vec(m).ok())
                .unwrap_or_default(),
            lb: self.lb.into(),
            no_stream: self.no_stream,
            min_tokens: self.min_tokens,
            no_continuous_usage: !self.continuous_usage,
            tls_insecure: self.tls_insecure,
            tls_ca_pem: self.tls_ca_pem.clone().unwrap_or_default(),
        }
    }
}

impl Point {
    pub fn to_proto(&self) -> PointSpec {
        PointSpec {
            label: self.label.clone(),
            max_concurrency: self.max_concurrency,
            num_prompts: self.num_prompts,
            warmup_prompts: self.warmup,
            request_rate: self.request_rate,
            duration_s: secs(self.duration),
        }
    }

    /// Measured and warmup requests together.
    pub(crate) fn total_requests(&self) -> u64 {
        self.num_prompts.saturating_add(self.warmup)
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::new(field, reason)
}

/// A positive, finite number of seconds, or absent.
fn duration(field: &str, v: Option<f64>) -> Result<Option<Duration>, SpecError> {
    match v {
        None => Ok(None),
        Some(s) if s > 0.0 && s.is_finite() => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| err(field, e.to_string())),
        Some(s) => Err(err(
            field,
            format!("{s} is not a positive number of seconds (absent = none)"),
        )),
    }
}

fn enumerated<T: TryFrom<i32> + PartialEq + Copy>(
    field: &str,
    v: i32,
    unset: T,
) -> Result<T, SpecError> {
    match T::try_from(v) {
        Ok(t) if t != unset => Ok(t),
        _ => Err(err(field, format!("{v} is not set to a known value"))),
    }
}

impl ResolvedRun {
    /// The run as the CLI sends it.
    pub fn to_proto(&self) -> RunSpec {
        RunSpec {
            target: Some(self.target.to_proto()),
            workload: Some((&self.workload).into()),
            points: self.points.iter().map(Point::to_proto).collect(),
            workers: self.workers,
            worker_wait_s: self.worker_wait.as_secs_f64(),
            max_failure_rate: Some(self.max_failure_rate),
            cooldown_s: self.cooldown.as_secs_f64(),
            on_worker_loss: self.on_worker_loss.into(),
            trace_sample: Some(self.trace_sample),
            save_requests: self.save_requests,
            save_detailed: self.save_detailed,
            goodput: self.goodput,
            gpu_metrics: self.gpu_metrics.clone(),
            telemetry_interval_s: self.telemetry_interval.as_secs_f64(),
            server_metrics: self.server_metrics.clone(),
            node_power: self.node_power.clone(),
        }
    }

    /// Reads and checks a submitted run; every error names the field.
    pub fn from_proto(spec: &RunSpec) -> Result<ResolvedRun, SpecError> {
        let t = spec
            .target
            .as_ref()
            .ok_or_else(|| err("target", "missing"))?;
        let target = target_from_proto(t)?;
        let workload = spec
            .workload
            .as_ref()
            .ok_or_else(|| err("workload", "missing"))?;
        let workload =
            WorkloadSpec::try_from(workload).map_err(|e| err("workload", e.to_string()))?;
        if spec.workers == 0 {
            return Err(err("workers", "at least one worker is needed"));
        }
        let max_failure_rate = spec
            .max_failure_rate
            .ok_or_else(|| err("max_failure_rate", "missing"))?;
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(err("max_failure_rate", "must be between 0 and 1"));
        }
        let trace_sample = spec
            .trace_sample
            .ok_or_else(|| err("trace_sample", "missing"))?;
        if !(0.0..=1.0).contains(&trace_sample) {
            return Err(err("trace_sample", "must be between 0 and 1"));
        }
        let nonneg = |field: &str, s: f64| {
            if (0.0..=crate::defaults::MAX_SECONDS).contains(&s) {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(err(field, "must be a number of seconds from 0 to 30 days"))
            }
        };
        if let Some(g) = &spec.goodput {
            let slo = crate::raw::GoodputSlo {
                ttft_ms: g.ttft_ms,
                tpot_ms: g.tpot_ms,
                e2el_ms: g.e2el_ms,
            };
            slo.check().map_err(|e| err("goodput", e))?;
        }
        if spec.points.is_empty() {
            return Err(err("points", "a run needs at least one point"));
        }
        let mut points = Vec::with_capacity(spec.points.len());
        let mut labels = std::collections::HashSet::new();
        for (k, p) in spec.points.iter().enumerate() {
            let point = point_from_proto(k, p, workload.arrival.is_open())?;
            if !labels.insert(point.label.clone()) {
                return Err(err(
                    format!("points[{k}].label"),
                    format!("{:?} is used twice", p.label),
                ));
            }
            points.push(point);
        }
        Ok(ResolvedRun {
            target,
            workload,
            points,
            workers: spec.workers,
            worker_wait: nonneg("worker_wait_s", spec.worker_wait_s)?,
            max_failure_rate,
            cooldown: nonneg("cooldown_s", spec.cooldown_s)?,
            on_worker_loss: enumerated(
                "on_worker_loss",
                spec.on_worker_loss,
                OnWorkerLoss::Unspecified,
            )?,
            trace_sample,
            // Detailed arrays are made from the records.
            save_requests: spec.save_requests || spec.save_detailed,
            save_detailed: spec.save_detailed,
            goodput: spec.goodput,
            gpu_metrics: spec.gpu_metrics.clone(),
            telemetry_interval: telemetry_interval(spec)?,
            server_metrics: spec.server_metrics.clone(),
            node_power: spec.node_power.clone(),
        })
    }

    /// Measured and warmup requests of every point.
    pub(crate) fn planned_requests(&self) -> u64 {
        self.points
            .iter()
            .map(Point::total_requests)
            .fold(0, u64::saturating_add)
    }
}

fn point_from_proto(k: usize, p: &PointSpec, open: bool) -> Result<Point, SpecError> {
    let field = |f: &str| format!("points[{k}].{f}");
    if p.label.is_empty()
        || p.label.len() > 128
        || !p
            .label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || p.label.starts_with('.')
    {
        return Err(err(
            field("label"),
            format!(
                "{:?} must be 1 to 128 letters, digits, '-', '_' or '.'",
                p.label
            ),
        ));
    }
    match p.max_concurrency {
        None if !open => {
            return Err(err(field("max_concurrency"), "a closed loop needs one"));
        }
        Some(0) => return Err(err(field("max_concurrency"), "must be at least 1")),
        _ => {}
    }
    if p.num_prompts == 0 {
        return Err(err(field("num_prompts"), "must be at least 1"));
    }
    // The caps the CLI applies, again: a run may come from another client.
    let sent = p.num_prompts.saturating_add(p.warmup_prompts);
    if sent > crate::defaults::MAX_REQUESTS_PER_POINT {
        return Err(err(
            field("num_prompts"),
            format!(
                "{sent} requests with warmup is over the cap of {} a point",
                crate::defaults::MAX_REQUESTS_PER_POINT
            ),
        ));
    }
    let (lo, hi) = rackload_workloads::scenario::RATE_BOUNDS;
    if let Some(r) = p.request_rate.filter(|r| !(lo..=hi).contains(r)) {
        return Err(err(
            field("request_rate"),
            format!("{r:?} is not a rate between {lo} and {hi} per second"),
        ));
    }
    Ok(Point {
        label: p.label.clone(),
        max_concurrency: p.max_concurrency,
        num_prompts: p.num_prompts,
        warmup: p.warmup_prompts,
        request_rate: p.request_rate,
        duration: duration(&field("duration_s"), p.duration_s)?,
    })
}

/// The sampling interval, when there is something to sample (else unused, and 0 allowed).
fn telemetry_interval(spec: &RunSpec) -> Result<Duration, SpecError> {
    for (key, urls) in [
        ("gpu_metrics", &spec.gpu_metrics),
        ("server_metrics", &spec.server_metrics),
        ("node_power", &spec.node_power),
    ] {
        for (k, u) in urls.iter().enumerate() {
            crate::resolve::check_metrics_url(&format!("{key}[{k}]"), u)?;
        }
    }
    let s = spec.telemetry_interval_s;
    match s {
        _ if spec.gpu_metrics.is_empty()
            && spec.server_metrics.is_empty()
            && spec.node_power.is_empty() =>
        {
            Ok(crate::defaults::TELEMETRY_INTERVAL)
        }
        s if (0.05..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        s => Err(err(
            "telemetry_interval_s",
            format!("{s} is not a number of seconds from 0.05 to 3600"),
        )),
    }
}

fn target_from_proto(t: &TargetSpec) -> Result<Target, SpecError> {
    if t.base_urls.is_empty() {
        return Err(err("target.base_urls", "at least one base URL is needed"));
    }
    for (k, u) in t.base_urls.iter().enumerate() {
        crate::resolve::check_url(&format!("target.base_urls[{k}]"), u)?;
    }
    let extra_body = if t.extra_body_json.is_empty() {
        None
    } else {
        match serde_json::from_slice(&t.extra_body_json) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => return Err(err("target.extra_body_json", "not a JSON object")),
        }
    };
    Ok(Target {
        base_urls: t.base_urls.clone(),
        endpoint: enumerated("target.endpoint", t.endpoint, Endpoint::Unspecified)?,
        model: t.model.clone(),
        api_key: (!t.api_key.is_empty()).then(|| t.api_key.clone()),
        request_timeout: duration("target.request_timeout_s", t.request_timeout_s)?,
        connect_timeout: duration("target.connect_timeout_s", t.connect_timeout_s)?,
        first_byte_timeout: duration("target.first_byte_timeout_s", t.first_byte_timeout_s)?,
        idle_timeout: duration("target.idle_timeout_s", t.idle_timeout_s)?,
        http: enumerated("target.http", t.http, HttpVersion::Unspecified)?,
        lb: enumerated("target.lb", t.lb, LoadBalance::Unspecified)?,
        headers: t.headers.clone().into_iter().collect(),
        extra_body,
        no_stream: t.no_stream,
        min_tokens: t.min_tokens,
        continuous_usage: !t.no_continuous_usage,
        tls_insecure: t.tls_insecure,
        tls_ca_pem: (!t.tls_ca_pem.is_empty()).then(|| t.tls_ca_pem.clone()),
    })
}
