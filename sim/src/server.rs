//! The sim's HTTP server: routes, what each request gets (its length, reasoning share,
//! fault and replica), and the counters at `/stats`; the streams themselves are paced in
//! [`crate::streams`]. The caller binds the listener and owns shutdown, so tests can use
//! port 0.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::time::Instant;

use crate::batch::{Admit, Replica, SeqShared};
use crate::faults::{Fault, Faults, mix};
use crate::metrics::Metrics;
use crate::model::FixedLatency;
use crate::openai::{Api, ChunkWriter, GenRequest, PromptCounter, error_body};
use crate::profile::Profile;
use crate::stamps::{StreamStamps, Timing, TimingView};
use crate::streams::{Reply, batch_stream, fast_stream, paced_stream, sse};

/// What the sim serves and how fast.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The one model name served (`/v1/models`); requests naming another get 404.
    pub model: String,
    pub latency: FixedLatency,
    /// No model delays; events packed many per write (a target for benchmarking clients).
    pub fast: bool,
    /// Injected failures.
    pub faults: Faults,
    /// Record the instant each paced token event is handed to the connection, as TTFT and
    /// inter-token histograms at `/stats` (the server's side of a timing-fidelity check).
    pub stamp: bool,
    /// The continuous-batching model with this profile (None: the fixed latencies).
    pub profile: Option<Profile>,
    /// Replicas of the profile behind this server (least-loaded routing).
    pub replicas: u32,
    /// Answer 429 when a replica's waiting queue holds this many requests (0 = never).
    pub max_waiting: u64,
    /// Tokens per SSE event (SGLang's and TRT-LLM's stream interval).
    pub stream_interval: u32,
    /// Behave like a server that ignores `ignore_eos`: stop at a natural end anyway.
    pub disregard_ignore_eos: bool,
    /// Chat: the first this many output tokens are reasoning deltas (a reasoning model).
    pub reasoning_tokens: u32,
    /// Fixed latencies, streamed: speculative decoding accepting 1..=K tokens per step,
    /// one event per step, K × ITL apart (1 = one token per event).
    pub tokens_per_chunk: u32,
    /// How prompt text is counted (a tokenizer, else bytes / 4).
    pub prompt_counter: PromptCounter,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "rackload-sim".to_owned(),
            latency: FixedLatency {
                ttft: Duration::from_millis(50),
                itl: Duration::from_millis(2),
            },
            fast: false,
            faults: Faults::default(),
            stamp: false,
            profile: None,
            replicas: 1,
            max_waiting: 0,
            stream_interval: 1,
            disregard_ignore_eos: false,
            reasoning_tokens: 0,
            tokens_per_chunk: 1,
            prompt_counter: PromptCounter::default(),
        }
    }
}

/// Counters at `GET /stats`.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Requests accepted (parsed and started).
    pub received: AtomicU64,
    /// Responses finished (a stream's `[DONE]` written, or a whole body returned).
    pub served: AtomicU64,
    /// Accepted and not yet finished or abandoned by the client.
    pub in_flight: AtomicU64,
    /// The most requests ever in flight at once (a client's concurrency, seen from here).
    pub peak_in_flight: AtomicU64,
    /// Token events handed to connections (streamed) or returned (whole responses).
    pub tokens: AtomicU64,
    /// Generation requests that came over HTTP/2 (h2c or h2 over TLS).
    pub http2: AtomicU64,
    /// Prompt tokens of accepted requests.
    pub prompt_tokens: AtomicU64,
}

#[derive(Serialize)]
struct StatsView {
    received: u64,
    served: u64,
    in_flight: u64,
    peak_in_flight: u64,
    tokens: u64,
    http2: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timing: Option<TimingView>,
}

pub(crate) struct Shared {
    pub config: SimConfig,
    stats: SimStats,
    next_id: AtomicU64,
    timing: Option<Timing>,
    /// The batch model's replicas (empty with fixed latencies).
    replicas: Vec<Replica>,
    metrics: Metrics,
    /// W3C traceparents received (`/traceparents`).
    traceparents: crate::trace::Received,
}

impl Shared {
    /// An event of `tokens` tokens was handed to its connection at `now`: `/metrics` and,
    /// with `stamp`, `/stats`.
    pub(crate) fn event_sent(
        &self,
        st: &mut StreamStamps,
        now: Instant,
        tokens: u32,
        reasoning: bool,
    ) {
        let gap = st.gap(now);
        self.metrics.token(now - st.arrival, gap);
        if let Some(timing) = &self.timing {
            timing.event(st, now, gap, tokens, reasoning);
        }
    }

