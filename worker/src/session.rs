//! The worker's Fabric session: dial the coordinator, say hello, estimate the clock
//! offset, then take plans, check the target, wait for the common start instant, run the
//! shard, and stream a report every interval plus a final one. Reports travel on their own
//! task, apart from the request path, so a saturated worker is slow, never silent.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rackload_proto::v1::coordinator_message::Msg as CMsg;
use rackload_proto::v1::fabric_client::FabricClient;
use rackload_proto::v1::worker_message::Msg as WMsg;
use rackload_proto::v1::{
    ClockPing, ClockPong, CoordinatorMessage, Counters, Heartbeat, Hello, PlanAck, Report,
    ShardPlan, Start, Stop, WorkerMessage,
};
use rackload_proto::{BUILD_VERSION, PROTOCOL_VERSION};
use rackload_workloads::WorkloadSpec;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::recorder::{Recorder, Snapshot};
use crate::request_log::RequestLog;
use crate::schedule::{Shard, StopMode};
use crate::target::OpenAiTarget;
use crate::trace::RequestTracer;
use rackload_telemetry::RequestSampler;
use rackload_workloads::tokenizer::LoadedTokenizer;

/// How a worker finds and presents itself to its coordinator, and the caps it enforces
/// whatever a plan asks.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// e.g. `http://127.0.0.1:7400`
    pub coordinator: String,
    pub id: String,
    /// Most concurrent requests this worker accepts in a plan (0 = no limit).
    pub max_inflight: u32,
    /// Highest request rate (req/s) this worker sends (None = no limit).
    pub max_rate: Option<f64>,
    /// The only targets this worker sends to (empty = any).
    pub allow_targets: Vec<crate::allow::Allowed>,
    /// Longest a shard may run; it is aborted then (None = no limit).
    pub max_duration: Option<Duration>,
    /// After losing its coordinator, the worker sends nothing new at once and cancels
    /// what is still in flight after this long (the dead-man lease).
    pub lease: Duration,
    /// How long to keep trying to reach the coordinator at start-up.
    pub connect_wait: Duration,
    /// The wire protocol version announced (tests set another one).
    pub protocol_version: u32,
    /// Token and TLS material to reach (and verify) the coordinator.
    pub auth: rackload_proto::auth::ClientAuth,
}

impl WorkerConfig {
    pub fn new(coordinator: String, id: String) -> WorkerConfig {
        WorkerConfig {
            coordinator,
            id,
            max_inflight: 0,
            max_rate: None,
            allow_targets: Vec::new(),
            max_duration: None,
            lease: Duration::from_secs(5),
            connect_wait: Duration::from_secs(10),
            protocol_version: PROTOCOL_VERSION,
            auth: rackload_proto::auth::ClientAuth::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("coordinator URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach coordinator at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("coordinator {url} refused worker {id}: {reason}")]
    Refused {
        url: String,
        id: String,
        reason: String,
    },
    #[error("lost coordinator {url}: {reason}")]
    Lost { url: String, reason: String },
    /// The coordinator could not be trusted, or did not trust this worker: stop.
    #[error("coordinator {url}: {reason}")]
    Untrusted { url: String, reason: String },
}

/// A TLS server that rejects a client certificate just drops the connection; say what
/// that usually means.
fn tls_hint(config: &WorkerConfig, reason: String) -> String {
    if config.auth.tls.is_empty() {
        reason
    } else {
        format!(
            "{reason} (with mutual TLS this usually means the coordinator refused this worker's certificate: is it signed by the coordinator's --tls-ca?)"
        )
    }
}

/// Whether a failure to connect is about identity — a certificate refused on either side
/// (rustls's own error kinds, or a TLS alert from the peer) — which waiting will not fix.
/// Decided by walking the error's source chain, never by reading its text.
fn is_identity_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return is_identity_tls(tls);
        }
        // io::Error::source() skips the error it wraps: look at it directly.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_identity_failure(inner)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

fn is_identity_tls(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(_)
            | rustls::Error::InvalidCertRevocationList(_)
    )
}

/// This machine's name, for the worker's default id and its hello.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// NTP-style estimate of (coordinator clock − worker clock) from the round trip with the
/// smallest delay.
#[derive(Clone, Copy, Debug, Default)]
struct ClockEstimate {
    offset_ns: i64,
    rtt_ns: Option<i64>,
}

impl ClockEstimate {
    fn update(&mut self, pong: &ClockPong, received_ns: i64) {
        let rtt = received_ns - pong.worker_unix_nanos;
        if rtt < 0 || self.rtt_ns.is_some_and(|best| best <= rtt) {
            return;
        }
        let midpoint = pong.worker_unix_nanos + rtt / 2;
        self.offset_ns = pong.coordinator_unix_nanos - midpoint;
        self.rtt_ns = Some(rtt);
    }
}

/// A plan accepted and waiting for its start.
struct Prepared {
    plan: ShardPlan,
    target: Arc<OpenAiTarget>,
    workload: Arc<WorkloadSpec>,
    /// The in-flight cap the shard runs under (the plan's, else the worker's).
    concurrency: Option<u32>,
    /// Time between interval reports (the plan's).
    report_interval: Duration,
    /// This worker's `--max-rate`, held while the shard runs.
    max_rate: Option<f64>,
    /// This worker's id (per-request records say who sent them).
    worker_id: String,
}

struct Running {
    run_id: String,
    point_index: u32,
    stop: watch::Sender<StopMode>,
    task: JoinHandle<()>,
}

const CLOCK_PINGS: u64 = 8;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Largest message accepted: plans carry whole datasets.
pub const MAX_MESSAGE: usize = 512 << 20;

/// Runs the worker until `shutdown` resolves: a session with the coordinator, and after
/// losing it, new sessions (with backoff) for as long as it takes. A refusal ends it.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    // Every log line of this worker carries its id (and, inside a shard, run and point).
    let span = tracing::info_span!("worker", worker = %config.id);
    run_inner(config, shutdown).instrument(span).await
}

