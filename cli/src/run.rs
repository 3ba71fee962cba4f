//! `rackload run`: resolve the flags into a `RunSpec`, start the embedded fabric when no
//! coordinator is given (sim unless --base-url, coordinator, workers — real processes on
//! loopback, the same code paths as a distributed run), submit the run, follow its events,
//! write results as points finish, print vLLM-style summaries, and stop every child on
//! every way out (success, error, Ctrl-C).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rackload_coordinator::results::RunRecord;
use rackload_coordinator::summary::PointSummary;
use rackload_proto::v1::control_client::ControlClient;
use rackload_proto::v1::run_event::Event;
use rackload_proto::v1::{AbortRunRequest, PointSpec, RunSpec, RunStatus, TargetSpec};
use std::path::PathBuf;

use rackload_workloads::prompt::PromptFormat;
use rackload_workloads::scenario::WorkloadConfig;
use rackload_workloads::{Arrival, Lengths, WorkloadSpec};
use serde_json::json;
use tonic::transport::Channel;

use crate::args::{Endpoint, RunArgs, check_url};
use crate::children::Children;
use crate::progress::PointProgress;
use crate::scenario_file::ScenarioFile;

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
pub fn default_num_prompts(arrival: &Arrival, concurrency: Option<u32>) -> Option<u64> {
    match arrival {
        Arrival::Trace { .. } => None,
        Arrival::Closed => Some(10 * u64::from(concurrency.unwrap_or(DEFAULT_CONCURRENCY))),
        _ => Some(1000),
    }
}

/// Closed-loop concurrency when not told.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// Resolves the workload of `flags` over `file`, loading datasets; returns it with the
/// number of requests and the closed-loop concurrency (or open-loop cap, 0 = none).
pub fn resolve_workload(
    flags: WorkloadConfig,
    file: WorkloadConfig,
    num_prompts: Option<u64>,
    concurrency: Option<u32>,
) -> anyhow::Result<(WorkloadSpec, u64, u32)> {
    let cfg = flags.or(file);
    let arrival = cfg.arrival_process().map_err(flag_names)?;
    let wanted = num_prompts.or_else(|| default_num_prompts(&arrival, concurrency));
    let workload = cfg.resolve(wanted).map_err(flag_names)?;
    let n = wanted.or_else(|| workload.dataset_len()).unwrap_or(1000);
    let c = match (&workload.arrival, concurrency) {
        (Arrival::Closed, c) => c.unwrap_or(DEFAULT_CONCURRENCY),
        (_, c) => c.unwrap_or(0),
    };
    Ok((workload, n, c))
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
    if !(args.worker_wait >= 0.0 && args.worker_wait.is_finite()) {
        bail!("--worker-wait must be a non-negative number of seconds");
    }
    let workers = args.workers.or(file.run.workers).unwrap_or(2);
    if !(1..=256).contains(&workers) {
        bail!("scenario file: run.workers {workers} is not in 1..=256");
    }
    let concurrency = args.max_concurrency.or(file.run.max_concurrency);
    if concurrency == Some(0) {
        bail!("scenario file: run.max_concurrency must be at least 1");
    }
    let num_prompts = args.num_prompts.or(file.run.num_prompts);
    if num_prompts == Some(0) {
        bail!("scenario file: run.num_prompts must be at least 1");
    }
    let (workload, n, c) = resolve_workload(
        args.workload.config(),
        file.workload,
        num_prompts,
        concurrency,
    )?;
    if workload.prompt.format == PromptFormat::TokenIds && endpoint != Endpoint::Completions.path()
    {
        bail!("--prompt-format token-ids needs --endpoint /v1/completions (chat takes text)");
    }
    let spec = RunSpec {
        target: Some(TargetSpec {
            base_urls,
            endpoint,
            model: args.model.clone().or(file.target.model).unwrap_or_default(),
            api_key: args.api_key.clone().unwrap_or_default(),
            request_timeout_s: request_timeout,
        }),
        workload: Some((&workload).into()),
        points: vec![PointSpec {
            label: label(&workload.arrival, c),
            max_concurrency: c,
            num_prompts: n,
        }],
        workers,
        worker_wait_s: args.worker_wait,
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

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let resolved = resolve(&args)?;
    let mut children = Children::default();
    let result = run_with(&args, resolved, &mut children).await;
    children.shutdown().await;
    result
}

async fn connect(url: &str) -> anyhow::Result<ControlClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("--coordinator {url:?} is not a valid URL"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach coordinator at {url}: {}",
                rackload_worker::target::openai::error_chain(&e)
            )
        })?;
    Ok(ControlClient::new(channel)
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
        let ttft = args.sim_ttft_ms.to_string();
        let itl = args.sim_itl_ms.to_string();
        let url = children
            .start_server(
                "sim",
                &[
                    "sim",
                    "--listen",
                    "127.0.0.1:0",
                    "--ttft-ms",
                    &ttft,
                    "--itl-ms",
                    &itl,
                    "--model",
                    SIM_MODEL,
                ],
            )
            .await?;
        target.base_urls.push(url);
        environment["sim"] =
            json!({"ttft_ms": args.sim_ttft_ms, "itl_ms": args.sim_itl_ms, "model": SIM_MODEL});
    }
    if target.model.is_empty() {
        target.model = if embedded_sim {
            SIM_MODEL.to_owned()
        } else {
            let base = &target.base_urls[0];
            let models = rackload_worker::target::openai::list_models(base)
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
    let coordinator_url = match &args.coordinator {
        Some(url) => {
            environment["mode"] = json!("coordinator");
            url.clone()
        }
        None => {
            environment["mode"] = json!("embedded");
            let url = children
                .start_server("coordinator", &["coordinator", "--listen", "127.0.0.1:0"])
                .await?;
            for k in 1..=spec.workers {
                let id = format!("worker-{k}");
                children.start(&id, &["worker", "--coordinator", &url, "--id", &id])?;
            }
            url
        }
    };
    environment["coordinator"] = json!(coordinator_url);
    rackload_coordinator::spec::validate(&spec).map_err(|e| anyhow::anyhow!("invalid run: {e}"))?;

    let mut client = connect(&coordinator_url).await?;
    let mut stream = client
        .submit_run(spec.clone())
        .await
        .map_err(|s| anyhow::anyhow!("the coordinator refused the run: {}", s.message()))?
        .into_inner();

    let mut record: Option<RunRecord> = None;
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
                eprintln!("run {} on workers {}", a.run_id, a.worker_ids.join(", "));
                record = Some(r);
            }
            Some(Event::PointStarted(p)) => {
                if let Some(r) = record.as_mut() {
                    r.point_started(&p);
                }
                let expected = p.shares.iter().map(|s| s.requests).sum();
                bar = Some(PointProgress::new(&p.label, expected));
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
    }
    match status {
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
    let p = &spec.points[0];
    format!(
        "workload: {lengths}; {}; {} requests; seed {}",
        w.arrival.describe(),
        p.num_prompts,
        w.seed
    )
}
