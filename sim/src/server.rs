//! The sim's HTTP server: routes, per-request pacing, and the counters at `/stats`.
//! The caller binds the listener and owns shutdown, so tests can use port 0.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::batch::{Admit, Replica, SeqShared};
use crate::faults::{Fault, Faults, mix};
use crate::metrics::Metrics;
use crate::model::FixedLatency;
use crate::openai::{Api, ChunkWriter, DONE_EVENT, GenRequest, error_body};
use crate::profile::Profile;

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

/// The server's own view of its token timing (with `stamp`): from a request's arrival to
/// its first token event, and between consecutive events, as handed to the connection.
#[derive(Debug)]
pub(crate) struct Timing {
    hists: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

#[derive(Serialize)]
struct Quantiles {
    count: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

#[derive(Serialize)]
struct TimingView {
    ttft: Quantiles,
    itl: Quantiles,
}

fn quantiles(h: &Histogram<u64>) -> Quantiles {
    Quantiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

impl Timing {
    fn new() -> Timing {
        // 1 µs .. 1 h at 3 significant figures, as the client records.
        let h = || {
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
        };
        Timing {
            hists: Mutex::new((h(), h())),
        }
    }
    fn token(&self, since_arrival: Duration, since_prev: Option<Duration>) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut g = self.hists.lock().unwrap_or_else(|p| p.into_inner());
        match since_prev {
            None => g.0.saturating_record(us(since_arrival)),
            Some(gap) => g.1.saturating_record(us(gap)),
        }
    }
    fn view(&self) -> TimingView {
        let g = self.hists.lock().unwrap_or_else(|p| p.into_inner());
        TimingView {
            ttft: quantiles(&g.0),
            itl: quantiles(&g.1),
        }
    }
}

struct Shared {
    config: SimConfig,
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
    /// A token event was handed to its connection: `/metrics` and, with `stamp`, `/stats`.
    fn token_sent(&self, since_arrival: Duration, since_prev: Option<Duration>) {
        self.metrics.token(since_arrival, since_prev);
        if let Some(timing) = &self.timing {
            timing.token(since_arrival, since_prev);
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
struct InFlight(Arc<Shared>, Option<crate::trace::ServerSpan>);

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
    fn served(&self) {
        self.0.stats.served.fetch_add(1, Ordering::Relaxed);
    }
    fn tokens(&self, n: u64) {
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
    pins.into_iter()
        .map(|pinned| {
            Router::new()
                .route("/v1/completions", post(completions))
                .route("/v1/chat/completions", post(chat))
                .route("/v1/models", get(models))
                .route("/stats", get(stats))
                .route("/traceparents", get(traceparents))
                .route("/metrics", get(metrics))
                .route("/health", get(|| async { "ok" }))
                .with_state(Front {
                    s: shared.clone(),
                    pinned,
                })
        })
        .collect()
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

/// Serves `config` over TLS (ALPN h2 and HTTP/1.1) on `listener` until `shutdown`
/// resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: SimConfig,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(config);
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
    let req = match GenRequest::parse(api, &body) {
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
    let mut guard = InFlight::new(s.clone());
    let (n, finish) = output_len(&req, id, s.config.disregard_ignore_eos);
    if let Some((tp, at)) = traced {
        guard.1 = server_span(&s, api, &tp, at, req.prompt_tokens, n);
    }
    s.stats
        .prompt_tokens
        .fetch_add(u64::from(req.prompt_tokens), Ordering::Relaxed);
    let latency = s.config.latency;
    let reply = Reply {
        s: s.clone(),
        writer: ChunkWriter::new(api, id, unix_now(), &s.config.model),
        req,
        n,
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

/// An SSE response around `body`.
fn sse(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Where an injected mid-stream fault strikes: after half the tokens.
fn fault_at(fault: Option<Fault>, n: u32) -> Option<(u32, Fault)> {
    fault.map(|f| (n / 2, f))
}

const MALFORMED_EVENT: &str = "data: {\"id\":\"broken\",\"choices\":[{\"text\":\n\n";

/// A stall lasts until the client gives up (bounded, so nothing outlives a test run).
const STALL: Duration = Duration::from_secs(3600);

fn reset_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected fault: reset")
}

/// What a streamed answer is made of: the request, its length and ending, its injected
/// fault, when it arrived, and its place in the counters.
struct Reply {
    s: Arc<Shared>,
    writer: ChunkWriter,
    req: GenRequest,
    n: u32,
    finish: &'static str,
    fault: Option<Fault>,
    arrival: Instant,
    guard: InFlight,
}

impl Reply {
    /// The whole (non-streaming) response.
    fn whole(self) -> Response {
        self.guard.served();
        self.guard.tokens(u64::from(self.n));
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.writer
                .full_response(self.req.prompt_tokens, self.n, self.finish),
        )
            .into_response()
    }
}

/// One SSE event per token at its absolute instant, then usage, then `[DONE]`.
fn paced_stream(reply: Reply) -> Body {
    let Reply {
        s,
        writer,
        req,
        n,
        finish,
        fault,
        arrival,
        guard,
    } = reply;
    enum Step {
        Token(u32),
        Usage,
        Done,
        End,
    }
    let latency = s.config.latency;
    let strike = fault_at(fault, n);
    let state = (Step::Token(0), guard, None::<Instant>);
    let stream = futures_util::stream::unfold(state, move |(step, guard, prev)| {
        let writer = &writer;
        let req = &req;
        let s = s.clone();
        let out = match step {
            Step::Token(k) => match strike {
                Some((at, f)) if at == k => Some((None, Err(f), Step::End)),
                _ => {
                    let last = k + 1 == n;
                    let event = writer.token_event(k, k == 0, last.then_some(finish));
                    let next = match (last, req.include_usage) {
                        (false, _) => Step::Token(k + 1),
                        (true, true) => Step::Usage,
                        (true, false) => Step::Done,
                    };
                    Some((Some(arrival + latency.token_offset(k)), Ok(event), next))
                }
            },
            Step::Usage => Some((
                None,
                Ok(writer.usage_event(req.prompt_tokens, n)),
                Step::Done,
            )),
            Step::Done if fault == Some(Fault::NoDone) => None,
            Step::Done => {
                guard.served();
                Some((None, Ok(DONE_EVENT.to_owned()), Step::End))
            }
            Step::End => None,
        };
        async move {
            let (at, event, next) = out?;
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            let event = match event {
                Ok(e) => e,
                Err(Fault::Malformed) => MALFORMED_EVENT.to_owned(),
                Err(Fault::Stall) => {
                    tokio::time::sleep(STALL).await;
                    return None;
                }
                Err(_) => return Some((Err(reset_error()), (next, guard, prev))),
            };
            let mut stamp = prev;
            if at.is_some() {
                guard.tokens(1);
                let now = Instant::now();
                s.token_sent(now - arrival, prev.map(|p| now - p));
                stamp = Some(now);
            }
            Some((Ok(Bytes::from(event)), (next, guard, stamp)))
        }
    });
    Body::from_stream(stream)
}

/// Streams what the batch engine produces for one request: an SSE event per
/// `stream_interval` tokens (the last may hold fewer), as soon as the engine has them; a
/// client that reads late gets several events in one write, as from a real server.
fn batch_stream(reply: Reply, seq: Arc<SeqShared>) -> Body {
    let Reply {
        s,
        writer,
        req,
        n,
        finish,
        fault,
        arrival,
        guard,
    } = reply;
    struct St {
        sent: u32,
        prev: Option<Instant>,
        ended: bool,
        fail: Option<Fault>,
    }
    let interval = s.config.stream_interval.max(1);
    let strike = fault_at(fault, n);
    let st = St {
        sent: 0,
        prev: None,
        ended: false,
        fail: None,
    };
    let ctx = Arc::new((writer, req));
    let stream = futures_util::stream::unfold((st, guard), move |(mut st, guard)| {
        let s = s.clone();
        let seq = seq.clone();
        let ctx = ctx.clone();
        async move {
            let (writer, req) = (&ctx.0, &ctx.1);
            if st.ended {
                return None;
            }
            if let Some(f) = st.fail {
                if f == Fault::Stall {
                    tokio::time::sleep(STALL).await;
                    return None;
                }
                st.ended = true;
                return Some((Err(reset_error()), (st, guard)));
            }
            loop {
                let produced = seq.produced.load(Ordering::Acquire).min(n);
                let finished = seq.finished.load(Ordering::Acquire);
                let ready = produced - st.sent;
                if ready >= interval || (ready > 0 && (finished || produced == n)) {
                    let mut buf = String::new();
                    let now = Instant::now();
                    while st.sent < produced {
                        if let Some((at, f)) = strike
                            && st.sent >= at
                        {
                            if f == Fault::Malformed {
                                buf.push_str(MALFORMED_EVENT);
                                st.ended = true;
                            } else {
                                st.fail = Some(f);
                            }
                            break;
                        }
                        let k = st.sent;
                        let count = interval.min(produced - k);
                        if count < interval && !(finished || produced == n) {
                            break;
                        }
                        let last = k + count == n;
                        buf.push_str(&writer.tokens_event(
                            k,
                            count,
                            k == 0,
                            last.then_some(finish),
                        ));
                        st.sent += count;
                        guard.tokens(u64::from(count));
                        let gap = st.prev.map(|p| now - p);
                        s.token_sent(now - arrival, gap);
                        st.prev = Some(now);
                    }
                    if st.sent == n && !st.ended && st.fail.is_none() {
                        if req.include_usage {
                            buf.push_str(&writer.usage_event(req.prompt_tokens, n));
                        }
                        if fault != Some(Fault::NoDone) {
                            buf.push_str(DONE_EVENT);
                            guard.served();
                        }
                        st.ended = true;
                    }
                    if buf.is_empty() {
                        continue;
                    }
                    return Some((Ok(Bytes::from(buf)), (st, guard)));
                }
                if finished && st.sent >= produced {
                    return None;
                }
                seq.notify.notified().await;
            }
        }
    });
    Body::from_stream(stream)
}

/// Events per write in fast mode: one `write()` per event costs the sim's kernel ~6 µs,
/// so a firehose must pack them (DESIGN.md §9).
pub(crate) const FAST_EVENTS_PER_FRAME: u32 = 64;

/// Fast mode: no model delays; the events, built once per request, are copied into frames
/// of up to [`FAST_EVENTS_PER_FRAME`].
fn fast_stream(reply: Reply) -> Body {
    let Reply {
        writer,
        req,
        n,
        finish,
        fault,
        guard,
        ..
    } = reply;
    enum Phase {
        Tokens(u32),
        Fail(Fault),
        End,
    }
    let first = writer.token_event(0, true, (n == 1).then_some(finish));
    let middle: Vec<String> = (1..=8)
        .map(|k| writer.token_event(k, false, None))
        .collect();
    let last = writer.token_event(n.saturating_sub(1), false, Some(finish));
    let usage = req
        .include_usage
        .then(|| writer.usage_event(req.prompt_tokens, n));
    let strike = fault_at(fault, n);
    let frame_cap = FAST_EVENTS_PER_FRAME as usize * last.len() + 256;
    let stream = futures_util::stream::unfold((Phase::Tokens(0), guard), move |(phase, guard)| {
        let mut buf = Vec::new();
        let next = match phase {
            Phase::End => None,
            Phase::Fail(f) => Some(Phase::Fail(f)),
            Phase::Tokens(k0) => {
                buf.reserve(frame_cap);
                let end = n.min(k0 + FAST_EVENTS_PER_FRAME);
                let mut next = Phase::Tokens(end);
                let mut events = 0;
                for k in k0..end {
                    if let Some((at, f)) = strike
                        && at == k
                    {
                        next = if f == Fault::Malformed {
                            buf.extend_from_slice(MALFORMED_EVENT.as_bytes());
                            Phase::End
                        } else {
                            Phase::Fail(f)
                        };
                        break;
                    }
                    let event = match k {
                        0 => &first,
                        k if k + 1 == n => &last,
                        k => &middle[(k as usize - 1) % middle.len()],
                    };
                    buf.extend_from_slice(event.as_bytes());
                    events += 1;
                }
                guard.tokens(events);
                if matches!(next, Phase::Tokens(k) if k == n) {
                    if let Some(u) = &usage {
                        buf.extend_from_slice(u.as_bytes());
                    }
                    if fault != Some(Fault::NoDone) {
                        buf.extend_from_slice(DONE_EVENT.as_bytes());
                        guard.served();
                    }
                    next = Phase::End;
                }
                Some(next)
            }
        };
        async move {
            let next = next?;
            if !buf.is_empty() {
                return Some((Ok(Bytes::from(buf)), (next, guard)));
            }
            match next {
                Phase::Fail(Fault::Stall) => {
                    tokio::time::sleep(STALL).await;
                    None
                }
                Phase::Fail(_) => Some((Err(reset_error()), (Phase::End, guard))),
                _ => None,
            }
        }
    });
    Body::from_stream(stream)
}