    /// A stream of `tokens` tokens ended (its TPOT, with `stamp`).
    pub(crate) fn stream_done(&self, st: &StreamStamps, tokens: u32) {
        if let Some(timing) = &self.timing {
            timing.finish(st, tokens);
        }
    }
}

/// A router's view: the shared sim, and the one replica it serves when each replica has
/// its own port.
#[derive(Clone)]
struct Front {
    s: Arc<Shared>,
    pinned: Option<usize>,
}

impl Front {
    fn replicas(&self) -> &[Replica] {
        match self.pinned {
            Some(k) => std::slice::from_ref(&self.s.replicas[k]),
            None => &self.s.replicas,
        }
    }
}

/// Decrements `in_flight` when a response ends, whether finished or dropped (and ends
/// the request's server span then, when it is traced).
pub(crate) struct InFlight(Arc<Shared>, pub Option<crate::trace::ServerSpan>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> InFlight {
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        let now = shared.stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared
            .stats
            .peak_in_flight
            .fetch_max(now, Ordering::Relaxed);
        InFlight(shared, None)
    }
    pub fn served(&self) {
        self.0.stats.served.fetch_add(1, Ordering::Relaxed);
    }
    pub fn tokens(&self, n: u64) {
        self.0.stats.tokens.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sim's routes.
pub fn router(config: SimConfig) -> Router {
    routers(config, false).swap_remove(0)
}

/// The sim's routes: one router for all replicas, or with `per_replica` one per replica
/// (each to be served on its own port). Starts the replicas' engines, so it must be called
/// inside a tokio runtime.
pub fn routers(config: SimConfig, per_replica: bool) -> Vec<Router> {
    routers_and_meters(config, per_replica).0
}

/// [`routers`], and the router of the sim's meters alone, as a rack's would serve them on
/// their own address: the GPUs' power at `/metrics` (a DCGM exporter's path) and the
/// chassis' over Redfish.
pub fn routers_and_meters(config: SimConfig, per_replica: bool) -> (Vec<Router>, Router) {
    let timing = config.stamp.then(Timing::new);
    let replicas = match &config.profile {
        Some(p) => {
            let p = Arc::new(p.clone());
            (0..config.replicas.max(1))
                .map(|_| Replica::start(p.clone()))
                .collect()
        }
        None => Vec::new(),
    };
    let shared = Arc::new(Shared {
        timing,
        config,
        stats: SimStats::default(),
        next_id: AtomicU64::new(1),
        replicas,
        metrics: Metrics::default(),
        traceparents: crate::trace::Received::default(),
    });
    let pins: Vec<Option<usize>> = if per_replica && !shared.replicas.is_empty() {
        (0..shared.replicas.len()).map(Some).collect()
    } else {
        vec![None]
    };
    let meters = Router::new()
        .route("/metrics", get(gpu_metrics))
        .route("/redfish/v1/Chassis/1/Power", get(redfish_power))
        .route(
            "/redfish/v1/Chassis/1/EnvironmentMetrics",
            get(redfish_environment),
        )
        .with_state(Front {
            s: shared.clone(),
            pinned: None,
        });
    let serving = pins
        .into_iter()
        .map(|pinned| {
            Router::new()
                .route("/v1/completions", post(completions))
                .route("/v1/chat/completions", post(chat))
                .route("/v1/models", get(models))
                .route("/stats", get(stats))
                .route("/traceparents", get(traceparents))
                .route("/metrics", get(metrics))
                .route("/gpu/metrics", get(gpu_metrics))
                .route("/redfish/v1/Chassis/1/Power", get(redfish_power))
                .route(
                    "/redfish/v1/Chassis/1/EnvironmentMetrics",
                    get(redfish_environment),
                )
                .route("/health", get(|| async { "ok" }))
                .with_state(Front {
                    s: shared.clone(),
                    pinned,
                })
        })
        .collect();
    (serving, meters)
}

/// Serves `config` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(config), shutdown).await
}

/// Serves one router on `listener` until `shutdown` resolves.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, Nagle holds a stream's first event behind its unacknowledged
    // headers until the client's delayed ACK (~40 ms): every TTFT would be late.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` (the sim's [`router`]) over TLS (ALPN h2 and HTTP/1.1) on `listener`
/// until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return; // a failed handshake is the client's to report
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

/// A TLS server configuration from PEM files (certificate chain, private key).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn stats(State(Front { s, .. }): State<Front>) -> Response {
    let view = StatsView {
        received: s.stats.received.load(Ordering::Relaxed),
        served: s.stats.served.load(Ordering::Relaxed),
        in_flight: s.stats.in_flight.load(Ordering::Relaxed),
        peak_in_flight: s.stats.peak_in_flight.load(Ordering::Relaxed),
        tokens: s.stats.tokens.load(Ordering::Relaxed),
        http2: s.stats.http2.load(Ordering::Relaxed),
        timing: s.timing.as_ref().map(Timing::view),
    };
    axum::Json(view).into_response()
}

