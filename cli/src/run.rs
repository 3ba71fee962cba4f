//! `rackload run`: resolve the flags into a `RunSpec`, start the embedded fabric when no
//! coordinator is given (sim unless --base-url, coordinator, workers — real processes on
//! loopback, the same code paths as a distributed run), submit the run, follow its events,
//! write results as points finish, print vLLM-style summaries, and stop every child on
//! every way out (success, error, Ctrl-C).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rackload_analysis::catalog::Catalog;
use rackload_analysis::results::RunRecord;
use rackload_analysis::summary::PointSummary;
use rackload_proto::v1::control_client::ControlClient;
use rackload_proto::v1::run_event::Event;
use rackload_proto::v1::{AbortRunRequest, PointResult, PointSpec, RunSpec, RunStatus, TargetSpec};
use std::path::PathBuf;

use rackload_workloads::prompt::PromptFormat;
use rackload_workloads::scenario::WorkloadConfig;
use rackload_workloads::{Arrival, Lengths, WorkloadSpec};
use serde_json::json;
use tonic::transport::Channel;

use crate::args::{Endpoint, RunArgs, check_url};
use crate::children::Children;
use crate::progress::PointProgress;
use crate::scenario_file::{ScenarioFile, TargetConfig};

/// The model name the embedded sim serves.
const SIM_MODEL: &str = "rackload-sim";

/// A run resolved from flags, scenario file and defaults: the one place defaults apply.
pub struct Resolved {
    pub spec: RunSpec,
    pub workload: WorkloadSpec,
    pub results_dir: PathBuf,
}

/// Requests a point sends when not told: the whole trace, 10·C for a closed loop
/// (InferenceX), 1000 for an open loop (vLLM).
pub fn default_num_prompts(arrival: &Arrival, concurrency: u32) -> Option<u64> {
    match arrival {
        Arrival::Trace { .. } => None,
        Arrival::Closed => Some(10 * u64::from(concurrency)),
        _ => Some(1000),
    }
}

/// A closed-loop stream slot sends at most this many requests a second (0.1 ms each,
/// faster than any real server answers); it sizes the stream of a point that only a
/// duration bounds, so that the duration, not the count, ends it.
pub const CLOSED_CEILING_PER_SLOT_S: f64 = 10_000.0;

/// The request count of a point that only a duration bounds: the requests an open loop
/// schedules inside it, a trace's whole dataset, or for a closed loop a ceiling that the
/// duration reaches first ([`CLOSED_CEILING_PER_SLOT_S`]).
fn requests_within(workload: &WorkloadSpec, arrival: &Arrival, concurrency: u32, s: f64) -> u64 {
    match arrival {
        Arrival::Closed => {
            (f64::from(concurrency.max(1)) * s * CLOSED_CEILING_PER_SLOT_S).ceil() as u64
        }
        Arrival::Trace { .. } => workload.dataset_len().unwrap_or(1),
        open => open.requests_within(workload.seed, s).unwrap_or(1),
    }
    .max(1)
}

/// Closed-loop concurrency when not told.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// What a sweep is made of, as typed.
#[derive(Debug, Default)]
pub struct SweepArgs {
    pub concurrencies: Vec<u32>,
    pub rates: Vec<f64>,
    pub num_prompts: Option<u64>,
    pub warmup: Option<u64>,
    pub duration: Option<f64>,
    /// The default sweep of the embedded sim (when closed loop): [`SIM_SWEEP`], 2·C
    /// requests per point after C/2 of warmup.
    pub sim_sweep: bool,
}

/// Concurrencies of `rackload run` on the embedded sim when no load is given.
pub const SIM_SWEEP: [u32; 4] = [1, 8, 32, 128];