async fn run_inner(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut ever_connected = false;
    let mut backoff = Duration::from_millis(200);
    let mut last_said: Option<Instant> = None;
    loop {
        let attempt = session(&config, &mut shutdown, &mut ever_connected).await;
        match attempt {
            Ok(()) => return Ok(()),
            Err(
                e @ (WorkerError::Refused { .. }
                | WorkerError::BadUrl { .. }
                | WorkerError::Untrusted { .. }),
            ) => return Err(e),
            // Never welcomed: whatever went wrong, --connect-wait bounds the waiting.
            Err(e) if !ever_connected && started.elapsed() >= config.connect_wait => {
                return Err(e);
            }
            Err(e) => {
                if ever_connected {
                    tracing::warn!("{e}; reconnecting");
                } else if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    // Waiting for a coordinator that is not there yet is normal; say so,
                    // now and then, rather than retry in silence.
                    let left = config.connect_wait.saturating_sub(started.elapsed());
                    tracing::info!(
                        "{e}; retrying for {:.0} s more (--connect-wait)",
                        left.as_secs_f64()
                    );
                    last_said = Some(Instant::now());
                }
                backoff = if ever_connected {
                    backoff.min(Duration::from_secs(5))
                } else {
                    Duration::from_millis(200)
                };
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One session, from dialling to its end. `Ok` only when `shutdown` resolved.
async fn session(
    config: &WorkerConfig,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ever_connected: &mut bool,
) -> Result<(), WorkerError> {
    let (mut inbound, tx, nonce) = dial(config).await?;
    let heartbeat = spawn_heartbeat(tx.clone());
    let mut state = Session {
        config,
        tx,
        nonce,
        clock: ClockEstimate::default(),
        prepared: None,
        running: None,
        welcomed: false,
    };
    let lost = |reason: String| WorkerError::Lost {
        url: config.coordinator.clone(),
        reason,
    };
    let result = loop {
        let msg = tokio::select! {
            () = shutdown.as_mut() => break Ok(()),
            msg = inbound.message() => msg,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break Err(lost("the coordinator closed the session".into())),
            Err(status) => break Err(lost(status.message().to_owned())),
        };
        if let Err(e) = state.on_message(msg, ever_connected).await {
            break Err(e);
        }
    };
    heartbeat.abort();
    let welcomed = state.welcomed;
    release(state.running, result.is_ok(), config.lease).await;
    match result {
        // It answered, but ended the session without a welcome: not a coordinator, or
        // not this protocol.
        Err(WorkerError::Lost { url, reason }) if !welcomed => Err(WorkerError::Connect {
            url,
            reason: format!(
                "it answered but sent no welcome: is this a rackload coordinator? ({reason})"
            ),
        }),
        other => other,
    }
}

/// Dials the coordinator, says hello (with a nonce it must answer when a token is
/// shared), opens the session and sends the clock pings.
async fn dial(
    config: &WorkerConfig,
) -> Result<
    (
        tonic::Streaming<CoordinatorMessage>,
        mpsc::Sender<WorkerMessage>,
        Vec<u8>,
    ),
    WorkerError,
> {
    let url = config.coordinator.clone();
    let bad = |e: rackload_proto::auth::AuthError| WorkerError::BadUrl {
        url: url.clone(),
        reason: e.to_string(),
    };
    let interceptor = config.auth.interceptor().map_err(bad)?;
    let endpoint = config
        .auth
        .endpoint(&url)
        .map_err(bad)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3));
    let channel = endpoint.connect().await.map_err(|e| {
        let reason = crate::target::openai::error_chain(&e);
        if is_identity_failure(&e) {
            WorkerError::Untrusted {
                url: url.clone(),
                reason: format!("TLS: {reason}"),
            }
        } else {
            WorkerError::Connect {
                url: url.clone(),
                reason: tls_hint(config, reason),
            }
        }
    })?;
    let mut client =
        FabricClient::with_interceptor(channel, interceptor).max_decoding_message_size(MAX_MESSAGE);
    let nonce = rackload_proto::auth::nonce();
    let (tx, rx) = mpsc::channel::<WorkerMessage>(256);
    let hello = Hello {
        worker_id: config.id.clone(),
        protocol_version: config.protocol_version,
        build_version: BUILD_VERSION.to_owned(),
        host: host_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        max_inflight: config.max_inflight,
        clock_unix_nanos: unix_nanos(),
        nonce: nonce.clone(),
    };
    let _ = tx.try_send(WorkerMessage {
        msg: Some(WMsg::Hello(hello)),
    });
    let inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| {
            if matches!(
                s.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) || is_identity_failure(&s)
            {
                WorkerError::Untrusted {
                    url: url.clone(),
                    reason: format!("refused this worker: {}", s.message()),
                }
            } else {
                // It took the connection (the channel is up) but did not open a
                // session: something listens there that is not a coordinator (a
                // coordinator going away in between is tried again all the same).
                WorkerError::Connect {
                    url: url.clone(),
                    reason: tls_hint(
                        config,
                        format!(
                            "it took the connection but opened no session ({}): is this a rackload coordinator?",
                            s.message()
                        ),
                    ),
                }
            }
        })?
        .into_inner();
    for nonce in 0..CLOCK_PINGS {
        let _ = tx.try_send(WorkerMessage {
            msg: Some(WMsg::Ping(ClockPing {
                nonce,
                worker_unix_nanos: unix_nanos(),
            })),
        });
    }
    Ok((inbound, tx, nonce))
}