async fn traceparents(State(Front { s, .. }): State<Front>) -> Response {
    axum::Json(s.traceparents.all()).into_response()
}

async fn models(State(Front { s, .. }): State<Front>) -> Response {
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{"id": s.config.model, "object": "model", "created": unix_now(), "owned_by": "rackload-sim"}]
    }))
    .into_response()
}

async fn completions(State(f): State<Front>, req: axum::extract::Request) -> Response {
    receive(f, Api::Completions, req).await
}

async fn chat(State(f): State<Front>, req: axum::extract::Request) -> Response {
    receive(f, Api::Chat, req).await
}

async fn metrics(State(f): State<Front>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (kind, text) =
        crate::metrics::render(accept, &f.s.config, &f.s.stats, &f.s.metrics, f.replicas());
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

async fn gpu_metrics(State(f): State<Front>) -> Response {
    let text = crate::metrics::render_gpu(&f.s.config, &f.s.stats, f.replicas());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A BMC's classic Redfish power page for the sim as one chassis.
async fn redfish_power(State(f): State<Front>) -> Response {
    let watts = crate::metrics::node_watts(&f.s.config, &f.s.stats, f.replicas());
    axum::Json(serde_json::json!({
        "@odata.id": "/redfish/v1/Chassis/1/Power",
        "@odata.type": "#Power.v1_7_1.Power",
        "Id": "Power",
        "Name": "Power",
        "PowerControl": [{
            "@odata.id": "/redfish/v1/Chassis/1/Power#/PowerControl/0",
            "MemberId": "0",
            "Name": "System Power Control",
            "PowerConsumedWatts": (watts * 10.0).round() / 10.0,
        }],
    }))
    .into_response()
}

/// The newer Redfish shape of the same reading (`EnvironmentMetrics.PowerWatts`).
async fn redfish_environment(State(f): State<Front>) -> Response {
    let watts = crate::metrics::node_watts(&f.s.config, &f.s.stats, f.replicas());
    axum::Json(serde_json::json!({
        "@odata.id": "/redfish/v1/Chassis/1/EnvironmentMetrics",
        "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
        "Id": "EnvironmentMetrics",
        "Name": "Chassis Environment Metrics",
        "PowerWatts": {"Reading": (watts * 10.0).round() / 10.0},
    }))
    .into_response()
}

/// Largest request body read (a 1 M-token prompt as token ids fits).
const MAX_BODY: usize = 64 << 20;

/// A request's arrival is stamped before its body is read and parsed, so that the sim's
/// own TTFT covers what the client's does but the network.
async fn receive(f: Front, api: Api, req: axum::extract::Request) -> Response {
    let arrival = Instant::now();
    count_version(&f.s, req.version());
    let traced = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(|tp| {
            f.s.traceparents.add(tp);
            (tp.to_owned(), SystemTime::now())
        });
    match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(body) => generate(f, api, body, arrival, traced).await,
        Err(e) => json_error(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body: {e}"),
            "BadRequestError",
        ),
    }
}

fn count_version(s: &Shared, version: Version) {
    if version == Version::HTTP_2 {
        s.stats.http2.fetch_add(1, Ordering::Relaxed);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_error(status: StatusCode, message: &str, kind: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error_body(message, kind, status.as_u16()),
    )
        .into_response()
}

/// Output length: `max_tokens` when EOS is ignored, else a natural stop drawn from the
/// request id (uniform in 1..=max_tokens, deterministic).
fn output_len(req: &GenRequest, id: u64, disregard_ignore_eos: bool) -> (u32, &'static str) {
    if req.ignore_eos && !disregard_ignore_eos {
        return (req.max_tokens, "length");
    }
    let z = mix(id);
    let n = 1 + (z % u64::from(req.max_tokens)) as u32;
    (
        n,
        if n == req.max_tokens {
            "length"
        } else {
            "stop"
        },
    )
}

async fn generate(
    f: Front,
    api: Api,
    body: Bytes,
    arrival: Instant,
    traced: Option<(String, SystemTime)>,
) -> Response {
    let s = f.s.clone();
    let req = match GenRequest::parse(api, &body, &s.config.prompt_counter) {
        Ok(r) => r,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg, "BadRequestError"),
    };
    if !req.model.is_empty() && req.model != s.config.model {
        let msg = format!("The model `{}` does not exist.", req.model);
        return json_error(StatusCode::NOT_FOUND, &msg, "NotFoundError");
    }
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let fault = s.config.faults.pick(id);
    // The batch model: the least-loaded replica, unless its queue is beyond the bound.
    let replica = f
        .replicas()
        .iter()
        .min_by_key(|r| r.load.load(Ordering::Relaxed));
    if let Some(refused) = refusal(&s, fault, replica) {
        return refused;
    }
    // A slow response starts late, then is served as if it had arrived then.
    let (fault, arrival) = match fault {
        Some(Fault::Slow) => {
            tokio::time::sleep(crate::faults::SLOW_START).await;
            (None, arrival + crate::faults::SLOW_START)
        }
        f => (f, arrival),
    };
    let mut guard = InFlight::new(s.clone());
    let (n, finish) = output_len(&req, id, s.config.disregard_ignore_eos);
    if let Some((tp, at)) = traced {
        guard.1 = server_span(&s, api, &tp, at, req.prompt_tokens, n);
    }
    s.stats
        .prompt_tokens
        .fetch_add(u64::from(req.prompt_tokens), Ordering::Relaxed);
    let latency = s.config.latency;
    let reasoning = match api {
        Api::Chat => s.config.reasoning_tokens.min(n),
        Api::Completions => 0,
    };
    let reply = Reply {
        s: s.clone(),
        writer: ChunkWriter::new(api, id, unix_now(), &s.config.model),
        req,
        id,
        n,
        reasoning,
        finish,
        fault,
        arrival,
        guard,
    };
    if let Some(r) = replica {
        return batched(reply, r).await;
    }
    if !reply.req.stream {
        if !s.config.fast {
            tokio::time::sleep_until(arrival + latency.token_offset(n - 1)).await;
        }
        return reply.whole();
    }
    sse(if s.config.fast {
        fast_stream(reply)
    } else {
        paced_stream(reply)
    })
}

/// An injected fault answered at once, or a queue over its bound.
fn refusal(s: &Shared, fault: Option<Fault>, replica: Option<&Replica>) -> Option<Response> {
    match fault {
        Some(Fault::TooMany) => {
            return Some(json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "injected fault: too many requests",
                "RateLimitError",
            ));
        }
        Some(Fault::Internal) => {
            return Some(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault: internal error",
                "InternalServerError",
            ));
        }
        _ => {}
    }
    let r = replica?;
    (s.config.max_waiting > 0 && r.waiting() >= s.config.max_waiting).then(|| {
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("{} requests waiting; try again later", r.waiting()),
            "RateLimitError",
        )
    })
}

