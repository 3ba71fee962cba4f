//! The long-running subcommands: `coordinator`, `worker` and `sim`. Servers print
//! `listening on ADDR` as their first stdout line (the embedded mode reads it to learn
//! the port) and stop on SIGINT or SIGTERM.

use crate::console::say;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rackload_sim::{FixedLatency, SimConfig};
use rackload_worker::WorkerConfig;

use crate::args::{CoordinatorArgs, SimArgs, WorkerArgs, check_url};
use crate::children::LISTENING;

pub use crate::signals::shutdown_signal;

/// How long servers finish open streams after a shutdown signal.
const GRACE: Duration = Duration::from_secs(2);

async fn bind_as(
    scheme: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{LISTENING}{scheme}://{local}")?;
    out.flush()?;
    Ok(listener)
}

pub async fn coordinator(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let max_run_duration = Duration::try_from_secs_f64(args.max_run_duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow::anyhow!("--max-run-duration must be a positive number of seconds")
        })?;
    let sec = &args.security;
    let tls = sec.tls().server()?;
    rackload_proto::auth::check_listen(
        args.listen,
        tls.is_some(),
        sec.token.is_some(),
        sec.insecure,
    )?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = rackload_coordinator::CoordinatorConfig {
        max_run_duration,
        token: sec.token.clone(),
        tls,
    };
    // Metrics first: once the fabric's address is announced, everything answers.
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
            tracing::info!("metrics at http://{}/metrics", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    let listener = bind_as(scheme, args.listen).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = rackload_coordinator::serve(listener, metrics, config, async {
        let _ = rx.await;
    });
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("coordinator failed")?,
        () = shutdown_signal() => {
            let _ = tx.send(());
            let _ = tokio::time::timeout(GRACE, server).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `s`, cut to its first 40 characters for a message.
fn truncated(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    check_url("--coordinator", &args.coordinator)?;
    if let Some(id) = &args.id {
        // Shown escaped: a bad id may hold a newline or a terminal escape.
        rackload_proto::worker_id::check_worker_id(id)
            .map_err(|reason| anyhow::anyhow!("--id {:?}: {reason}", truncated(id)))?;
    }
    let id = args.id.unwrap_or_else(|| {
        rackload_proto::worker_id::sanitized(&format!(
            "{}-{}",
            rackload_worker::session::host_name(),
            std::process::id()
        ))
    });
    let secs = |flag: &str, v: f64| {
        std::time::Duration::try_from_secs_f64(v)
            .map_err(|_| anyhow::anyhow!("{flag} must be a non-negative number of seconds"))
    };
    if args.max_rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        anyhow::bail!("--max-rate must be a positive number of requests per second");
    }
    let mut config = WorkerConfig::new(args.coordinator, id);
    config.max_inflight = args.max_inflight;
    config.max_rate = args.max_rate;
    config.allow_targets = args.allow_targets.clone();
    config.max_duration = args
        .max_duration
        .map(|d| secs("--max-duration", d))
        .transpose()?;
    config.lease = secs("--lease", args.lease)?;
    config.connect_wait = secs("--connect-wait", args.connect_wait)?;
    if let Some(v) = args.protocol_version {
        config.protocol_version = v;
    }
    config.auth = args.security.client();
    // Refuse bad credentials or an open off-loopback coordinator before dialling.
    config
        .auth
        .endpoint(&config.coordinator)
        .map_err(|e| anyhow::anyhow!("--coordinator: {e}"))?;
    rackload_worker::session::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The sim's configuration from its flags (the tokenizer and profile loaded).
fn sim_config(args: &SimArgs) -> anyhow::Result<SimConfig> {
    let fixed =
        args.ttft_ms.is_some() || args.itl_ms.is_some() || args.fast || args.tokens_per_chunk > 1;
    if args.fast && args.reasoning_tokens > 0 {
        anyhow::bail!(
            "--reasoning-tokens is not supported with --fast (its events are built once per request)"
        );
    }
    let prompt_counter = match &args.tokenizer {
        None => rackload_sim::PromptCounter::default(),
        Some(path) => {
            let tok = rackload_workloads::tokenizer::LoadedTokenizer::load(path)
                .map_err(|e| anyhow::anyhow!("--tokenizer: {e}"))?;
            rackload_sim::PromptCounter::with(move |text| tok.count(text).unwrap_or(0))
        }
    };
    let profile = if fixed {
        None
    } else {
        let name = args
            .profile
            .as_deref()
            .unwrap_or(rackload_sim::profile::DEFAULT);
        Some(rackload_sim::Profile::load(name).map_err(|e| anyhow::anyhow!("--profile: {e}"))?)
    };
    Ok(SimConfig {
        model: args.model.clone(),
        latency: FixedLatency {
            ttft: Duration::from_millis(args.ttft_ms.unwrap_or(50)),
            itl: Duration::from_millis(args.itl_ms.unwrap_or(2)),
        },
        fast: args.fast,
        faults: args
            .faults
            .clone()
            .unwrap_or_default()
            .with_seed(args.fault_seed),
        stamp: args.stamp,
        profile,
        replicas: args.replicas,
        max_waiting: args.max_waiting,
        stream_interval: args.stream_interval,
        disregard_ignore_eos: args.disregard_ignore_eos,
        reasoning_tokens: args.reasoning_tokens,
        tokens_per_chunk: args.tokens_per_chunk,
        prompt_counter,
    })
}

pub async fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(rackload_sim::tls_config(cert, key).map_err(|e| anyhow::anyhow!(e))?)
        }
        _ => None,
    };
    let config = sim_config(&args)?;
    if args.ports_per_replica && tls.is_some() {
        anyhow::bail!("--ports-per-replica is not supported with --tls-cert");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = bind_as(scheme, args.listen).await?;
    if let Some(p) = &config.profile {
        tracing::info!(
            "profile {}: {}; {} replica(s) × {} GPU(s)",
            p.name,
            p.description,
            config.replicas,
            p.gpus_per_replica
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    let per_replica = args.ports_per_replica && config.replicas > 1 && tls.is_none();
    let (routers, meters) = rackload_sim::routers_and_meters(config, per_replica);
    if let Some(addr) = args.gpu_metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for --gpu-metrics-listen"))?;
        say!(
            "meters listening on http://{} (/metrics, /redfish/v1/Chassis/1/Power)",
            l.local_addr()?
        );
        tokio::spawn(rackload_sim::serve_router(
            l,
            meters,
            std::future::pending(),
        ));
    }
    let mut routers = routers.into_iter();
    let first = routers.next().context("no router")?;
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>>>> =
        match tls {
            Some(tls) => Box::pin(rackload_sim::serve_tls(listener, first, tls, stop)),
            None => {
                // With --ports-per-replica, replica k on the first port + k (or on any
                // free port when it was 0).
                let mut rest = Vec::new();
                for (k, router) in routers.enumerate() {
                    let port = match args.listen.port() {
                        0 => 0,
                        p => p
                            .checked_add(k as u16 + 1)
                            .context("--listen port + replicas exceeds 65535")?,
                    };
                    let addr = std::net::SocketAddr::new(args.listen.ip(), port);
                    let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                        format!("cannot listen on {addr} for replica {}", k + 2)
                    })?;
                    say!("replica {} listening on http://{}", k + 2, l.local_addr()?);
                    rest.push(tokio::spawn(rackload_sim::serve_router(
                        l,
                        router,
                        std::future::pending(),
                    )));
                }
                Box::pin(rackload_sim::serve_router(listener, first, stop))
            }
        };
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("sim failed")?,
        () = shutdown_signal() => {
            let _ = tx.send(());
            let _ = tokio::time::timeout(GRACE, server).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