/// Liveness apart from the load: a heartbeat every second whatever the shard is doing.
fn spawn_heartbeat(tx: mpsc::Sender<WorkerMessage>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            every.tick().await;
            let hb = Heartbeat {
                unix_nanos: unix_nanos(),
            };
            if tx
                .send(WorkerMessage {
                    msg: Some(WMsg::Heartbeat(hb)),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

/// A live session's state: what the coordinator said and what this worker holds.
struct Session<'a> {
    config: &'a WorkerConfig,
    tx: mpsc::Sender<WorkerMessage>,
    nonce: Vec<u8>,
    clock: ClockEstimate,
    prepared: Option<Prepared>,
    running: Option<Running>,
    welcomed: bool,
}

impl Session<'_> {
    /// Acts on one message; an error ends the session.
    async fn on_message(
        &mut self,
        msg: CoordinatorMessage,
        ever_connected: &mut bool,
    ) -> Result<(), WorkerError> {
        let url = &self.config.coordinator;
        match msg.msg {
            Some(CMsg::Welcome(w)) => {
                // With a token, the coordinator proves it knows it before this worker
                // takes a single plan from it.
                if let Some(token) = &self.config.auth.token
                    && !rackload_proto::auth::verify_proof(token, &self.nonce, &w.proof)
                {
                    return Err(WorkerError::Untrusted {
                        url: url.clone(),
                        reason: "it could not prove it knows the token; not taking plans from it"
                            .into(),
                    });
                }
                self.welcomed = true;
                *ever_connected = true;
                tracing::info!(coordinator = %url, version = %w.coordinator_version, "registered");
            }
            Some(CMsg::Assign(_)) if !self.welcomed => {
                return Err(WorkerError::Untrusted {
                    url: url.clone(),
                    reason: "sent a plan before welcoming this worker".into(),
                });
            }
            Some(CMsg::Refused(r)) => {
                return Err(WorkerError::Refused {
                    url: url.clone(),
                    id: self.config.id.clone(),
                    reason: r.reason,
                });
            }
            Some(CMsg::Pong(p)) => self.clock.update(&p, unix_nanos()),
            Some(CMsg::Assign(plan)) => {
                let (ack, ready) = prepare(plan, self.config, self.clock).await;
                self.prepared = ready;
                let ack = WorkerMessage {
                    msg: Some(WMsg::PlanAck(ack)),
                };
                if self.tx.send(ack).await.is_err() {
                    return Err(WorkerError::Lost {
                        url: url.clone(),
                        reason: "session closed".into(),
                    });
                }
            }
            Some(CMsg::Start(start)) => self.start(&start),
            Some(CMsg::Stop(stop)) => self.stop(&stop),
            None => {}
        }
        if self.running.as_ref().is_some_and(|r| r.task.is_finished()) {
            self.running = None;
        }
        Ok(())
    }

    /// Starts the accepted plan the start names (a start for any other is ignored).
    fn start(&mut self, start: &Start) {
        let Some(prep) = self.prepared.take() else {
            tracing::warn!(run = %start.run_id, "start for a plan this worker does not hold");
            return;
        };
        if prep.plan.run_id != start.run_id || prep.plan.point_index != start.point_index {
            tracing::warn!(run = %start.run_id, "start does not match the accepted plan");
            return;
        }
        if let Some(old) = self.running.take() {
            let _ = old.stop.send(StopMode::Abort);
        }
        self.running = Some(spawn_shard(
            prep,
            start,
            self.clock,
            self.config.max_duration,
            self.tx.clone(),
        ));
    }

    /// Drains or aborts the running shard the stop names, and drops a plan of its run.
    fn stop(&mut self, stop: &Stop) {
        if let Some(r) = &self.running
            && r.run_id == stop.run_id
            && (r.point_index == stop.point_index || stop.point_index == u32::MAX)
        {
            let mode = if stop.abort {
                StopMode::Abort
            } else {
                StopMode::Drain
            };
            tracing::info!(run = %stop.run_id, reason = %stop.reason, "stop: {mode:?}");
            let _ = r.stop.send(mode);
        }
        if self
            .prepared
            .as_ref()
            .is_some_and(|p| p.plan.run_id == stop.run_id)
        {
            self.prepared = None;
        }
    }
}

/// Dead-man switch: without a coordinator nothing new is sent, and what is in flight is
/// cancelled when the lease runs out (at once on shutdown).
async fn release(running: Option<Running>, shutdown: bool, lease: Duration) {
    let Some(r) = running else {
        return;
    };
    let grace = if shutdown { Duration::ZERO } else { lease };
    let mut task = r.task;
    if grace.is_zero() {
        tracing::info!("shutting down: cancelling requests still in flight");
        let _ = r.stop.send(StopMode::Abort);
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        return;
    }
    let _ = r.stop.send(StopMode::Drain);
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        tracing::warn!(
            "lease of {:.0} s over: cancelling requests still in flight",
            grace.as_secs_f64()
        );
        let _ = r.stop.send(StopMode::Abort);
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
}

/// Validates a plan against this worker's caps and checks the target; returns the ack
/// and, when ok, the plan ready to start.
async fn prepare(
    plan: ShardPlan,
    config: &WorkerConfig,
    clock: ClockEstimate,
) -> (PlanAck, Option<Prepared>) {
    let mut ack = PlanAck {
        run_id: plan.run_id.clone(),
        point_index: plan.point_index,
        ok: false,
        error: String::new(),
        clock_offset_nanos: clock.offset_ns,
        clock_rtt_nanos: clock.rtt_ns.unwrap_or(-1),
    };
    let checked = async {
        let workload = plan.workload.as_ref().ok_or("plan has no workload")?;
        let mut workload =
            WorkloadSpec::try_from(workload).map_err(|e| format!("workload: {e}"))?;
        if let Some(rate) = plan.request_rate {
            workload.arrival = workload.arrival.with_rate(rate);
        }
        let closed = !workload.arrival.is_open();
        let concurrency = crate::caps::inflight(plan.concurrency, closed, config.max_inflight)?;
        if let (Some(cap), Some(stripe)) = (config.max_rate, plan.stripe.as_ref()) {
            crate::caps::rate(&workload, &stripe.into(), cap)?;
        }
        if let Some(c) = concurrency {
            crate::limits::check_streams(u64::from(c))?;
        }
        let report_interval = Duration::try_from_secs_f64(plan.report_interval_s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "report interval {} s is not a positive number of seconds",
                    plan.report_interval_s
                )
            })?;
        let target_spec = plan.target.as_ref().ok_or("plan has no target")?;
        crate::allow::check(&config.allow_targets, &target_spec.base_urls).await?;
        let mut target =
            OpenAiTarget::new(target_spec, workload.ignore_eos).map_err(|e| e.to_string())?;
        if let Some(tok) = tokenizer_of(&workload).await {
            target.set_tokenizer(tok);
        }
        target.preflight().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((workload, target, concurrency, report_interval))
    };
    match checked.await {
        Ok((workload, target, concurrency, report_interval)) => {
            ack.ok = true;
            (
                ack,
                Some(Prepared {
                    plan,
                    target: Arc::new(target),
                    workload: Arc::new(workload),
                    concurrency,
                    report_interval,
                    max_rate: config.max_rate,
                    worker_id: config.id.clone(),
                }),
            )
        }
        Err(e) => {
            tracing::warn!(run = %plan.run_id, "refusing plan: {e}");
            ack.error = e;
            (ack, None)
        }
    }
}