/// Resolves the workload of `flags` over `file` (loading datasets) and the points of the
/// sweep: one per concurrency for a closed loop, one per rate × cap for an open loop.
pub fn resolve_workload(
    flags: WorkloadConfig,
    file: WorkloadConfig,
    sweep: &SweepArgs,
) -> anyhow::Result<(WorkloadSpec, Vec<PointSpec>)> {
    let mut cfg = flags.or(file);
    if let Some(&r) = sweep.rates.first() {
        cfg.request_rate = Some(r);
    }
    let arrival = cfg.arrival_process().map_err(flag_names)?;
    let open = arrival.is_open();
    let quick = sweep.sim_sweep && !open;
    let concurrencies: Vec<u32> = if quick {
        SIM_SWEEP.to_vec()
    } else if sweep.concurrencies.is_empty() {
        vec![if open { 0 } else { DEFAULT_CONCURRENCY }]
    } else {
        sweep.concurrencies.clone()
    };
    if !open && sweep.rates.len() > 1 {
        bail!("a rate sweep needs an open-loop arrival process");
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
                .or_else(|| default_num_prompts(&arrival, c))
        })
        .max()
        .flatten();
    let workload = cfg.resolve(wanted).map_err(flag_names)?;
    let rates: Vec<f64> = if open && !sweep.rates.is_empty() {
        sweep.rates.clone()
    } else {
        vec![0.0]
    };
    let mut points = Vec::new();
    for &rate in &rates {
        for &c in &concurrencies {
            let arrival = if rate > 0.0 {
                workload.arrival.with_rate(rate)
            } else {
                workload.arrival.clone()
            };
            let n = sweep
                .num_prompts
                .or_else(|| {
                    sweep
                        .duration
                        .map(|d| requests_within(&workload, &arrival, c, d))
                })
                .or_else(|| quick.then(|| 2 * u64::from(c)))
                .or_else(|| default_num_prompts(&workload.arrival, c))
                .or_else(|| workload.dataset_len())
                .unwrap_or(1000);
            let warmup = sweep.warmup.unwrap_or(match (open, quick) {
                (true, _) => 0,
                (false, true) => u64::from(c / 2),
                (false, false) => 2 * u64::from(c),
            });
            points.push(PointSpec {
                label: label(&arrival, c),
                max_concurrency: c,
                num_prompts: n,
                warmup_prompts: warmup,
                request_rate: rate,
                duration_s: sweep.duration.unwrap_or(0.0),
            });
        }
    }
    Ok((workload, points))
}

/// Spells workload field names as the flags a user typed.
fn flag_names(e: rackload_workloads::WorkloadError) -> anyhow::Error {
    use rackload_workloads::WorkloadError;
    match e {
        // The reason already names the flags.
        WorkloadError::Invalid { reason, .. } if reason.contains("--") => {
            anyhow::anyhow!("{reason}")
        }
        WorkloadError::Invalid { field, reason } if field != "dataset" && field != "workload" => {
            anyhow::anyhow!("--{}: {reason}", field.replace('_', "-"))
        }
        e => anyhow::anyhow!("{e}"),
    }
}

/// The point's label: `c16` for a closed loop, `r8` (+ `-c64` with a cap) for a rate,
/// `ramp`, `trace`.
fn label(arrival: &Arrival, c: u32) -> String {
    let num = |r: f64| {
        let s = format!("{r}");
        s.replace('.', "p")
    };
    let base = match arrival {
        Arrival::Closed => return format!("c{c}"),
        Arrival::Poisson { rate } | Arrival::Gamma { rate, .. } | Arrival::Constant { rate } => {
            format!("r{}", num(*rate))
        }
        Arrival::Ramp { .. } => "ramp".to_owned(),
        Arrival::Trace { .. } => "trace".to_owned(),
    };
    if c > 0 { format!("{base}-c{c}") } else { base }
}

