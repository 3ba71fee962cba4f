//! An OpenAI-compatible client: builds `/v1/completions` and `/v1/chat/completions`
//! bodies, sends them over pooled keep-alive connections (HTTP/1.1, h2c, or TLS with ALPN)
//! to one or several frontends, and times every SSE message as it arrives (DESIGN.md §5:
//! TTFT, TTFO, ITL per chunk and per token, E2EL). Non-streaming requests are timed whole (TTFT = E2EL).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rackload_proto::v1::{HttpVersion, LoadBalance, TargetSpec};
use rackload_workloads::RequestSpec;
use rackload_workloads::prompt::Prompt;
use tokio::time::Instant;

use super::balance::Balancer;
use super::body::BodyOptions;
pub use super::chunk_scan::FinishReason;
pub use super::options::{Api, TargetError};
use super::options::{Endpoint, Timeouts, parse_base, resolved};
pub use super::stream::{Completed, Failed, Gap, micros, read_sse_bytes};
use super::stream::{error_message, first_byte_timeout};
use super::{options, stream};
use crate::error::ErrorClass;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pool of keep-alive connections to one or more OpenAI-compatible frontends.
pub struct OpenAiTarget {
    client: HttpsClient,
    endpoints: Vec<Endpoint>,
    /// Requests in flight to each endpoint from this process.
    outstanding: Vec<AtomicU64>,
    balancer: Balancer,
    model: String,
    /// Authorization and the extra headers, values marked sensitive.
    headers: HeaderMap,
    timeouts: Timeouts,
    body: BodyOptions,
    /// Counts the tokens of chunks whose usage does not say (the run's tokenizer, when
    /// this worker has its file).
    tokenizer: Option<std::sync::Arc<rackload_workloads::tokenizer::LoadedTokenizer>>,
}

impl fmt::Debug for OpenAiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the API key or header values.
        f.debug_struct("OpenAiTarget")
            .field("endpoints", &self.urls())
            .field("model", &self.model)
            .field("lb", &self.balancer.kind())
            .finish_non_exhaustive()
    }
}

/// One request in flight to an endpoint, counted while it lives.
struct Outstanding<'a>(&'a AtomicU64);

impl<'a> Outstanding<'a> {
    fn enter(count: &'a AtomicU64) -> Outstanding<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Outstanding(count)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Read buffer ceiling per HTTP/1.1 connection: big enough that a coalesced burst of
/// events is one read, small enough for 16,384 streams in one process.
const READ_BUF_MAX: usize = 16 * 1024;

/// The pooled keep-alive client: TCP_NODELAY, the connect timeout, TLS with ALPN for
/// https, and the HTTP version asked for.
fn http_client(spec: &TargetSpec, http: HttpVersion) -> Result<HttpsClient, TargetError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(options::connect_timeout(spec)?);
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(spec)?)
        .https_or_http();
    let https = match http {
        HttpVersion::Http1 => https.enable_http1().wrap_connector(connector),
        HttpVersion::Http2 => https.enable_http2().wrap_connector(connector),
        _ => https
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector),
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .http1_max_buf_size(READ_BUF_MAX)
        .http2_adaptive_window(true)
        .http2_max_concurrent_reset_streams(1024);
    if http == HttpVersion::Http2 {
        builder.http2_only(true);
    }
    Ok(builder.build(https))
}

impl OpenAiTarget {
    pub fn new(spec: &TargetSpec, ignore_eos: bool) -> Result<OpenAiTarget, TargetError> {
        let api = Api::from_endpoint(spec.endpoint)?;
        if spec.base_urls.is_empty() {
            return Err(TargetError::NoUrl);
        }
        let mut endpoints = spec
            .base_urls
            .iter()
            .map(|b| parse_base(b, api))
            .collect::<Result<Vec<_>, _>>()?;
        // Endpoints are reported by their shown URL: two that differ only in hidden query
        // values are told apart by their place in the list.
        let shown: Vec<String> = endpoints.iter().map(|e| e.base.clone()).collect();
        for (k, e) in endpoints.iter_mut().enumerate() {
            if shown.iter().filter(|s| **s == e.base).count() > 1 {
                e.base = format!("{} [{}]", e.base, k + 1);
            }
        }
        let http = resolved("http", spec.http, HttpVersion::Unspecified)?;
        let lb = resolved("lb", spec.lb, LoadBalance::Unspecified)?;
        Ok(OpenAiTarget {
            client: http_client(spec, http)?,
            outstanding: endpoints.iter().map(|_| AtomicU64::new(0)).collect(),
            endpoints,
            balancer: Balancer::new(lb),
            model: spec.model.clone(),
            headers: options::headers(spec)?,
            timeouts: Timeouts::of(spec)?,
            body: BodyOptions {
                api,
                stream: !spec.no_stream,
                ignore_eos,
                min_tokens: spec.min_tokens,
                continuous_usage: !spec.no_continuous_usage,
                extra: options::extra_body(spec)?,
            },
            tokenizer: None,
        })
    }