/// The workload's tokenizer, when this worker has its file (loaded once per process): it
/// counts the tokens of chunks whose usage does not say. Without it, usage is spread.
async fn tokenizer_of(workload: &WorkloadSpec) -> Option<Arc<LoadedTokenizer>> {
    static LOADED: std::sync::Mutex<Vec<(String, Arc<LoadedTokenizer>)>> =
        std::sync::Mutex::new(Vec::new());
    let path = workload.tokenizer_path()?.to_owned();
    if let Some((_, t)) = LOADED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(p, _)| *p == path)
    {
        return Some(t.clone());
    }
    if !std::path::Path::new(&path).is_file() {
        tracing::info!("tokenizer {path} is not on this worker: chunk tokens from usage only");
        return None;
    }
    let p = path.clone();
    match tokio::task::spawn_blocking(move || LoadedTokenizer::load(std::path::Path::new(&p))).await
    {
        Ok(Ok(t)) => {
            let t = Arc::new(t);
            LOADED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path, t.clone()));
            Some(t)
        }
        Ok(Err(e)) => {
            tracing::warn!("{e}: chunk tokens from usage only");
            None
        }
        Err(_) => None,
    }
}

/// Local instant of a start instant given on the coordinator's clock.
fn local_instant(start_unix_nanos: i64, clock: ClockEstimate) -> Instant {
    let local_start = start_unix_nanos - clock.offset_ns;
    let delta = local_start - unix_nanos();
    let now = Instant::now();
    if delta <= 0 {
        now
    } else {
        now + Duration::from_nanos(delta as u64)
    }
}