/// Resolves flags and scenario file into a run (target URLs and model may still be
/// filled in by the embedded mode).
fn resolve(args: &RunArgs) -> anyhow::Result<Resolved> {
    let file = ScenarioFile::load(args.scenario_file.as_deref())?;
    let base_urls = if args.base_urls.is_empty() {
        file.target.base_url.clone().unwrap_or_default()
    } else {
        args.base_urls.clone()
    };
    for u in &base_urls {
        check_url("--base-url", u)?;
    }
    if let Some(c) = &args.coordinator {
        check_url("--coordinator", c)?;
    }
    let endpoint = match (args.endpoint, &file.target.endpoint) {
        (Some(e), _) => e.path().to_owned(),
        (None, Some(e)) => {
            if !rackload_coordinator::spec::ENDPOINTS.contains(&e.as_str()) {
                bail!(
                    "scenario file: target.endpoint {e:?} is not one of {}",
                    rackload_coordinator::spec::ENDPOINTS.join(", ")
                );
            }
            e.clone()
        }
        (None, None) => Endpoint::Completions.path().to_owned(),
    };
    let request_timeout = args
        .request_timeout
        .or(file.target.request_timeout)
        .unwrap_or(600.0);
    if !(request_timeout >= 0.0 && request_timeout.is_finite()) {
        bail!("--request-timeout must be a non-negative number of seconds");
    }
    let worker_wait = args.worker_wait.or(file.run.worker_wait).unwrap_or(30.0);
    if !(worker_wait >= 0.0 && worker_wait.is_finite()) {
        bail!("--worker-wait must be a non-negative number of seconds");
    }
    let workers = args.workers.or(file.run.workers).unwrap_or(2);
    if !(1..=10_000).contains(&workers) {
        bail!("scenario file: run.workers {workers} is not in 1..=10000");
    }
    let concurrencies = match (&args.concurrency_range, args.max_concurrency.is_empty()) {
        (Some(range), _) => range.0.clone(),
        (None, false) => args.max_concurrency.clone(),
        (None, true) => match (&file.run.concurrency_range, &file.run.max_concurrency) {
            (Some(r), _) => crate::args::concurrency_range(r)
                .map_err(|e| anyhow::anyhow!("scenario file: run.concurrency_range: {e}"))?,
            (None, Some(c)) => c.to_vec(),
            (None, None) => Vec::new(),
        },
    };
    // A point swept twice would only measure the same thing again under the same label.
    let mut seen = std::collections::HashSet::new();
    let concurrencies: Vec<u32> = concurrencies
        .into_iter()
        .filter(|c| seen.insert(*c))
        .collect();
    if concurrencies.contains(&0) {
        bail!("scenario file: run.max_concurrency must be at least 1");
    }
    let num_prompts = args.num_prompts.or(file.run.num_prompts);
    if num_prompts == Some(0) {
        bail!("scenario file: run.num_prompts must be at least 1");
    }
    let flag_rates: Vec<f64> = args
        .workload
        .request_rate
        .iter()
        .filter_map(|r| r.0)
        .collect();
    if args.workload.request_rate.len() > 1 && flag_rates.len() != args.workload.request_rate.len()
    {
        bail!("--request-rate: inf cannot be part of a rate sweep");
    }
    let mut seen_rates: Vec<f64> = Vec::new();
    let flag_rates: Vec<f64> = flag_rates
        .into_iter()
        .filter(|r| {
            let new = !seen_rates.contains(r);
            seen_rates.push(*r);
            new
        })
        .collect();
    let rates = if flag_rates.is_empty() {
        file.run.request_rates.clone().unwrap_or_default()
    } else {
        flag_rates
    };
    if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("scenario file: run.request_rates must be positive numbers");
    }
    let duration = args.duration.or(file.run.duration);
    if duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        bail!("--duration must be a positive number of seconds");
    }
    // With nothing said about the load and the embedded batch-model sim as the target, the
    // run shows a throughput-vs-interactivity curve: a short concurrency sweep.
    let sim_sweep = base_urls.is_empty()
        && args.coordinator.is_none()
        && args.sim_ttft_ms.is_none()
        && args.sim_itl_ms.is_none()
        && concurrencies.is_empty()
        && rates.is_empty();
    let sweep = SweepArgs {
        concurrencies,
        rates,
        num_prompts,
        warmup: args.warmup.or(file.run.warmup),
        duration,
        sim_sweep,
    };
    let max_failure_rate = args
        .max_failure_rate
        .or(file.run.max_failure_rate)
        .unwrap_or(0.05);
    if !(0.0..=1.0).contains(&max_failure_rate) {
        bail!("--max-failure-rate must be between 0 and 1");
    }
    let cooldown = args.cooldown.or(file.run.cooldown).unwrap_or(0.0);
    if !(cooldown >= 0.0 && cooldown.is_finite()) {
        bail!("--cooldown must be a non-negative number of seconds");
    }
    let on_worker_loss = args
        .on_worker_loss
        .clone()
        .or_else(|| file.run.on_worker_loss.clone())
        .unwrap_or_else(|| "continue".to_owned());
    if !matches!(on_worker_loss.as_str(), "continue" | "abort") {
        bail!("scenario file: run.on_worker_loss {on_worker_loss:?} is not continue or abort");
    }
    let (workload, points) = resolve_workload(args.workload.config(), file.workload, &sweep)?;
    if workload.prompt.format == PromptFormat::TokenIds && endpoint != Endpoint::Completions.path()
    {
        bail!("--prompt-format token-ids needs --endpoint /v1/completions (chat takes text)");
    }
    let target = target_options(
        args,
        &file.target,
        TargetSpec {
            base_urls,
            endpoint,
            model: args
                .model
                .clone()
                .or(file.target.model.clone())
                .unwrap_or_default(),
            api_key: args.api_key.clone().unwrap_or_default(),
            request_timeout_s: request_timeout,
            ..TargetSpec::default()
        },
    )?;
    let planned: u64 = points
        .iter()
        .map(|p| p.num_prompts.saturating_add(p.warmup_prompts))
        .fold(0, u64::saturating_add);
    if let Some(r) = file.run.trace_sample.filter(|r| !(0.0..=1.0).contains(r)) {
        bail!("scenario file: run.trace_sample {r} is not a ratio between 0 and 1");
    }
    let trace_sample =
        match rackload_telemetry::configured_ratio(args.trace_sample.or(file.run.trace_sample))? {
            Some(r) => r,
            None => rackload_telemetry::default_ratio(planned),
        };
    let spec = RunSpec {
        target: Some(target),
        workload: Some((&workload).into()),
        points,
        workers,
        worker_wait_s: worker_wait,
        max_failure_rate,
        cooldown_s: cooldown,
        on_worker_loss,
        trace_sample: Some(trace_sample),
    };
    let results_dir = args
        .results_dir
        .clone()
        .or(file.run.results_dir)
        .unwrap_or_else(|| PathBuf::from("results"));
    Ok(Resolved {
        spec,
        workload,
        results_dir,
    })
}

