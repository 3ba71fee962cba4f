//! `rackload run`: parse, resolve (once, in `rackload-spec`), submit, render. It starts the embedded fabric when no
//! coordinator is given (sim unless --base-url, coordinator, workers — real processes on
//! loopback, the same code paths as a distributed run), submit the run, follow its events,
//! write results as points finish, print vLLM-style summaries, and stop every child on
//! every way out (success, error, Ctrl-C).

use crate::console::{say, tell, tell_raw};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rackload_analysis::catalog::Catalog;
use rackload_analysis::results::RunRecord;
use rackload_analysis::summary::PointSummary;
use rackload_proto::v1::control_client::ControlClient;
use rackload_proto::v1::run_event::Event;
use rackload_proto::v1::{AbortRunRequest, PointResult, RunFinished, RunStatus};
use rackload_spec::{Context, RawRun, Resolved, ResolvedRun};
use rackload_workloads::Lengths;
use serde_json::json;
use tonic::transport::Channel;

use crate::args::{RunArgs, check_url};
use crate::children::Children;
use crate::progress::PointProgress;

/// The model name the embedded sim serves.
const SIM_MODEL: &str = "rackload-sim";

/// Flags over the scenario file, resolved once by `rackload-spec`.
fn resolve(args: &RunArgs) -> anyhow::Result<Resolved> {
    if let Some(c) = &args.coordinator {
        check_url("--coordinator", c)?;
    }
    let file = match &args.scenario_file {
        Some(path) => RawRun::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => RawRun::default(),
    };
    let raw = args.raw()?.or(file);
    let ctx = Context {
        embedded_batch_sim: args.coordinator.is_none()
            && args.sim_ttft_ms.is_none()
            && args.sim_itl_ms.is_none()
            && args.sim_tokens_per_chunk.is_none_or(|k| k <= 1),
    };
    let resolved = rackload_spec::resolve(raw, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Build the client the workers will build, so a bad option is refused before
    // anything starts.
    let target = &resolved.run.target;
    if !target.base_urls.is_empty() {
        rackload_worker::target::OpenAiTarget::new(&target.to_proto(), true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(resolved)
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

/// Connects to the coordinator at `url`, trying again every half second for up to
/// `wait` (saying so once) before giving up with the last reason.
pub async fn connect(
    url: &str,
    auth: &rackload_proto::auth::ClientAuth,
    wait: Duration,
) -> anyhow::Result<Control> {
    let interceptor = auth.interceptor()?;
    let endpoint = auth
        .endpoint(url)
        .map_err(|e| anyhow::anyhow!("--coordinator: {e}"))?
        .connect_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(e) => {
                let why = rackload_worker::target::openai::error_chain(&e);
                if tokio::time::Instant::now() + RETRY_EVERY > deadline {
                    let waited = if wait.is_zero() {
                        String::new()
                    } else {
                        format!(" (tried for {:.0} s)", wait.as_secs_f64())
                    };
                    anyhow::bail!("cannot reach coordinator at {url}{waited}: {why}");
                }
                if !said {
                    tell!(
                        "cannot reach coordinator at {url} yet ({why}): retrying for up to {:.0} s",
                        wait.as_secs_f64()
                    );
                    said = true;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    };
    Ok(ControlClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(rackload_coordinator::MAX_MESSAGE)
        .max_encoding_message_size(rackload_coordinator::MAX_MESSAGE))
}

/// How often `connect` tries again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How long a coordinator may take to answer a call (a run's stream opens at once; its
/// events may then take as long as the run).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// `call`'s answer from the coordinator at `url`, or an error saying it did not answer in
/// time (a port that accepts and never answers is not waited on for minutes).
pub async fn answered<T>(
    url: &str,
    call: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(ANSWER_WITHIN, call).await.map_err(|_| {
        anyhow::anyhow!(
            "the coordinator at {url} did not answer within {} s (is it a rackload coordinator, and reachable?)",
            ANSWER_WITHIN.as_secs()
        )
    })
}

/// What a coordinator's error status means, in words. A server that answers HTTP but not
/// rackload's gRPC (a web server, the sim, a proxy's error page) is named as not being a
/// coordinator, rather than quoting tonic's "grpc-status header missing".
pub fn status_words(s: &tonic::Status) -> String {
    let m = s.message();
    if let Some(code) = m.split("HTTP status code ").nth(1) {
        format!("it answered HTTP {code}, not gRPC: is this a rackload coordinator?")
    } else if m.contains("grpc-status header missing") || s.code() == tonic::Code::Unimplemented {
        format!("it does not speak rackload's gRPC ({m}): is this a rackload coordinator?")
    } else {
        m.to_owned()
    }
}

/// The error for a call the coordinator at `url` refused.
pub fn refused(url: &str, s: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the coordinator at {url} refused: {}", status_words(s))
}

async fn run_with(
    args: &RunArgs,
    resolved: Resolved,
    children: &mut Children,
) -> anyhow::Result<ExitCode> {
    let Resolved {
        run: mut resolved,
        results_dir,
    } = resolved;
    // A results folder that cannot be made is refused before anything starts.
    std::fs::create_dir_all(&results_dir).map_err(|e| {
        anyhow::anyhow!(
            "--results-dir: cannot create {}: {}",
            results_dir.display(),
            rackload_input::io_reason(&e)
        )
    })?;
    let mut environment = json!({ "host": rackload_worker::session::host_name() });
    tell!("{}", describe(&resolved));
    let target = &mut resolved.target;
    let embedded_sim = target.base_urls.is_empty() && args.coordinator.is_none();
    if target.base_urls.is_empty() && args.coordinator.is_some() {
        bail!(
            "--base-url is needed with --coordinator: the embedded sim runs only in embedded mode"
        );
    }
    if embedded_sim {
        let tokenizer = resolved.workload.tokenizer_path().map(str::to_owned);
        let url = start_sim(args, tokenizer.as_deref(), children, &mut environment).await?;
        // The sim is a rack you can measure: its GPUs' power, DCGM's way, and its
        // chassis' over Redfish.
        if resolved.gpu_metrics.is_empty() {
            resolved.gpu_metrics.push(format!("{url}/gpu/metrics"));
        }
        if resolved.node_power.is_empty() {
            resolved
                .node_power
                .push(format!("{url}/redfish/v1/Chassis/1/Power"));
        }
        target.base_urls.push(url);
        if target.model.is_empty() {
            target.model = SIM_MODEL.to_owned();
        }
    }
    if target.model.is_empty() {
        target.model = learn_model(target).await?;
    }
    // The servers' own pages, unless told: each http:// base URL's /metrics (read while
    // it answers with vLLM's or SGLang's series; a server without them costs one line).
    if resolved.server_metrics.is_empty() {
        resolved.server_metrics = resolved
            .target
            .base_urls
            .iter()
            .filter_map(|u| metrics_page(u))
            .collect();
        // One page per server, however many base URLs lead to it.
        resolved.server_metrics.sort();
        resolved.server_metrics.dedup();
    }
    let (coordinator_url, auth) =
        start_fabric(args, children, resolved.workers, &mut environment).await?;
    if let Some(system) = &args.system {
        Catalog::embedded()
            .system(system)
            .map_err(|e| anyhow::anyhow!("--system: {e}"))?;
        environment["system"] = json!(system);
    }
    if let Some(gpus) = args.gpus {
        environment["gpus"] = json!(gpus);
    }
    let wait = Duration::from_secs_f64(args.security.connect_wait);
    let client = connect(&coordinator_url, &auth, wait).await?;
    let follow = Follow {
        run: &resolved,
        spec: resolved.to_proto(),
        results_dir,
        environment,
        coordinator_url,
    };
    let (finished, mut record, points) = follow.events(client).await?;
    conclude(&resolved, finished, record.as_mut(), &points, children)
}

/// Starts the embedded sim (fixed latencies, or a batch-model profile; counting prompts
/// with the run's tokenizer, if any) and records what it stands for; returns its URL.
async fn start_sim(
    args: &RunArgs,
    tokenizer: Option<&str>,
    children: &mut Children,
    environment: &mut serde_json::Value,
) -> anyhow::Result<String> {
    use rackload_spec::defaults::{SIM_ITL_MS, SIM_REPLICAS, SIM_TTFT_MS};
    let mut sim_args: Vec<String> = ["sim", "--listen", "127.0.0.1:0", "--model", SIM_MODEL]
        .map(str::to_owned)
        .to_vec();
    if let Some(path) = tokenizer {
        sim_args.extend(["--tokenizer".into(), path.to_owned()]);
    }
    let reasoning = args.sim_reasoning_tokens.unwrap_or(0);
    if reasoning > 0 {
        sim_args.extend(["--reasoning-tokens".into(), reasoning.to_string()]);
    }
    let per_chunk = args.sim_tokens_per_chunk.unwrap_or(1);
    if args.sim_ttft_ms.is_some() || args.sim_itl_ms.is_some() || per_chunk > 1 {
        let ttft = args.sim_ttft_ms.unwrap_or(SIM_TTFT_MS);
        let itl = args.sim_itl_ms.unwrap_or(SIM_ITL_MS);
        sim_args.extend([
            "--ttft-ms".into(),
            ttft.to_string(),
            "--itl-ms".into(),
            itl.to_string(),
            "--tokens-per-chunk".into(),
            per_chunk.to_string(),
        ]);
        environment["sim"] = json!({
            "ttft_ms": ttft,
            "itl_ms": itl,
            "tokens_per_chunk": per_chunk,
            "reasoning_tokens": reasoning,
            "model": SIM_MODEL,
        });
    } else {
        let name = args
            .sim_profile
            .as_deref()
            .unwrap_or(rackload_sim::profile::DEFAULT);
        let profile =
            rackload_sim::Profile::load(name).map_err(|e| anyhow::anyhow!("--sim-profile: {e}"))?;
        let replicas = args.sim_replicas.unwrap_or(SIM_REPLICAS);
        sim_args.extend([
            "--profile".into(),
            name.to_owned(),
            "--replicas".into(),
            replicas.to_string(),
        ]);
        environment["sim"] = json!({
            "model": SIM_MODEL,
            "reasoning_tokens": reasoning,
            "profile": profile,
            "replicas": replicas,
            "gpus": profile.gpus_per_replica * replicas,
        });
    }
    let refs: Vec<&str> = sim_args.iter().map(String::as_str).collect();
    children.start_server("sim", &refs).await
}

/// `scheme://host:port/metrics` of a plain-http base URL (the scrapers speak http only).
fn metrics_page(base: &str) -> Option<String> {
    let u = url::Url::parse(base).ok()?;
    (u.scheme() == "http").then(|| {
        format!(
            "http://{}:{}/metrics",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(80)
        )
    })
}

/// The first model the target lists at `/v1/models`.
async fn learn_model(target: &rackload_spec::Target) -> anyhow::Result<String> {
    let url = &target.base_urls[0];
    let base = rackload_proto::redact::url(url);
    let models = rackload_worker::target::openai::list_models(url, &target.to_proto())
        .await
        .map_err(|e| anyhow::anyhow!("cannot learn the model name (give --model): {e}"))?;
    models
        .into_iter()
        .next()
        .with_context(|| format!("{base}/v1/models lists no model (give --model)"))
}

/// The coordinator to submit to: the one given, or an embedded one with `workers` local
/// workers on loopback. Returns its URL and the credentials to reach it.
async fn start_fabric(
    args: &RunArgs,
    children: &mut Children,
    workers: u32,
    environment: &mut serde_json::Value,
) -> anyhow::Result<(String, rackload_proto::auth::ClientAuth)> {
    let (url, auth) = match &args.coordinator {
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
            for k in 1..=workers {
                let id = format!("worker-{k}");
                children.start(&id, &["worker", "--coordinator", &url, "--id", &id])?;
            }
            (url, rackload_proto::auth::ClientAuth::default())
        }
    };
    environment["coordinator"] = json!(url);
    Ok((url, auth))
}

/// A submitted run followed to its end: results written as points finish, progress and
/// summaries shown, Ctrl-C turned into an abort.
struct Follow<'a> {
    run: &'a ResolvedRun,
    spec: rackload_proto::v1::RunSpec,
    results_dir: std::path::PathBuf,
    environment: serde_json::Value,
    coordinator_url: String,
}

/// How the run ended, its results on disk, and its finished points.
type Followed = (RunFinished, Option<RunRecord>, Vec<PointResult>);

impl Follow<'_> {
    async fn events(self, mut client: Control) -> anyhow::Result<Followed> {
        let mut stream = answered(&self.coordinator_url, client.submit_run(self.spec.clone()))
            .await?
            .map_err(|s| refused(&self.coordinator_url, &s))?
            .into_inner();
        let mut record: Option<RunRecord> = None;
        let mut points: Vec<PointResult> = Vec::new();
        let mut bar: Option<PointProgress> = None;
        let mut aborting = false;
        let mut signals = crate::signals::Interrupts::new();
        let finished = loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                name = signals.next() => {
                    let Some(r) = &record else {
                        // Not accepted yet: dropping the stream aborts it on the coordinator.
                        bail!("{name} before the run started: nothing was measured");
                    };
                    if aborting {
                        // A second signal: leave now, with what is on disk.
                        tell!("{name} again: leaving without waiting for the coordinator");
                        break Some(RunFinished {
                            run_id: r.run_id().to_owned(),
                            status: RunStatus::Aborted as i32,
                            message: format!("{name} twice: left without waiting for the point in progress"),
                        });
                    }
                    aborting = true;
                    tell!("{name}: aborting the run (again to leave at once)");
                    // Asked on the side, so a second signal is heard even while an
                    // unresponsive coordinator keeps this waiting.
                    let req = AbortRunRequest { run_id: r.run_id().to_owned() };
                    let mut abort = client.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), abort.abort_run(req)).await;
                    });
                    continue;
                }
            };
            let event = match msg {
                Ok(Some(ev)) => ev.event,
                Ok(None) => break None,
                Err(s) => {
                    let Some(r) = record.as_mut() else {
                        // It never accepted the run: not lost, refused.
                        return Err(refused(&self.coordinator_url, &s));
                    };
                    let _ = r.finish(
                        "failed",
                        &format!("lost the coordinator: {}", status_words(&s)),
                    );
                    bail!(
                        "lost the coordinator at {}: {}",
                        self.coordinator_url,
                        status_words(&s)
                    );
                }
            };
            match event {
                Some(Event::Finished(f)) => break Some(f),
                Some(e) => {
                    if let Err(e) = self.on_event(e, &mut record, &mut bar, &mut points) {
                        return Err(self.give_up(e, record.as_mut(), &mut client).await);
                    }
                }
                None => {}
            }
        };
        if let Some(b) = bar.take() {
            b.finish();
        }
        let finished =
            finished.context("the coordinator ended the run without saying how it finished")?;
        Ok((finished, record, points))
    }

    /// A run this CLI cannot follow any more (its results cannot be written: a full
    /// disk): the run is aborted, so that no load goes on unrecorded, and run.json says
    /// why, if anything can still be written.
    async fn give_up(
        &self,
        e: anyhow::Error,
        record: Option<&mut RunRecord>,
        client: &mut Control,
    ) -> anyhow::Error {
        let Some(r) = record else { return e };
        let req = AbortRunRequest {
            run_id: r.run_id().to_owned(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), client.abort_run(req)).await;
        if let Err(w) = r.finish("failed", &format!("{e:#}")) {
            tell!("warning: run.json could not record the failure either: {w}");
        }
        e
    }

    /// One event of the run (but its end).
    fn on_event(
        &self,
        event: Event,
        record: &mut Option<RunRecord>,
        bar: &mut Option<PointProgress>,
        points: &mut Vec<PointResult>,
    ) -> anyhow::Result<()> {
        match event {
            Event::Accepted(a) => {
                let r = RunRecord::create(
                    &self.results_dir,
                    &a.run_id,
                    &self.spec,
                    self.environment.clone(),
                )
                .with_context(|| {
                    format!("cannot write results under {}", self.results_dir.display())
                })?;
                let shown: Vec<&str> = a.worker_ids.iter().take(8).map(String::as_str).collect();
                let more = a.worker_ids.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                tell!("run {} on workers {}{more}", a.run_id, shown.join(", "));
                *record = Some(r);
            }
            Event::PointStarted(p) => {
                if let Some(r) = record.as_mut() {
                    r.point_started(&p);
                }
                let expected = p.shares.iter().map(|s| s.requests).sum();
                let duration = self
                    .run
                    .points
                    .get(p.point_index as usize)
                    .and_then(|s| s.duration)
                    .map_or(0.0, |d| d.as_secs_f64());
                *bar = Some(PointProgress::new(&p.label, expected, duration));
            }
            Event::Progress(p) => {
                if let Some(b) = bar.as_mut() {
                    b.update(&p);
                }
            }
            Event::PointResult(p) => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
                let summary =
                    PointSummary::new(&p).context("the coordinator sent an unreadable point")?;
                say!("{}", summary.table());
                if let Some(r) = record.as_mut() {
                    r.add_point(&p)?;
                }
                if p.degraded {
                    tell!(
                        "point {} is degraded: lost {} ({} requests in flight)",
                        p.label,
                        p.lost_workers.join(", "),
                        p.lost
                    );
                }
                points.push(p);
            }
            Event::RequestRecords(r) => {
                if let Some(rec) = record.as_mut() {
                    rec.add_requests(&r.label, &r.gz)?;
                }
            }
            Event::Finished(_) => {}
        }
        Ok(())
    }
}