fn spawn_shard(
    prep: Prepared,
    start: &Start,
    clock: ClockEstimate,
    max_duration: Option<Duration>,
    tx: mpsc::Sender<WorkerMessage>,
) -> Running {
    let (stop_tx, stop_rx) = watch::channel(StopMode::Run);
    let start_at = local_instant(start.start_unix_nanos, clock);
    let run_id = prep.plan.run_id.clone();
    let point_index = prep.plan.point_index;
    // The worker's own cap: abort at start + max_duration, whatever the plan says.
    if let Some(max) = max_duration {
        let stop = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start_at + max).await;
            if !stop.is_closed() && *stop.borrow() != StopMode::Abort {
                tracing::warn!(
                    "shard reached --max-duration {:.0} s; aborting it",
                    max.as_secs_f64()
                );
                let _ = stop.send(StopMode::Abort);
            }
        });
    }
    let span = tracing::info_span!(
        "shard",
        otel.name = %format!("shard {} of point {}", prep.plan.shard_index, prep.plan.point_label),
        run = %run_id,
        point = point_index,
        rackload.shard.index = prep.plan.shard_index,
        rackload.shard.count = prep.plan.shard_count,
        rackload.concurrency = prep.plan.concurrency,
    );
    // The coordinator's point span is the parent (its context came in the plan).
    rackload_telemetry::set_remote_parent(&span, &prep.plan.traceparent);
    let task = tokio::spawn(
        run_shard(prep, (start_at, start.start_unix_nanos), tx, stop_rx).instrument(span),
    );
    Running {
        run_id,
        point_index,
        stop: stop_tx,
        task,
    }
}