/// The target's connection and request options, flags over the scenario file, checked
/// here (by building the client the workers will build) so that a bad one is refused
/// before anything starts.
fn target_options(
    args: &RunArgs,
    file: &TargetConfig,
    mut t: TargetSpec,
) -> anyhow::Result<TargetSpec> {
    let secs = |flag: &str, v: Option<f64>| -> anyhow::Result<f64> {
        let v = v.unwrap_or(0.0);
        if !(v >= 0.0 && v.is_finite()) {
            bail!("--{flag} must be a non-negative number of seconds, not {v}");
        }
        Ok(v)
    };
    t.connect_timeout_s = secs(
        "connect-timeout",
        args.connect_timeout.or(file.connect_timeout),
    )?;
    t.first_byte_timeout_s = secs(
        "first-byte-timeout",
        args.first_byte_timeout.or(file.first_byte_timeout),
    )?;
    t.idle_timeout_s = secs("idle-timeout", args.idle_timeout.or(file.idle_timeout))?;
    t.http = args
        .http
        .clone()
        .or_else(|| file.http.clone())
        .unwrap_or_else(|| "auto".to_owned());
    t.lb = args
        .lb
        .clone()
        .or_else(|| file.lb.clone())
        .unwrap_or_else(|| "round-robin".to_owned());
    for (name, value) in file.headers.iter().flatten() {
        t.headers.insert(name.clone(), value.clone());
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} must look like \"Name: value\""))?;
        let name = name.trim();
        if name.is_empty() {
            bail!("--header {h:?} has no name before ':'");
        }
        t.headers.insert(name.to_owned(), value.trim().to_owned());
    }
    let mut extra = serde_json::Map::new();
    if let Some(table) = &file.extra_body {
        let v = serde_json::to_value(table).context("scenario file: target.extra_body")?;
        if let serde_json::Value::Object(m) = v {
            extra.extend(m);
        }
    }
    if let Some(text) = &args.extra_body {
        let (what, text) = match text.strip_prefix('@') {
            Some(path) => (
                format!("--extra-body file {path}"),
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --extra-body file {path}"))?,
            ),
            None => ("--extra-body".to_owned(), text.clone()),
        };
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(m)) => extra.extend(m),
            Ok(other) => bail!("{what} must be a JSON object, not {other}"),
            Err(e) => bail!("{what} is not JSON: {e}"),
        }
    }
    if !extra.is_empty() {
        t.extra_body_json = serde_json::to_vec(&extra)?;
    }
    t.no_stream = args.no_stream || file.no_stream.unwrap_or(false);
    t.min_tokens = args.min_tokens || file.min_tokens.unwrap_or(false);
    t.tls_insecure = args.insecure || file.insecure.unwrap_or(false);
    if let Some(path) = args.tls_ca.as_ref().or(file.tls_ca.as_ref()) {
        t.tls_ca_pem = std::fs::read(path)
            .with_context(|| format!("cannot read --tls-ca {}", path.display()))?;
    }
    if !t.base_urls.is_empty() {
        rackload_worker::target::OpenAiTarget::new(&t, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(t)
}

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let resolved = resolve(&args)?;
    let mut children = Children::default();
    let result = run_with(&args, resolved, &mut children).await;
    children.shutdown().await;
    result
}

