//! Raw → resolved: the one place a run's defaults apply ([`crate::defaults`]), datasets
//! and files are read, and the points of a sweep are laid out.

use std::path::PathBuf;
use std::time::Duration;

use rackload_proto::v1::Endpoint;
use rackload_workloads::prompt::PromptFormat;
use rackload_workloads::scenario::WorkloadConfig;
use rackload_workloads::{Arrival, WorkloadError, WorkloadSpec};

use crate::SpecError;
use crate::defaults as d;
use crate::raw::RawRun;
use crate::resolved::{Point, ResolvedRun, Target};

/// What the resolver needs to know about where the run goes, beyond what was typed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    /// The target is the embedded sim with its batch model: with no load given, the run
    /// is a short concurrency sweep ([`d::SIM_SWEEP`]) that shows the frontier.
    pub embedded_batch_sim: bool,
}

/// A run resolved, and where its results go.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub run: ResolvedRun,
    pub results_dir: PathBuf,
}

/// What a sweep is made of, as typed.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    pub concurrencies: Vec<u32>,
    pub rates: Vec<f64>,
    pub num_prompts: Option<u64>,
    pub warmup: Option<u64>,
    pub duration: Option<f64>,
    /// The embedded sim's default sweep: [`d::SIM_SWEEP`], 2·C requests per point after
    /// C/2 of warmup (closed loops only).
    pub sim_sweep: bool,
}

/// `flag` must be an absolute http(s) URL with a host.
/// Credentials in it are refused: rackload does not send them (they go in `--api-key` or
/// a header), and the error shows the URL with its secrets hidden.
pub fn check_url(flag: &str, value: &str) -> Result<(), SpecError> {
    let shown = rackload_proto::redact::url(value);
    let url = url::Url::parse(value)
        .map_err(|e| SpecError::new(flag, format!("{shown:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(SpecError::new(
            flag,
            format!("{shown:?} must be an http:// or https:// URL with a host"),
        ));
    }
    if rackload_proto::redact::has_user_info(value) {
        return Err(SpecError::new(
            flag,
            format!(
                "{shown:?} carries credentials, which are not sent: give them with --api-key or --header \"Authorization: …\""
            ),
        ));
    }
    Ok(())
}

/// A page the coordinator reads during every point (`--gpu-metrics`, `--server-metrics`,
/// `--node-power`): an absolute http(s) URL with a host, with no credentials in it (a
/// BMC's come from the environment, [`REDFISH_CREDENTIALS`]).
pub fn check_metrics_url(field: &str, value: &str) -> Result<(), SpecError> {
    if rackload_proto::redact::has_user_info(value) {
        return Err(SpecError::new(
            field,
            format!(
                "{:?} carries credentials, which are not sent: a BMC's come from {REDFISH_CREDENTIALS}",
                rackload_proto::redact::url(value)
            ),
        ));
    }
    check_url(field, value)
}

/// Where a BMC's basic-auth credentials are read from (the coordinator's environment).
pub const REDFISH_CREDENTIALS: &str = "RACKLOAD_REDFISH_USERNAME and RACKLOAD_REDFISH_PASSWORD";

fn opt_secs(
    flag: &str,
    v: Option<f64>,
    default: Option<Duration>,
) -> Result<Option<Duration>, SpecError> {
    match v {
        None => Ok(default),
        Some(0.0) => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| SpecError::new(flag, format!("{s}: {e}"))),
    }
}