/// The runtime that sends requests, apart from the one that keeps the session.
fn load_runtime() -> &'static tokio::runtime::Handle {
    static LOAD: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    LOAD.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("rackload-load")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the load runtime: {e}"))
    })
    .handle()
}

/// A worker's verdict on itself, interval by interval: did it, rather than the target,
/// set the pace?
struct Health {
    cores: usize,
    cpu_prev: Option<f64>,
    wall_prev: Instant,
}

/// CPU share of the worker's cores above which it is the bottleneck.
const SATURATED_CPU: f64 = 0.9;

impl Health {
    fn new(cores: usize, cpu: Option<f64>, start: Instant) -> Health {
        Health {
            cores,
            cpu_prev: cpu,
            wall_prev: start.max(Instant::now()),
        }
    }

    /// Why the worker was saturated in the interval that `snap` closes, if it was.
    fn interval(&mut self, snap: &Snapshot) -> Option<String> {
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.wall_prev).as_secs_f64();
        let cpu = process_cpu_seconds();
        let share = match (self.cpu_prev, cpu) {
            (Some(a), Some(b)) if wall > 0.2 => Some((b - a) / wall / self.cores as f64),
            _ => None,
        };
        if wall > 0.2 {
            self.cpu_prev = cpu;
            self.wall_prev = now;
        }
        let sent = snap.all.sent;
        let late = snap.all.late_starts;
        let lag_p99_ms = snap
            .all
            .lat
            .get(rackload_proto::v1::Metric::ScheduleLag)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
        verdict(share, self.cores, sent, late, lag_p99_ms)
    }
}

