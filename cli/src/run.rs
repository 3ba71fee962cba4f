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
use rackload_workloads::{RangeMode, WorkloadSpec};
use serde_json::json;
use tonic::transport::Channel;

use crate::args::{RangeModeArg, RunArgs, check_url};
use crate::children::Children;
use crate::progress::PointProgress;

/// The model name the embedded sim serves.
const SIM_MODEL: &str = "rackload-sim";

/// Resolves flags into a spec (the target URLs and model are filled in later).
fn resolve(args: &RunArgs) -> anyhow::Result<RunSpec> {
    for u in &args.base_urls {
        check_url("--base-url", u)?;
    }
    if let Some(c) = &args.coordinator {
        check_url("--coordinator", c)?;
    }
    if !(args.request_timeout >= 0.0 && args.request_timeout.is_finite()) {
        bail!("--request-timeout must be a non-negative number of seconds");
    }
    if !(args.worker_wait >= 0.0 && args.worker_wait.is_finite()) {
        bail!("--worker-wait must be a non-negative number of seconds");
    }
    let workload = WorkloadSpec {
        input_len: args.random_input_len,
        output_len: args.random_output_len,
        range_ratio: args.random_range_ratio,
        range_mode: match args.range_mode {
            RangeModeArg::OneSided => RangeMode::OneSided,
            RangeModeArg::Symmetric => RangeMode::Symmetric,
        },
        seed: args.seed,
        ignore_eos: !args.no_ignore_eos,
    };
    workload.validate().map_err(|e| {
        let flag = e
            .to_string()
            .replace("random_input_len", "--random-input-len")
            .replace("random_output_len", "--random-output-len");
        anyhow::anyhow!("{flag}")
    })?;
    let c = args.max_concurrency;
    let spec = RunSpec {
        target: Some(TargetSpec {
            base_urls: args.base_urls.clone(),
            endpoint: args.endpoint.path().to_owned(),
            model: args.model.clone().unwrap_or_default(),
            api_key: args.api_key.clone().unwrap_or_default(),
            request_timeout_s: args.request_timeout,
        }),
        workload: Some((&workload).into()),
        points: vec![PointSpec {
            label: format!("c{c}"),
            max_concurrency: c,
            num_prompts: args.num_prompts.unwrap_or(10 * u64::from(c)),
        }],
        workers: args.workers,
        worker_wait_s: args.worker_wait,
    };
    Ok(spec)
}

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = resolve(&args)?;
    let mut children = Children::default();
    let result = run_with(&args, spec, &mut children).await;
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
    Ok(ControlClient::new(channel).max_decoding_message_size(256 << 20))
}

async fn run_with(
    args: &RunArgs,
    mut spec: RunSpec,
    children: &mut Children,
) -> anyhow::Result<ExitCode> {
    let mut environment = json!({ "host": rackload_worker::session::host_name() });
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
            for k in 1..=args.workers {
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
                let r = RunRecord::create(&args.results_dir, &a.run_id, &spec, environment.clone())
                    .with_context(|| {
                        format!("cannot write results under {}", args.results_dir.display())
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