/// The Control client of `url`, with the token and TLS of `auth`.
pub type Control = ControlClient<
    tonic::service::interceptor::InterceptedService<Channel, rackload_proto::auth::BearerToken>,
>;

pub async fn connect(
    url: &str,
    auth: &rackload_proto::auth::ClientAuth,
) -> anyhow::Result<Control> {
    let interceptor = auth.interceptor()?;
    let channel = auth
        .endpoint(url)
        .map_err(|e| anyhow::anyhow!("--coordinator: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach coordinator at {url}: {}",
                rackload_worker::target::openai::error_chain(&e)
            )
        })?;
    Ok(ControlClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(rackload_coordinator::MAX_MESSAGE)
        .max_encoding_message_size(rackload_coordinator::MAX_MESSAGE))
}

async fn run_with(
    args: &RunArgs,
    resolved: Resolved,
    children: &mut Children,
) -> anyhow::Result<ExitCode> {
    let Resolved {
        mut spec,
        workload,
        results_dir,
    } = resolved;
    let mut environment = json!({ "host": rackload_worker::session::host_name() });
    eprintln!("{}", describe(&workload, &spec));
    let target = spec.target.get_or_insert_default();
    let embedded_sim = target.base_urls.is_empty() && args.coordinator.is_none();
    if target.base_urls.is_empty() && args.coordinator.is_some() {
        bail!(
            "--base-url is needed with --coordinator: the embedded sim runs only in embedded mode"
        );
    }
    if embedded_sim {
        let mut sim_args: Vec<String> = ["sim", "--listen", "127.0.0.1:0", "--model", SIM_MODEL]
            .map(str::to_owned)
            .to_vec();
        if args.sim_ttft_ms.is_some() || args.sim_itl_ms.is_some() {
            let (ttft, itl) = (args.sim_ttft_ms.unwrap_or(50), args.sim_itl_ms.unwrap_or(2));
            sim_args.extend([
                "--ttft-ms".into(),
                ttft.to_string(),
                "--itl-ms".into(),
                itl.to_string(),
            ]);
            environment["sim"] = json!({"ttft_ms": ttft, "itl_ms": itl, "model": SIM_MODEL});
        } else {
            let name = args
                .sim_profile
                .clone()
                .unwrap_or_else(|| rackload_sim::profile::DEFAULT.to_owned());
            let profile = rackload_sim::Profile::load(&name)
                .map_err(|e| anyhow::anyhow!("--sim-profile: {e}"))?;
            let replicas = args.sim_replicas.unwrap_or(1);
            sim_args.extend([
                "--profile".into(),
                name,
                "--replicas".into(),
                replicas.to_string(),
            ]);
            environment["sim"] = json!({
                "model": SIM_MODEL,
                "profile": profile,
                "replicas": replicas,
                "gpus": profile.gpus_per_replica * replicas,
            });
        }
        let refs: Vec<&str> = sim_args.iter().map(String::as_str).collect();
        let url = children.start_server("sim", &refs).await?;
        target.base_urls.push(url);
    }
    if target.model.is_empty() {
        target.model = if embedded_sim {
            SIM_MODEL.to_owned()
        } else {
            let base = &target.base_urls[0];
            let models = rackload_worker::target::openai::list_models(base, target)
                .await
                .with_context(|| {
                    format!("cannot learn the model name from {base} (give --model)")
                })?;
            models
                .into_iter()
                .next()
                .with_context(|| format!("{base}/v1/models lists no model (give --model)"))?
        };
    }
    let (coordinator_url, auth) = match &args.coordinator {
        Some(url) => {
            environment["mode"] = json!("coordinator");
            (url.clone(), args.security.client())
        }
        None => {
            environment["mode"] = json!("embedded");
            let metrics = args.metrics_listen.map(|a| a.to_string());
            let mut coordinator = vec!["coordinator", "--listen", "127.0.0.1:0"];
            if let Some(m) = &metrics {
                coordinator.extend(["--metrics-listen", m.as_str()]);
            }
            let url = children.start_server("coordinator", &coordinator).await?;
            for k in 1..=spec.workers {
                let id = format!("worker-{k}");
                children.start(&id, &["worker", "--coordinator", &url, "--id", &id])?;
            }
            (url, rackload_proto::auth::ClientAuth::default())
        }
    };
    environment["coordinator"] = json!(coordinator_url);
    if let Some(system) = &args.system {
        Catalog::embedded()
            .system(system)
            .map_err(|e| anyhow::anyhow!("--system: {e}"))?;
        environment["system"] = json!(system);
    }
    if let Some(gpus) = args.gpus {
        environment["gpus"] = json!(gpus);
    }
    rackload_coordinator::spec::validate(&spec).map_err(|e| anyhow::anyhow!("invalid run: {e}"))?;

    let mut client = connect(&coordinator_url, &auth).await?;
    let mut stream = client
        .submit_run(spec.clone())
        .await
        .map_err(|s| anyhow::anyhow!("the coordinator refused the run: {}", s.message()))?
        .into_inner();

    let mut record: Option<RunRecord> = None;
    let mut finished_points: Vec<PointResult> = Vec::new();
    let mut bar: Option<PointProgress> = None;
    let mut aborting = false;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let finished = loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = &mut ctrl_c, if !aborting => {
                aborting = true;
                eprintln!("interrupted: aborting the run");
                match &record {
                    Some(r) => {
                        let req = AbortRunRequest { run_id: r.run_id().to_owned() };
                        let _ = tokio::time::timeout(Duration::from_secs(5), client.abort_run(req)).await;
                    }
                    // Not accepted yet: dropping the stream aborts it on the coordinator.
                    None => bail!("interrupted before the run started"),
                }
                continue;
            }
        };
        let event = match msg {
            Ok(Some(ev)) => ev.event,
            Ok(None) => break None,
            Err(s) => {
                if let Some(r) = record.as_mut() {
                    let _ = r.finish("failed", &format!("lost the coordinator: {}", s.message()));
                }
                bail!("lost the coordinator at {coordinator_url}: {}", s.message());
            }
        };
        match event {
            Some(Event::Accepted(a)) => {
                let r = RunRecord::create(&results_dir, &a.run_id, &spec, environment.clone())
                    .with_context(|| {
                        format!("cannot write results under {}", results_dir.display())
                    })?;
                let shown: Vec<&str> = a.worker_ids.iter().take(8).map(String::as_str).collect();
                let more = a.worker_ids.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                eprintln!("run {} on workers {}{more}", a.run_id, shown.join(", "));
                record = Some(r);
            }
            Some(Event::PointStarted(p)) => {
                if let Some(r) = record.as_mut() {
                    r.point_started(&p);
                }
                let expected = p.shares.iter().map(|s| s.requests).sum();
                let duration = spec
                    .points
                    .get(p.point_index as usize)
                    .map_or(0.0, |s| s.duration_s);
                bar = Some(PointProgress::new(&p.label, expected, duration));
            }
            Some(Event::Progress(p)) => {
                if let Some(b) = bar.as_mut() {
                    b.update(&p);
                }
            }
            Some(Event::PointResult(p)) => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
                let summary =
                    PointSummary::new(&p).context("the coordinator sent an unreadable point")?;
                println!("{}", summary.table());
                if let Some(r) = record.as_mut() {
                    r.add_point(&p)?;
                }
                if p.degraded {
                    eprintln!(
                        "point {} is degraded: lost {} ({} requests in flight)",
                        p.label,
                        p.lost_workers.join(", "),
                        p.lost
                    );
                }
                finished_points.push(p);
            }
            Some(Event::Finished(f)) => break Some(f),
            None => {}
        }
    };
    if let Some(b) = bar.take() {
        b.finish();
    }
    let Some(f) = finished else {
        bail!("the coordinator ended the run without saying how it finished");
    };
    let status = RunStatus::try_from(f.status).unwrap_or(RunStatus::Unspecified);
    let status_word = match status {
        RunStatus::Completed => "completed",
        RunStatus::Aborted => "aborted",
        _ => "failed",
    };
    if let Some(r) = record.as_mut() {
        r.finish(status_word, &f.message)?;
        eprintln!("results: {}", r.dir().join("run.json").display());
        // The report is a view of run.json: failing to write it loses nothing.
        match rackload_analysis::html::write(r.dir(), "owning", &Catalog::embedded()) {
            Ok(path) => eprintln!("report: {}", path.display()),
            Err(e) => eprintln!("warning: no report: {e:#}"),
        }
    }
    if finished_points.len() > 1 {
        eprint!("{}", sweep_table(&finished_points));
    }
    let gate_failures: Vec<String> = finished_points
        .iter()
        .filter(|p| p.gate_failed)
        .map(|p| {
            let c = p.counters.clone().unwrap_or_default();
            format!(
                "{} ({} of {} requests failed)",
                p.label,
                c.failed(),
                c.completed + c.failed()
            )
        })
        .collect();
    match status {
        RunStatus::Completed if !gate_failures.is_empty() => {
            eprintln!(
                "error: points over the failure gate ({:.0}% max): {}",
                spec.max_failure_rate * 100.0,
                gate_failures.join(", ")
            );
            Ok(ExitCode::from(1))
        }
        RunStatus::Completed => Ok(ExitCode::SUCCESS),
        _ => {
            let exited = children.exited();
            let extra = if exited.is_empty() {
                String::new()
            } else {
                format!(" ({})", exited.join("; "))
            };
            bail!("run {status_word}: {}{extra}", f.message)
        }
    }
}