/// The server span of a traced request, a child of the client's `traceparent`.
fn server_span(
    s: &Shared,
    api: Api,
    traceparent: &str,
    at: SystemTime,
    prompt_tokens: u32,
    n: u32,
) -> Option<crate::trace::ServerSpan> {
    let (operation, path) = match api {
        Api::Completions => ("text_completion", "/v1/completions"),
        Api::Chat => ("chat", "/v1/chat/completions"),
    };
    crate::trace::ServerSpan::start(traceparent, path, operation, &s.config.model, at).map(
        |mut span| {
            span.set("gen_ai.usage.input_tokens", i64::from(prompt_tokens));
            span.set("gen_ai.usage.output_tokens", i64::from(n));
            span
        },
    )
}

/// A request the batch model serves: admitted to replica `r`, answered as its tokens come.
async fn batched(reply: Reply, r: &Replica) -> Response {
    let shared = Arc::new(SeqShared::default());
    let admitted = r.submit(Admit {
        prompt_tokens: reply.req.prompt_tokens,
        output_tokens: reply.n,
        shared: shared.clone(),
    });
    if !admitted {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine stopped",
            "ServiceUnavailableError",
        );
    }
    if !reply.req.stream {
        while !shared.finished.load(Ordering::Acquire) {
            shared.notify.notified().await;
        }
        return reply.whole();
    }
    sse(batch_stream(reply, shared))
}