/// Writes the run's end and its report, shows the sweep, and decides the exit code: 1 when
/// a point failed its gate, an error when the run did not complete.
fn conclude(
    run: &ResolvedRun,
    f: RunFinished,
    record: Option<&mut RunRecord>,
    points: &[PointResult],
    children: &mut Children,
) -> anyhow::Result<ExitCode> {
    let status = RunStatus::try_from(f.status).unwrap_or(RunStatus::Unspecified);
    let status_word = match status {
        RunStatus::Completed => "completed",
        RunStatus::Aborted => "aborted",
        _ => "failed",
    };
    if let Some(r) = record {
        r.finish(status_word, &f.message)?;
        tell!("results: {}", r.dir().join("run.json").display());
        // The report is a view of run.json: failing to write it loses nothing.
        match rackload_analysis::html::write(r.dir(), "owning", &Catalog::embedded()) {
            Ok(path) => tell!("report: {}", path.display()),
            Err(e) => tell!("warning: no report: {e:#}"),
        }
    }
    if points.len() > 1 {
        tell_raw!("{}", sweep_table(points));
    }
    let gate_failures: Vec<String> = points
        .iter()
        .filter(|p| p.gate_failed)
        .map(|p| {
            let c = p.counters.clone().unwrap_or_default();
            let finished = c.completed + c.failed();
            if finished == 0 {
                // Nothing failed: nothing ended at all (a --duration shorter than any
                // request, or every request still in flight when the point stopped).
                format!(
                    "{} (no measured request ended: nothing to report; is --duration shorter than a request?)",
                    p.label
                )
            } else {
                format!("{} ({} of {finished} requests failed)", p.label, c.failed())
            }
        })
        .collect();
    match status {
        RunStatus::Completed if !gate_failures.is_empty() => {
            tell!(
                "error: points that failed their gate (over {:.0}% failed, or none completed): {}",
                run.max_failure_rate * 100.0,
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
fn describe(run: &ResolvedRun) -> String {
    let w = &run.workload;
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
    let labels: Vec<&str> = run.points.iter().map(|p| p.label.as_str()).collect();
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
        resolved.run.trace_sample
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

    /// Hostile flag values: every number at and past its bound, NaN, infinities, empty,
    /// huge and escaped strings. Parsing and resolving never panic; a refusal is one
    /// line, free of control characters, that names a flag.
    mod hostile_flags {
        use clap::Parser;
        use proptest::prelude::*;

        use crate::args::{Cli, Command};

        const FLAGS: &[&str] = &[
            "--random-input-len",
            "--random-output-len",
            "--random-range-ratio",
            "--range-mode",
            "--request-rate",
            "--burstiness",
            "--ramp-start-rate",
            "--ramp-end-rate",
            "--max-concurrency",
            "--concurrency-range",
            "--num-prompts",
            "--warmup",
            "--duration",
            "--cooldown",
            "--max-failure-rate",
            "--trace-sample",
            "--request-timeout",
            "--first-byte-timeout",
            "--idle-timeout",
            "--connect-timeout",
            "--workers",
            "--seed",
            "--shared-prefix-len",
            "--header",
            "--extra-body",
            "--base-url",
            "--model",
            "--dataset-name",
            "--dataset-path",
            "--tokenizer",
            "--endpoint",
            "--http",
            "--lb",
            "--prompt-format",
            "--on-worker-loss",
            "--goodput",
        ];

        fn value() -> impl Strategy<Value = String> {
            let huge = "9".repeat(5_000);
            let long = "x".repeat(20_000);
            prop_oneof![
                prop::sample::select(vec![
                    "0",
                    "1",
                    "-1",
                    "16",
                    "4194305",
                    "4294967296",
                    "18446744073709551616",
                    "nan",
                    "NaN",
                    "inf",
                    "-inf",
                    "1e-300",
                    "1e300",
                    "0.5",
                    "1.5",
                    "",
                    " ",
                    "a\nb\u{1b}[2J",
                    "4,8",
                    "0,4",
                    "4:1024:x2",
                    "1:4294967295:+1",
                    "x-a: b",
                    "Host: h",
                    "Content-Length: 0",
                    "{}",
                    "[1]",
                    "{\"max_tokens\": -1}",
                    "@/dev/null",
                    "@/nonexistent",
                    "http://127.0.0.1:9",
                    "http://u:p@h",
                    "http://h/?k=v",
                    "sharegpt",
                    "trace",
                    "token-ids",
                    "/v1/chat/completions",
                    "http2",
                    "p2c",
                    "symmetric",
                    "abort",
                    "ttft:2000",
                    "tpot:-1",
                    "e2el:nan",
                    "ttft",
                ])
                .prop_map(str::to_owned),
                Just(huge),
                Just(long),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| f.to_string()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn hostile_flags_resolve_or_name_a_flag(
                given in prop::collection::vec((prop::sample::select(FLAGS), value()), 1..5)
            ) {
                let mut argv = vec!["rackload".to_owned(), "run".to_owned()];
                for (flag, v) in &given {
                    argv.push(format!("{flag}={v}"));
                }
                let message = match Cli::try_parse_from(&argv) {
                    Err(e) => crate::one_line(&e.render().to_string()),
                    Ok(cli) => {
                        let Command::Run(args) = cli.command else {
                            panic!("not a run");
                        };
                        match super::super::resolve(&args) {
                            Ok(_) => return Ok(()),
                            Err(e) => crate::shown_error(&e),
                        }
                    }
                };
                prop_assert!(!message.contains('\n'), "{message:?}");
                prop_assert!(!message.contains('\u{1b}'), "{message:?}");
                prop_assert!(message.contains("--"), "names no flag: {message:?} ({given:?})");
                prop_assert!(message.chars().count() < 1200, "too long: {message:?}");
            }
        }
    }
}