/// One line saying what the run will send.
fn describe(w: &WorkloadSpec, spec: &RunSpec) -> String {
    let lengths = match &w.lengths {
        Lengths::Random {
            input_len,
            output_len,
            range_ratio,
            range_mode,
        } => {
            format!("random {input_len}/{output_len} tokens, ratio {range_ratio} {range_mode}")
        }
        Lengths::Dataset(d) => {
            let approx = if d.token_counts
                == rackload_workloads::dataset::TokenCounts::ApproximateCharsOver4
            {
                ", approximate token counts (no --tokenizer)"
            } else {
                ""
            };
            format!(
                "{} {} ({} entries{approx})",
                d.name,
                d.path,
                d.entries.len()
            )
        }
        Lengths::SharegptSynthetic => "sharegpt-synthetic lengths".to_owned(),
    };
    let labels: Vec<&str> = spec.points.iter().map(|p| p.label.as_str()).collect();
    format!(
        "workload: {lengths}; {}; seed {}; points {}",
        w.arrival.describe(),
        w.seed,
        labels.join(", ")
    )
}

/// One line per point of a sweep: the throughput-vs-interactivity curve at a glance.
fn sweep_table(points: &[PointResult]) -> String {
    use rackload_proto::v1::Metric;
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>12} {:>9} {:>7} {:>5} {:>9} {:>12} {:>11} {:>11} {:>13}",
        "point",
        "completed",
        "failed",
        "lost",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TPOT p50",
        "tok/s/user"
    );
    for p in points {
        let Ok(s) = PointSummary::new(p) else {
            continue;
        };
        let tpot = s.stats(Metric::Tpot).median;
        let interactivity = if tpot > 0.0 { 1000.0 / tpot } else { 0.0 };
        let _ = writeln!(
            t,
            "{:>12} {:>9} {:>7} {:>5} {:>9.2} {:>12.1} {:>8.1} ms {:>8.2} ms {:>13.1}",
            p.label,
            s.completed(),
            s.failed(),
            p.lost,
            s.request_throughput(),
            s.output_throughput(),
            s.stats(Metric::Ttft).median,
            tpot,
            interactivity
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command};

    fn trace_sample(argv: &[&str]) -> f64 {
        let cli = Cli::try_parse_from(["rackload", "run"].iter().chain(argv)).expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("not a run");
        };
        let resolved = super::resolve(&args).expect("resolves");
        resolved.spec.trace_sample.expect("a ratio is always sent")
    }

    #[test]
    fn a_small_run_is_traced_whole_and_a_large_one_at_about_a_thousand_spans() {
        if std::env::var_os("OTEL_TRACES_SAMPLER").is_some() {
            return; // the environment's sampler would rightly win
        }
        // 2 points of 100 + 20 warmup: 240 requests, all traced.
        let small = ["--max-concurrency", "4,8", "--num-prompts", "100"];
        assert_eq!(trace_sample(&small), 1.0);
        // One point (the default sweep has four): 4,000 requests, a quarter traced.
        let mid = [
            "--max-concurrency",
            "16",
            "--num-prompts",
            "3968",
            "--warmup",
            "32",
        ];
        assert_eq!(trace_sample(&mid), 0.25);
        let huge = ["--request-rate", "1000", "--num-prompts", "1000000"];
        assert_eq!(trace_sample(&huge), 0.01);
        let asked = ["--num-prompts", "100", "--trace-sample", "0.5"];
        assert_eq!(trace_sample(&asked), 0.5);
    }
}