/// Resolves a raw run (flags already merged over the file and checked).
pub fn resolve(raw: RawRun, ctx: Context) -> Result<Resolved, SpecError> {
    let t = &raw.target;
    let r = &raw.run;
    // (URLs were checked with the rest of the raw values, named where they came from.)
    let base_urls = t.base_url.clone().unwrap_or_default();
    let rates = r.request_rates.clone().unwrap_or_default();
    let concurrencies = raw.concurrencies();
    let sweep = Sweep {
        sim_sweep: ctx.embedded_batch_sim
            && base_urls.is_empty()
            && concurrencies.is_empty()
            && rates.is_empty(),
        concurrencies,
        rates,
        num_prompts: r.num_prompts,
        warmup: r.warmup,
        duration: r.duration,
    };
    let (workload, points) = resolve_workload(&raw.workload, &sweep)?;
    let endpoint = t.endpoint.unwrap_or(d::ENDPOINT);
    if workload.prompt.format == PromptFormat::TokenIds && endpoint != Endpoint::Completions {
        return Err(SpecError::new(
            "--prompt-format",
            "token-ids needs --endpoint /v1/completions (chat takes text)",
        ));
    }
    let tls_ca_pem = t
        .tls_ca
        .as_ref()
        .map(|p| {
            rackload_input::read_capped(p, rackload_input::caps::CONFIG, "a CA file")
                .map_err(|e| SpecError::new("--tls-ca", e.to_string()))
        })
        .transpose()?;
    let target = Target {
        base_urls,
        endpoint,
        model: t.model.clone().unwrap_or_default(),
        api_key: t.api_key.clone().filter(|k| !k.is_empty()),
        request_timeout: opt_secs("--request-timeout", t.request_timeout, d::REQUEST_TIMEOUT)?,
        connect_timeout: opt_secs("--connect-timeout", t.connect_timeout, d::CONNECT_TIMEOUT)?,
        first_byte_timeout: opt_secs(
            "--first-byte-timeout",
            t.first_byte_timeout,
            d::FIRST_BYTE_TIMEOUT,
        )?,
        idle_timeout: opt_secs("--idle-timeout", t.idle_timeout, d::IDLE_TIMEOUT)?,
        http: t.http.unwrap_or(d::HTTP),
        lb: t.lb.unwrap_or(d::LB),
        headers: t.headers.clone().unwrap_or_default(),
        extra_body: t.extra_body.clone().filter(|m| !m.is_empty()),
        no_stream: t.no_stream.unwrap_or(false),
        min_tokens: t.min_tokens.unwrap_or(false),
        continuous_usage: t
            .continuous_usage_stats
            .unwrap_or(d::CONTINUOUS_USAGE_STATS),
        tls_insecure: t.insecure.unwrap_or(false),
        tls_ca_pem,
    };
    let secs = |v: Option<f64>, default: Duration| {
        v.map_or(default, |s| {
            Duration::try_from_secs_f64(s).unwrap_or(default)
        })
    };
    let mut run = ResolvedRun {
        target,
        workload,
        points,
        workers: r.workers.unwrap_or(d::WORKERS),
        worker_wait: secs(r.worker_wait, d::WORKER_WAIT),
        max_failure_rate: r.max_failure_rate.unwrap_or(d::MAX_FAILURE_RATE),
        cooldown: secs(r.cooldown, d::COOLDOWN),
        on_worker_loss: r.on_worker_loss.unwrap_or(d::ON_WORKER_LOSS),
        trace_sample: 1.0,
        save_requests: r.save_requests.unwrap_or(false) || r.save_detailed.unwrap_or(false),
        save_detailed: r.save_detailed.unwrap_or(false),
        goodput: r.goodput.map(crate::raw::GoodputSlo::to_proto),
        gpu_metrics: r.gpu_metrics.clone().unwrap_or_default(),
        server_metrics: r.server_metrics.clone().unwrap_or_default(),
        node_power: r.node_power.clone().unwrap_or_default(),
        telemetry_interval: r
            .telemetry_interval
            .map_or(d::TELEMETRY_INTERVAL, Duration::from_secs_f64),
    };
    let configured = rackload_telemetry::configured_ratio(r.trace_sample)
        .map_err(|e| SpecError::new("--trace-sample", e.to_string()))?;
    run.trace_sample =
        configured.unwrap_or_else(|| rackload_telemetry::default_ratio(run.planned_requests()));
    Ok(Resolved {
        run,
        results_dir: r
            .results_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(d::RESULTS_DIR)),
    })
}

/// Requests a point sends when not told: the whole trace, 10·C for a closed loop
/// (InferenceX), 1000 for an open loop (vLLM).
pub(crate) fn default_num_prompts(arrival: &Arrival, concurrency: u32) -> Option<u64> {
    match arrival {
        Arrival::Trace { .. } => None,
        Arrival::Closed => Some(d::CLOSED_PROMPTS_PER_STREAM * u64::from(concurrency)),
        _ => Some(d::OPEN_NUM_PROMPTS),
    }
}

/// The request count of a point that only a duration bounds: the requests an open loop
/// schedules inside it, a trace's whole dataset, or for a closed loop a ceiling that the
/// duration reaches first ([`d::CLOSED_CEILING_PER_STREAM_S`]).
fn requests_within(workload: &WorkloadSpec, arrival: &Arrival, concurrency: u32, s: f64) -> u64 {
    match arrival {
        Arrival::Closed => {
            (f64::from(concurrency.max(1)) * s * d::CLOSED_CEILING_PER_STREAM_S).ceil() as u64
        }
        Arrival::Trace { .. } => workload.dataset_len().unwrap_or(1),
        open => open.requests_within(workload.seed, s).unwrap_or(1),
    }
    .max(1)
}