/// The saturation rule (DESIGN.md §5): CPU at 90% of the worker's cores, or more than 1%
/// of an interval's open-loop sends late by over 5 ms.
fn verdict(
    cpu_share: Option<f64>,
    cores: usize,
    sent: u64,
    late: u64,
    lag_p99_ms: Option<f64>,
) -> Option<String> {
    let mut why = Vec::new();
    if let Some(share) = cpu_share
        && share >= SATURATED_CPU
    {
        why.push(format!(
            "worker CPU at {:.0}% of its {cores} core(s)",
            100.0 * share
        ));
    }
    if late > 0 && late * 100 > sent {
        why.push(format!(
            "{late} of {sent} open-loop sends started late (schedule lag p99 {:.1} ms)",
            lag_p99_ms.unwrap_or(0.0)
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// CPU time (user + system) this process has used, from /proc/self/stat (Linux; clock
/// ticks of 1/100 s, the kernel's USER_HZ). None elsewhere.
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn nanos_since(start: Instant, t: Instant) -> i64 {
    i64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(i64::MAX)
}

/// The shard's request tracer: the plan's sampling ratio, seeded by the run id so that every worker draws alike.
fn request_tracer(plan: &ShardPlan, target: &OpenAiTarget) -> Option<Arc<RequestTracer>> {
    if !rackload_telemetry::tracing_enabled() {
        return None;
    }
    let sampler = RequestSampler::new(plan.trace_sample, RequestSampler::seed_of(&plan.run_id));
    let parent = crate::trace::shard_context(&tracing::Span::current());
    RequestTracer::new(sampler, parent, target).map(Arc::new)
}

/// Runs a prepared shard from its start, `(local instant, coordinator's Unix ns)`.
async fn run_shard(
    prep: Prepared,
    (start_at, start_unix_nanos): (Instant, i64),
    tx: mpsc::Sender<WorkerMessage>,
    mut stop: watch::Receiver<StopMode>,
) {
    let recorder = Arc::new(Recorder::new(prep.target.urls().len()));
    let requests = prep.plan.record_requests.then(|| {
        Arc::new(RequestLog::new(
            prep.worker_id.clone(),
            prep.target.urls(),
            start_at,
            start_unix_nanos,
            prep.plan.record_gaps,
        ))
    });
    tokio::select! {
        () = tokio::time::sleep_until(start_at) => {}
        _ = stop.wait_for(|m| *m != StopMode::Run) => {}
    }
    let mut reporter = Reporter::new(&prep, start_at, requests.clone());
    let load = shard_load(&prep, start_at, requests);
    let (target, rec) = (prep.target.clone(), recorder.clone());
    let load_stop = stop.clone();
    // The load runs on its own runtime: a worker busy with requests delays its own
    // requests, never its heartbeats and reports (which stay on this one).
    let mut load_task = load_runtime()
        .spawn(async move { load.run(target, rec, load_stop, start_at).await }.in_current_span());
    let every = prep.report_interval;
    let mut ticker = tokio::time::interval_at(start_at + every, every);
    loop {
        tokio::select! {
            _ = &mut load_task => break,
            _ = ticker.tick() => {
                let r = reporter.report(nanos_since(start_at, Instant::now()), recorder.take());
                // A full channel means the coordinator reads slowly; waiting here delays
                // only reports, never requests. A closed one means the session is gone:
                // the load still ends as the stop signal says (drain, then abort).
                let _ = tx.send(WorkerMessage { msg: Some(WMsg::Interval(r)) }).await;
            }
        }
    }
    let snap = recorder.take();
    let end = snap.last_end.unwrap_or_else(Instant::now);
    let r = reporter.report(nanos_since(start_at, end), snap);
    let total = &reporter.total;
    tracing::info!(
        run = %prep.plan.run_id,
        point = prep.plan.point_index,
        sent = total.sent,
        completed = total.completed,
        failed = total.failed(),
        "shard finished"
    );
    let _ = tx
        .send(WorkerMessage {
            msg: Some(WMsg::Final(r)),
        })
        .await;
}

/// The load a prepared plan sends from `start_at`.
fn shard_load(prep: &Prepared, start_at: Instant, requests: Option<Arc<RequestLog>>) -> Shard {
    let plan = &prep.plan;
    Shard {
        workload: prep.workload.clone(),
        stripe: plan
            .stripe
            .as_ref()
            .map(Into::into)
            .unwrap_or(rackload_workloads::Stripe {
                cycle: 0,
                offset: 0,
                width: 0,
                total: 0,
            }),
        concurrency: prep.concurrency,
        warmup: plan.warmup,
        deadline: plan
            .duration_s
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|d| start_at.checked_add(d)),
        span: tracing::Span::current(),
        tracer: request_tracer(plan, &prep.target),
        max_rate: prep.max_rate,
        requests,
        goodput: plan.goodput,
    }
}

/// Turns each interval's snapshot into a report: counters, histograms (overall and per
/// endpoint), requests in flight, CPU used and the client-health verdict.
struct Reporter {
    run_id: String,
    point_index: u32,
    urls: Vec<String>,
    start_at: Instant,
    cpu_at_start: Option<f64>,
    health: Health,
    seq: u64,
    /// Everything reported so far.
    total: Counters,
    /// Per-request records, when the plan asks for them.
    requests: Option<Arc<RequestLog>>,
}

impl Reporter {
    fn new(prep: &Prepared, start_at: Instant, requests: Option<Arc<RequestLog>>) -> Reporter {
        let cpu_at_start = process_cpu_seconds();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Reporter {
            run_id: prep.plan.run_id.clone(),
            point_index: prep.plan.point_index,
            urls: prep.target.urls(),
            start_at,
            cpu_at_start,
            health: Health::new(cores, cpu_at_start, start_at),
            seq: 0,
            total: Counters::default(),
            requests,
        }
    }

    fn report(&mut self, elapsed: i64, snap: Snapshot) -> Report {
        let counters = snap.counters();
        self.total.add(&counters);
        let t = &self.total;
        let in_flight = t.sent.saturating_sub(t.completed + t.failed());
        let histograms = snap.all.lat.to_wire().unwrap_or_else(|e| {
            tracing::error!("cannot encode histograms: {e}");
            Vec::new()
        });
        let endpoints = snap.endpoint_reports(&self.urls).unwrap_or_else(|e| {
            tracing::error!("cannot encode endpoint histograms: {e}");
            Vec::new()
        });
        let saturation = self.health.interval(&snap);
        if let Some(why) = &saturation {
            tracing::warn!(run = %self.run_id, point = self.point_index, "client saturated: {why}");
        }
        let seq = self.seq;
        self.seq += 1;
        Report {
            endpoints,
            client_saturated: saturation.is_some(),
            saturation_reason: saturation.unwrap_or_default(),
            run_id: self.run_id.clone(),
            point_index: self.point_index,
            seq,
            elapsed_nanos: elapsed,
            counters: Some(counters),
            histograms,
            in_flight,
            window_start_nanos: snap
                .first_send
                .map_or(-1, |t| nanos_since(self.start_at, t)),
            cpu_seconds: self
                .cpu_at_start
                .zip(process_cpu_seconds())
                .map_or(0.0, |(a, b)| (b - a).max(0.0)),
            requests_gz: self
                .requests
                .as_ref()
                .map(|log| log.take_gz())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_is_read_and_grows_with_work() {
        let a = process_cpu_seconds().expect("Linux /proc/self/stat");
        // Burn CPU until the counter shows 50 ms more (it ticks every 10 ms), or give up
        // after 10 s of wall time: a counter that does not move fails.
        let wall = tokio::time::Instant::now();
        let mut x = 0u64;
        let mut b = a;
        while b - a < 0.05 && wall.elapsed() < Duration::from_secs(10) {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            b = process_cpu_seconds().expect("again");
        }
        assert!(
            b - a >= 0.05,
            "CPU time did not grow with work: {a} then {b}"
        );
    }

    #[test]
    fn identity_failures_are_known_by_their_kind_not_their_text() {
        use rustls::{CertificateError, Error as Tls};
        #[derive(Debug, thiserror::Error)]
        #[error("connect failed")]
        struct Wrapper(#[source] std::io::Error);
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Tls::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(is_identity_failure(&Wrapper(bad_cert)));
        let alert = Tls::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert!(is_identity_failure(&alert));
        // A refused connection is worth retrying, whatever words its message holds.
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "token bucket alert: certificate store busy",
        );
        assert!(!is_identity_failure(&Wrapper(refused)));
        assert!(!is_identity_failure(&tonic::Status::unavailable("token")));
    }

    #[test]
    fn saturation_verdicts() {
        assert_eq!(verdict(Some(0.5), 2, 1000, 5, Some(1.0)), None);
        let cpu = verdict(Some(0.95), 2, 0, 0, None).expect("cpu bound");
        assert!(cpu.contains("95% of its 2 core"), "{cpu}");
        let late = verdict(Some(0.2), 2, 1000, 50, Some(12.5)).expect("late");
        assert!(
            late.contains("50 of 1000") && late.contains("12.5 ms"),
            "{late}"
        );
    }

    #[test]
    fn clock_estimate_keeps_the_shortest_round_trip() {
        let mut c = ClockEstimate::default();
        // worker sent at 1000, coordinator stamped 5600, received at 1200: rtt 200,
        // offset 5600 - 1100 = 4500
        c.update(
            &ClockPong {
                nonce: 0,
                worker_unix_nanos: 1000,
                coordinator_unix_nanos: 5600,
            },
            1200,
        );
        assert_eq!((c.offset_ns, c.rtt_ns), (4500, Some(200)));
        // a slower round trip does not replace it
        c.update(
            &ClockPong {
                nonce: 1,
                worker_unix_nanos: 2000,
                coordinator_unix_nanos: 9000,
            },
            3000,
        );
        assert_eq!((c.offset_ns, c.rtt_ns), (4500, Some(200)));
    }
}