    /// Counts the tokens of chunks whose usage does not say with `tokenizer`.
    pub fn set_tokenizer(
        &mut self,
        tokenizer: std::sync::Arc<rackload_workloads::tokenizer::LoadedTokenizer>,
    ) {
        self.tokenizer = Some(tokenizer);
    }

    pub fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.base.clone()).collect()
    }

    /// The model requests name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Which OpenAI API requests use.
    pub fn api(&self) -> Api {
        self.body.api
    }

    /// The JSON body of request `req` with `prompt`.
    pub fn body(&self, req: &RequestSpec, prompt: &Prompt) -> Vec<u8> {
        self.body.json(&self.model, req, prompt)
    }

    /// Host and port of endpoint `k` (`server.address`, `server.port`).
    pub fn server(&self, k: usize) -> (&str, u16) {
        let addr = self.endpoints.get(k).map_or("", |e| e.addr.as_str());
        match addr.rsplit_once(':') {
            Some((host, port)) => (
                host.trim_start_matches('[').trim_end_matches(']'),
                port.parse().unwrap_or(0),
            ),
            None => (addr, 0),
        }
    }

    /// Whether responses are streamed (else TTFT = E2EL).
    pub fn streaming(&self) -> bool {
        self.body.stream
    }

    /// Checks that every endpoint accepts a TCP connection, so that an unreachable target
    /// is refused before a single request is counted.
    pub async fn preflight(&self) -> Result<(), TargetError> {
        for ep in &self.endpoints {
            let connect = tokio::net::TcpStream::connect(&ep.addr);
            match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(_)) => {}
                Ok(Err(source)) => {
                    return Err(TargetError::Unreachable {
                        url: ep.base.clone(),
                        addr: ep.addr.clone(),
                        error: source,
                    });
                }
                Err(_) => {
                    return Err(TargetError::Unreachable {
                        url: ep.base.clone(),
                        addr: ep.addr.clone(),
                        error: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer within 5 s",
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The endpoint the next request goes to (round-robin or least outstanding; `p2c`
    /// picks in the shard's tower balancer and falls back to round-robin here).
    pub fn pick(&self) -> usize {
        self.balancer.pick(&self.outstanding)
    }

    /// Number of endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// How requests are spread over the endpoints.
    pub fn lb(&self) -> LoadBalance {
        self.balancer.kind()
    }

    /// The whole-request timeout (None: no limit).
    pub fn request_timeout(&self) -> Option<Duration> {
        self.timeouts.total
    }

    /// Sends request `req` with `prompt` to endpoint `k` and times its response; chunk
    /// gaps are appended to `gaps`. A traced request carries `traceparent` (and its
    /// finish reason is read). The whole-request timeout and the choice of `k` belong to
    /// the tower stack a shard sends through ([`crate::middleware`]).
    pub async fn send_to(
        &self,
        k: usize,
        req: &RequestSpec,
        prompt: &Prompt,
        gaps: &mut Vec<Gap>,
        traceparent: Option<HeaderValue>,
    ) -> Result<Completed, Failed> {
        let body = self.body(req, prompt);
        let ep = &self.endpoints[k];
        // Counted out when the request ends, or is dropped by a timeout around it.
        let _outstanding = Outstanding::enter(&self.outstanding[k]);
        let result = self
            .send_body(ep, body, req.output_len, gaps, traceparent)
            .await;
        match result {
            Ok(mut c) => {
                c.endpoint = k;
                Ok(c)
            }
            Err(mut f) => {
                f.endpoint = Some(k);
                Err(f)
            }
        }
    }

    async fn send_body(
        &self,
        ep: &Endpoint,
        body: Vec<u8>,
        output_len: u32,
        gaps: &mut Vec<Gap>,
        traceparent: Option<HeaderValue>,
    ) -> Result<Completed, Failed> {
        let traced = traceparent.is_some();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(ep.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| {
                Failed::new(ErrorClass::Malformed, format!("cannot build request: {e}"))
            })?;
        *request.headers_mut() = self.headers.clone();
        if let Some(tp) = traceparent {
            request.headers_mut().insert("traceparent", tp);
        }
        let sent_at = Instant::now();
        let first_byte_due = self.timeouts.first_byte.map(|t| sent_at + t);
        let response = self.client.request(request);
        let resp = match (first_byte_due, self.timeouts.first_byte) {
            (Some(due), Some(t)) => tokio::time::timeout_at(due, response)
                .await
                .map_err(|_| first_byte_timeout(t))?,
            _ => response.await,
        }
        .map_err(|e| {
            Failed::new(
                ErrorClass::classify(&e, ErrorClass::StreamReset),
                format!("{}: {}", ep.base, error_chain(&e)),
            )
        })?;
        let status = resp.status();
        let not_a_stream = if self.body.stream {
            not_event_stream(resp.headers())
        } else {
            None
        };
        let body = resp.into_body();
        // An error body is read for its message only: 64 KiB, 5 s at most.
        let message = |body: hyper::body::Incoming| async {
            let body = http_body_util::Limited::new(body, 64 << 10);
            match tokio::time::timeout(Duration::from_secs(5), body.collect()).await {
                Ok(Ok(b)) => error_message(&b.to_bytes()),
                _ => String::new(),
            }
        };
        if !status.is_success() {
            return Err(Failed::new(
                ErrorClass::from_status(status.as_u16()),
                format!("HTTP {status}: {}", message(body).await),
            ));
        }
        if let Some(kind) = not_a_stream {
            return Err(Failed::new(
                ErrorClass::Malformed,
                format!(
                    "HTTP {status} of content-type {kind} where a stream (text/event-stream) was asked: {}",
                    message(body).await
                ),
            ));
        }
        if !self.body.stream {
            return stream::read_whole(body, sent_at, output_len, first_byte_due, traced).await;
        }
        let chat = self.body.api == Api::Chat;
        let tokenizer = self.tokenizer.as_deref();
        stream::read_sse(body, sent_at, self.timeouts, gaps, chat, tokenizer, traced).await
    }
}

/// The content type of a response to a streamed request when it says it is something
/// other than an event stream (an HTML error page from a proxy, a whole JSON answer from a
/// server that ignored `stream`); `None` when it is one, or does not say.
fn not_event_stream(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let media = text.split(';').next().unwrap_or("").trim();
    (!media.eq_ignore_ascii_case("text/event-stream")).then(|| {
        media
            .chars()
            .take(80)
            .collect::<String>()
            .escape_default()
            .to_string()
    })
}

pub use rackload_proto::redact::error_chain;

/// The model names a server lists at `GET /v1/models`.
pub async fn list_models(base_url: &str, tls: &TargetSpec) -> Result<Vec<String>, TargetError> {
    let ep = parse_base(base_url, Api::Completions)?;
    let uri: Uri = format!("{}/v1/models{}", ep.root, ep.query)
        .parse()
        .map_err(|e: http::uri::InvalidUri| TargetError::BadUrl {
            url: ep.base.clone(),
            reason: e.to_string(),
        })?;
    let probe = |reason: String| TargetError::Probe {
        url: ep.base.clone(),
        reason,
    };
    let client: HttpsClient = Client::builder(TokioExecutor::new()).build(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(tls)?)
            .https_or_http()
            .enable_http1()
            .build(),
    );
    let fut = async {
        let resp = client.get(uri).await.map_err(|e| probe(error_chain(&e)))?;
        let status = resp.status();
        // A model list is small: 4 MiB is room for thousands of models.
        let body = http_body_util::Limited::new(resp.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| probe(format!("GET /v1/models: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(probe(format!("GET /v1/models answered HTTP {status}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| probe(format!("GET /v1/models is not JSON: {e}")))?;
        Ok(v["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| probe("GET /v1/models gave no answer within 10 s".into()))?
}

/// The run's TLS client configuration, its errors named by the target's option.
fn tls_config(spec: &TargetSpec) -> Result<rustls::ClientConfig, TargetError> {
    rackload_tls::client_config(spec.tls_insecure, &spec.tls_ca_pem)
        .map_err(|e| options::bad_option(e.option, e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackload_proto::v1;
    use serde_json::Value;

    fn spec(f: impl FnOnce(&mut TargetSpec)) -> TargetSpec {
        let mut t = TargetSpec {
            base_urls: vec!["http://127.0.0.1:9".into()],
            endpoint: v1::Endpoint::ChatCompletions.into(),
            http: HttpVersion::Auto.into(),
            lb: LoadBalance::RoundRobin.into(),
            model: "m".into(),
            api_key: "sk-secret".into(),
            ..TargetSpec::default()
        };
        f(&mut t);
        t
    }

    fn request() -> RequestSpec {
        RequestSpec {
            index: 0,
            input_len: 3,
            output_len: 7,
            prompt_seed: 0,
            entry: None,
        }
    }

    #[test]
    fn bodies_carry_the_options_and_extra_keys_win() {
        let t = OpenAiTarget::new(
            &spec(|t| {
                t.min_tokens = true;
                t.extra_body_json = br#"{"temperature":0.6,"top_k":20}"#.to_vec();
            }),
            true,
        )
        .expect("valid");
        let body: Value =
            serde_json::from_slice(&t.body(&request(), &Prompt::Text("a b c".into())))
                .expect("json");
        assert_eq!(body["max_completion_tokens"], 7);
        assert_eq!(body["min_tokens"], 7);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["stream_options"]["continuous_usage_stats"], true);
        assert_eq!(body["temperature"], 0.6, "--extra-body overrides defaults");
        assert_eq!(body["top_k"], 20);
        assert_eq!(body["messages"][0]["content"], "a b c");

        let t = OpenAiTarget::new(&spec(|t| t.no_stream = true), false).expect("valid");
        let body: Value =
            serde_json::from_slice(&t.body(&request(), &Prompt::Text("x".into()))).expect("json");
        assert_eq!(body["stream"], false);
        assert!(body.get("stream_options").is_none() && body.get("ignore_eos").is_none());

        let t = OpenAiTarget::new(&spec(|t| t.no_continuous_usage = true), true).expect("valid");
        let body: Value =
            serde_json::from_slice(&t.body(&request(), &Prompt::Text("x".into()))).expect("json");
        assert_eq!(
            body["stream_options"],
            serde_json::json!({"include_usage": true})
        );
    }

    /// A base URL's query goes on every request (the model probe's too); it is shown
    /// redacted, and two URLs that differ only in hidden values are still told apart.
    #[test]
    fn a_base_urls_query_is_sent_and_shown_redacted() {
        let t = OpenAiTarget::new(
            &spec(|t| {
                t.base_urls = vec![
                    "http://127.0.0.1:9/v1?api-version=1&key=s3cret-a".into(),
                    "http://127.0.0.1:9/v1?api-version=1&key=s3cret-b".into(),
                ];
            }),
            true,
        )
        .expect("valid");
        assert_eq!(
            t.endpoints[0].uri.to_string(),
            "http://127.0.0.1:9/v1/chat/completions?api-version=1&key=s3cret-a"
        );
        assert_eq!(t.endpoints[1].query, "?api-version=1&key=s3cret-b");
        let urls = t.urls();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9/v1?api-version=REDACTED&key=REDACTED [1]",
                "http://127.0.0.1:9/v1?api-version=REDACTED&key=REDACTED [2]",
            ]
        );
    }

    #[test]
    fn bad_options_are_named_and_secrets_never_printed() {
        for (f, needle) in [
            (spec(|t| t.extra_body_json = b"[1]".to_vec()), "extra-body"),
            (spec(|t| t.extra_body_json = b"{".to_vec()), "extra-body"),
            (spec(|t| t.http = 0), "http"),
            (spec(|t| t.lb = 42), "lb"),
            (spec(|t| t.idle_timeout_s = Some(-1.0)), "idle-timeout"),
            (spec(|t| t.tls_ca_pem = b"not pem".to_vec()), "tls-ca"),
            (
                spec(|t| {
                    t.headers.insert("bad header".into(), "v".into());
                }),
                "header",
            ),
        ] {
            let e = OpenAiTarget::new(&f, false).expect_err(needle).to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let t = OpenAiTarget::new(
            &spec(|t| {
                t.headers.insert("x-api-key".into(), "hdr-secret".into());
            }),
            false,
        )
        .expect("valid");
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("sk-secret") && !shown.contains("hdr-secret"),
            "{shown}"
        );
        let json = serde_json::to_string(&spec(|t| {
            t.headers.insert("x-api-key".into(), "hdr-secret".into());
        }))
        .expect("serialize");
        assert!(json.contains("x-api-key"), "{json}");
        assert!(
            !json.contains("sk-secret") && !json.contains("hdr-secret"),
            "{json}"
        );
    }
}