/// Resolves the workload (loading datasets) and the points of the sweep: one per
/// concurrency for a closed loop, one per rate × cap for an open loop.
pub fn resolve_workload(
    cfg: &WorkloadConfig,
    sweep: &Sweep,
) -> Result<(WorkloadSpec, Vec<Point>), SpecError> {
    let mut cfg = cfg.clone();
    if let Some(&r) = sweep.rates.first() {
        cfg.request_rate = Some(r);
    }
    let arrival = cfg.arrival_process().map_err(flag_names)?;
    let open = arrival.is_open();
    let quick = sweep.sim_sweep && !open;
    let concurrencies: Vec<Option<u32>> = if quick {
        d::SIM_SWEEP.iter().copied().map(Some).collect()
    } else if sweep.concurrencies.is_empty() {
        vec![(!open).then_some(d::CONCURRENCY)]
    } else {
        sweep.concurrencies.iter().copied().map(Some).collect()
    };
    if !open && sweep.rates.len() > 1 {
        return Err(SpecError::new(
            "--request-rate",
            "a rate sweep needs an open-loop arrival process",
        ));
    }
    // ShareGPT samples as many entries as the largest point sends (an open loop bounded
    // by a duration: about rate × duration; a closed one cycles through the default's).
    let top_rate = sweep
        .rates
        .iter()
        .copied()
        .reduce(f64::max)
        .or(arrival.rate());
    let wanted = concurrencies
        .iter()
        .map(|&c| {
            sweep
                .num_prompts
                .or_else(|| {
                    sweep
                        .duration
                        .zip(top_rate)
                        .map(|(d, r)| (d * r).ceil() as u64)
                })
                .or_else(|| default_num_prompts(&arrival, c.unwrap_or(0)))
        })
        .max()
        .flatten();
    let workload = cfg.resolve(wanted).map_err(flag_names)?;
    let rates: Vec<Option<f64>> = if open && !sweep.rates.is_empty() {
        sweep.rates.iter().copied().map(Some).collect()
    } else {
        vec![None]
    };
    let mut points = Vec::new();
    for &rate in &rates {
        for &c in &concurrencies {
            let arrival = match rate {
                Some(r) => workload.arrival.with_rate(r),
                None => workload.arrival.clone(),
            };
            let streams = c.unwrap_or(0);
            let n = sweep
                .num_prompts
                .or_else(|| {
                    sweep
                        .duration
                        .map(|s| requests_within(&workload, &arrival, streams, s))
                })
                .or_else(|| quick.then(|| 2 * u64::from(streams)))
                .or_else(|| default_num_prompts(&workload.arrival, streams))
                .or_else(|| workload.dataset_len())
                .unwrap_or(d::OPEN_NUM_PROMPTS);
            let warmup = sweep.warmup.unwrap_or(match (open, quick) {
                (true, _) => 0,
                (false, true) => u64::from(streams / 2),
                (false, false) => d::CLOSED_WARMUP_PER_STREAM * u64::from(streams),
            });
            within_cap(sweep, n, warmup, &label(&arrival, c))?;
            points.push(Point {
                label: label(&arrival, c),
                max_concurrency: c,
                num_prompts: n,
                warmup,
                request_rate: rate,
                duration: sweep
                    .duration
                    .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            });
        }
    }
    Ok((workload, points))
}

/// A point sends at most [`d::MAX_REQUESTS_PER_POINT`] requests with its warmup; the
/// refusal names what asked for more.
fn within_cap(sweep: &Sweep, n: u64, warmup: u64, label: &str) -> Result<(), SpecError> {
    if n.saturating_add(warmup) <= d::MAX_REQUESTS_PER_POINT {
        return Ok(());
    }

    let (flag, why) = match (sweep.num_prompts, sweep.duration, sweep.warmup) {
        // The count alone fits: the warmup given put it over.
        (_, _, Some(_)) if n <= d::MAX_REQUESTS_PER_POINT => ("--warmup", "with its warmup"),
        (Some(_), _, _) => ("--num-prompts", "with its warmup"),
        (None, Some(_), _) => ("--duration", "in its duration"),
        (None, None, _) => ("--max-concurrency", "by default (10 a stream)"),
    };
    Err(SpecError::new(
        flag,
        format!(
            "point {} would send {} requests {why}, over the cap of {} a point",
            label,
            n.saturating_add(warmup),
            d::MAX_REQUESTS_PER_POINT
        ),
    ))
}

/// Spells workload field names as the flags a user typed.
fn flag_names(e: WorkloadError) -> SpecError {
    match e {
        // The reason already names the flags.
        WorkloadError::Invalid { reason, .. } if reason.contains("--") => {
            SpecError::new("", reason)
        }
        WorkloadError::Invalid { field, reason } if field != "dataset" && field != "workload" => {
            SpecError::new(format!("--{}", field.replace('_', "-")), reason)
        }
        e => SpecError::new("", e.to_string()),
    }
}

/// The point's label: `c16` for a closed loop, `r8` (+ `-c64` with a cap) for a rate,
/// `ramp`, `trace`.
fn label(arrival: &Arrival, c: Option<u32>) -> String {
    let num = |r: f64| format!("{r}").replace('.', "p");
    let base = match arrival {
        Arrival::Closed => return format!("c{}", c.unwrap_or(0)),
        Arrival::Poisson { rate } | Arrival::Gamma { rate, .. } | Arrival::Constant { rate } => {
            format!("r{}", num(*rate))
        }
        Arrival::Ramp { .. } => "ramp".to_owned(),
        Arrival::Trace { .. } => "trace".to_owned(),
    };
    match c {
        Some(c) => format!("{base}-c{c}"),
        None => base,
    }
}
