//! The sim's HTTP server: routes, per-request pacing, and the counters at `/stats`.
//! The caller binds the listener and owns shutdown, so tests can use port 0.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::time::Instant;

use crate::model::FixedLatency;
use crate::openai::{Api, ChunkWriter, DONE_EVENT, GenRequest, error_body};

/// What the sim serves and how fast.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The one model name served (`/v1/models`); requests naming another get 404.
    pub model: String,
    pub latency: FixedLatency,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "rackload-sim".to_owned(),
            latency: FixedLatency {
                ttft: Duration::from_millis(50),
                itl: Duration::from_millis(2),
            },
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
}

#[derive(Serialize)]
struct StatsView {
    received: u64,
    served: u64,
    in_flight: u64,
}

struct Shared {
    config: SimConfig,
    stats: SimStats,
    next_id: AtomicU64,
}

/// Decrements `in_flight` when a response ends, whether finished or dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> InFlight {
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared)
    }
    fn served(&self) {
        self.0.stats.served.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sim's routes.
pub fn router(config: SimConfig) -> Router {
    let shared = Arc::new(Shared {
        config,
        stats: SimStats::default(),
        next_id: AtomicU64::new(1),
    });
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/stats", get(stats))
        .route("/health", get(|| async { "ok" }))
        .with_state(shared)
}

/// Serves `config` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let view = StatsView {
        received: s.stats.received.load(Ordering::Relaxed),
        served: s.stats.served.load(Ordering::Relaxed),
        in_flight: s.stats.in_flight.load(Ordering::Relaxed),
    };
    axum::Json(view).into_response()
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{"id": s.config.model, "object": "model", "created": unix_now(), "owned_by": "rackload-sim"}]
    }))
    .into_response()
}

async fn completions(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    generate(s, Api::Completions, body).await
}

async fn chat(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    generate(s, Api::Chat, body).await
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
fn output_len(req: &GenRequest, id: u64) -> (u32, &'static str) {
    if req.ignore_eos {
        return (req.max_tokens, "length");
    }
    // splitmix64 of the id
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
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

async fn generate(s: Arc<Shared>, api: Api, body: Bytes) -> Response {
    let req = match GenRequest::parse(api, &body) {
        Ok(r) => r,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg, "BadRequestError"),
    };
    if !req.model.is_empty() && req.model != s.config.model {
        let msg = format!("The model `{}` does not exist.", req.model);
        return json_error(StatusCode::NOT_FOUND, &msg, "NotFoundError");
    }
    let arrival = Instant::now();
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight::new(s.clone());
    let latency = s.config.latency;
    let (n, finish) = output_len(&req, id);
    let writer = ChunkWriter::new(api, id, unix_now(), &s.config.model);

    if !req.stream {
        tokio::time::sleep_until(arrival + latency.token_offset(n - 1)).await;
        guard.served();
        return (
            [(header::CONTENT_TYPE, "application/json")],
            writer.full_response(req.prompt_tokens, n, finish),
        )
            .into_response();
    }

    // One SSE event per token at its absolute instant, then usage, then [DONE].
    enum Step {
        Token(u32),
        Usage,
        Done,
        End,
    }
    let state = (Step::Token(0), guard);
    let stream = futures_util::stream::unfold(state, move |(step, guard)| {
        let writer = &writer;
        let req = &req;
        let out = match step {
            Step::Token(k) => {
                let last = k + 1 == n;
                let event = writer.token_event(k, k == 0, last.then_some(finish));
                let next = match (last, req.include_usage) {
                    (false, _) => Step::Token(k + 1),
                    (true, true) => Step::Usage,
                    (true, false) => Step::Done,
                };
                Some((Some(arrival + latency.token_offset(k)), event, next))
            }
            Step::Usage => Some((None, writer.usage_event(req.prompt_tokens, n), Step::Done)),
            Step::Done => {
                guard.served();
                Some((None, DONE_EVENT.to_owned(), Step::End))
            }
            Step::End => None,
        };
        async move {
            let (at, event, next) = out?;
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(event)),
                (next, guard),
            ))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
