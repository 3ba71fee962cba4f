//! An OpenAI-compatible client: builds `/v1/completions` and `/v1/chat/completions`
//! bodies, sends them over pooled keep-alive connections (HTTP/1.1, h2c, or TLS with ALPN)
//! to one or several frontends, and times every SSE message as it arrives (DESIGN.md §5:
//! TTFT, ITL, E2EL). Non-streaming requests are timed whole (TTFT = E2EL).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rackload_proto::v1::TargetSpec;
use rackload_workloads::RequestSpec;
use rackload_workloads::prompt::Prompt;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tokio::time::Instant;

pub use super::chunk_scan::FinishReason;
use crate::error::ErrorClass;
use crate::sse::SseParser;

/// Why a target cannot be used at all (as opposed to one request failing).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("endpoint {0:?} is not supported (expected /v1/completions or /v1/chat/completions)")]
    BadEndpoint(String),
    #[error("no target URL given")]
    NoUrl,
    #[error("cannot reach target {url} ({addr}): {source}")]
    Unreachable {
        url: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("target {url}: {reason}")]
    Probe { url: String, reason: String },
    #[error("target option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
}

fn bad_option(option: &'static str, reason: impl Into<String>) -> TargetError {
    TargetError::BadOption {
        option,
        reason: reason.into(),
    }
}

/// Which OpenAI API the requests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

impl Api {
    pub fn from_endpoint(endpoint: &str) -> Result<Api, TargetError> {
        match endpoint {
            "/v1/completions" | "" => Ok(Api::Completions),
            "/v1/chat/completions" => Ok(Api::Chat),
            other => Err(TargetError::BadEndpoint(other.to_owned())),
        }
    }
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// Which HTTP the connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1 on http://; ALPN (h2, else HTTP/1.1) on https://.
    Auto,
    Http1,
    /// h2c with prior knowledge on http://; h2 on https://.
    Http2,
}

impl HttpVersion {
    pub fn parse(s: &str) -> Result<HttpVersion, TargetError> {
        match s {
            "" | "auto" => Ok(HttpVersion::Auto),
            "http1" | "http1.1" | "1.1" => Ok(HttpVersion::Http1),
            "http2" | "h2" | "h2c" | "2" => Ok(HttpVersion::Http2),
            other => Err(bad_option(
                "http",
                format!("{other:?} is not auto, http1 or http2"),
            )),
        }
    }
}

/// How requests are spread over several frontends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lb {
    RoundRobin,
    /// To the endpoint with the fewest requests in flight from this worker.
    LeastOutstanding,
}

impl Lb {
    pub fn parse(s: &str) -> Result<Lb, TargetError> {
        match s {
            "" | "round-robin" => Ok(Lb::RoundRobin),
            "least-outstanding" => Ok(Lb::LeastOutstanding),
            other => Err(bad_option(
                "lb",
                format!("{other:?} is not round-robin or least-outstanding"),
            )),
        }
    }
}

struct Endpoint {
    base: String,
    /// `scheme://host:port` plus any path prefix before `/v1`.
    root: String,
    uri: Uri,
    /// host:port to probe.
    addr: String,
    /// Requests in flight to this endpoint from this process.
    outstanding: AtomicU64,
}

/// Parses a base URL such as `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
fn parse_base(base: &str, api: Api) -> Result<Endpoint, TargetError> {
    let bad = |reason: String| TargetError::BadUrl {
        url: base.to_owned(),
        reason,
    };
    let url = url::Url::parse(base).map_err(|e| bad(e.to_string()))?;
    let scheme = url.scheme();
    if !matches!(scheme, "http" | "https") {
        return Err(bad(format!("scheme {scheme:?} is not http or https")));
    }
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let root = url.path().trim_end_matches('/').trim_end_matches("/v1");
    let host_port = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let root = format!("{scheme}://{host_port}{root}");
    let uri = format!("{root}{}", api.path())
        .parse::<Uri>()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Endpoint {
        base: base.trim_end_matches('/').to_owned(),
        root,
        uri,
        addr: host_port,
        outstanding: AtomicU64::new(0),
    })
}

/// A finished request's measurements. ITL samples are in the caller's scratch buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub ttft_us: u64,
    pub e2el_us: u64,
    /// `usage.completion_tokens`, else the number of choice messages.
    pub output_tokens: u64,
    /// False when output tokens were counted from chunks (or, whole responses without
    /// usage, taken as the requested length).
    pub usage_present: bool,
    /// Index of the endpoint that served it.
    pub endpoint: usize,
    /// When the request was handed to the connection.
    pub sent_at: Instant,
    /// The last `finish_reason` the server gave; read only for traced requests.
    pub finish_reason: Option<FinishReason>,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub class: ErrorClass,
    pub message: String,
    /// The endpoint it was sent to (None: failed before one was chosen).
    pub endpoint: Option<usize>,
}

impl Failed {
    fn new(class: ErrorClass, message: impl Into<String>) -> Failed {
        Failed {
            class,
            message: message.into(),
            endpoint: None,
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// Counts a JSON array's elements without allocating (`null` counts as 0).
#[derive(Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Usage {
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorObj {
    code: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Count,
    usage: Option<Usage>,
    error: Option<ErrorObj>,
}

/// Per-stream state while reading one response.
struct StreamState<'a> {
    sent_at: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    choice_messages: u64,
    usage_tokens: Option<u64>,
    done: bool,
    failure: Option<Failed>,
    itl_us: &'a mut Vec<u64>,
    /// Traced requests keep their last chunk with a choice, to read its finish reason
    /// once at the end (scanning every chunk for it cost more than the span).
    traced: bool,
    last_choice: Vec<u8>,
}

/// A duration in whole microseconds (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl StreamState<'_> {
    fn on_event(&mut self, event: &[u8], data: &[u8], now: Instant) {
        if self.done || self.failure.is_some() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if event.is_empty()
            && let Some(c) = super::chunk_scan::scan(data)
        {
            self.keep_if_traced(c.has_choice, data);
            self.on_chunk(c.has_choice, c.usage_tokens, now);
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.failure = Some(Failed::new(
                    ErrorClass::Malformed,
                    format!("SSE data is not an OpenAI chunk: {e}"),
                ));
                return;
            }
        };
        if chunk.error.is_some() || event == b"error" {
            let code = chunk
                .error
                .and_then(|e| e.code)
                .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
            let class = match code {
                Some(c @ 400..=599) => ErrorClass::from_status(c as u16),
                _ => ErrorClass::Malformed,
            };
            let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
            self.failure = Some(Failed::new(class, format!("error event in stream: {text}")));
            return;
        }
        self.keep_if_traced(chunk.choices.0 > 0, data);
        self.on_chunk(
            chunk.choices.0 > 0,
            chunk.usage.and_then(|u| u.completion_tokens),
            now,
        );
    }

    fn keep_if_traced(&mut self, has_choice: bool, data: &[u8]) {
        if self.traced && has_choice {
            self.last_choice.clear();
            self.last_choice.extend_from_slice(data);
        }
    }

    fn on_chunk(&mut self, has_choice: bool, usage_tokens: Option<u64>, now: Instant) {
        if has_choice {
            match self.last {
                None => self.first = Some(now),
                Some(prev) => self.itl_us.push(micros(now - prev)),
            }
            self.last = Some(now);
            self.choice_messages += 1;
        }
        if usage_tokens.is_some() {
            self.usage_tokens = usage_tokens;
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The timeouts a request runs under (None: no limit).
#[derive(Clone, Copy, Debug, Default)]
struct Timeouts {
    total: Option<Duration>,
    first_byte: Option<Duration>,
    idle: Option<Duration>,
}

fn seconds(option: &'static str, s: f64) -> Result<Option<Duration>, TargetError> {
    if s == 0.0 {
        return Ok(None);
    }
    if !(s.is_finite() && s > 0.0) {
        return Err(bad_option(
            option,
            format!("{s} is not a positive number of seconds"),
        ));
    }
    Duration::try_from_secs_f64(s)
        .map(Some)
        .map_err(|e| bad_option(option, e.to_string()))
}

/// A certificate verifier that accepts any server (`tls_insecure`, for testing).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration: Mozilla's roots (webpki-roots) plus any PEM given.
fn tls_config(spec: &TargetSpec) -> Result<rustls::ClientConfig, TargetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_option("tls", e.to_string()))?;
    if spec.tls_insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !spec.tls_ca_pem.is_empty() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&spec.tls_ca_pem) {
            let cert =
                cert.map_err(|e| bad_option("tls-ca", format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad_option("tls-ca", e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad_option("tls-ca", "holds no PEM certificate"));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// What every request body carries besides the prompt and its length.
#[derive(Debug, Clone)]
struct BodyOptions {
    stream: bool,
    ignore_eos: bool,
    min_tokens: bool,
    extra: Map<String, Value>,
}

/// A pool of keep-alive connections to one or more OpenAI-compatible frontends.
pub struct OpenAiTarget {
    client: HttpsClient,
    endpoints: Vec<Endpoint>,
    lb: Lb,
    next: AtomicUsize,
    api: Api,
    model: String,
    /// Authorization and the extra headers, values marked sensitive.
    headers: HeaderMap,
    timeouts: Timeouts,
    body: BodyOptions,
}

impl fmt::Debug for OpenAiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the API key or header values.
        f.debug_struct("OpenAiTarget")
            .field("endpoints", &self.urls())
            .field("model", &self.model)
            .field("lb", &self.lb)
            .finish_non_exhaustive()
    }
}

/// Read buffer ceiling per HTTP/1.1 connection: big enough that a coalesced burst of
/// events is one read, small enough for 16,384 streams in one process.
const READ_BUF_MAX: usize = 16 * 1024;

impl OpenAiTarget {
    pub fn new(spec: &TargetSpec, ignore_eos: bool) -> Result<OpenAiTarget, TargetError> {
        let api = Api::from_endpoint(&spec.endpoint)?;
        if spec.base_urls.is_empty() {
            return Err(TargetError::NoUrl);
        }
        let endpoints = spec
            .base_urls
            .iter()
            .map(|b| parse_base(b, api))
            .collect::<Result<Vec<_>, _>>()?;
        let http = HttpVersion::parse(&spec.http)?;
        let lb = Lb::parse(&spec.lb)?;
        let connect_timeout =
            seconds("connect-timeout", spec.connect_timeout_s)?.unwrap_or(Duration::from_secs(10));
        let timeouts = Timeouts {
            total: seconds("request-timeout", spec.request_timeout_s)?,
            first_byte: seconds("first-byte-timeout", spec.first_byte_timeout_s)?,
            idle: seconds("idle-timeout", spec.idle_timeout_s)?,
        };

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(false);
        let tls = tls_config(spec)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let https = match http {
            HttpVersion::Auto => https
                .enable_http1()
                .enable_http2()
                .wrap_connector(connector),
            HttpVersion::Http1 => https.enable_http1().wrap_connector(connector),
            HttpVersion::Http2 => https.enable_http2().wrap_connector(connector),
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
        let client = builder.build(https);

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !spec.api_key.is_empty() {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", spec.api_key)).map_err(|_| {
                    bad_option("api-key", "contains characters not allowed in a header")
                })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        for (name, value) in &spec.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad_option("header", format!("{name:?} is not a header name")))?;
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                bad_option(
                    "header",
                    format!("the value of {name:?} is not a valid header value"),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let extra = if spec.extra_body_json.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&spec.extra_body_json) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(bad_option("extra-body", "must be a JSON object")),
                Err(e) => return Err(bad_option("extra-body", format!("not JSON: {e}"))),
            }
        };
        Ok(OpenAiTarget {
            client,
            endpoints,
            lb,
            next: AtomicUsize::new(0),
            api,
            model: spec.model.clone(),
            headers,
            timeouts,
            body: BodyOptions {
                stream: !spec.no_stream,
                ignore_eos,
                min_tokens: spec.min_tokens,
                extra,
            },
        })
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
        self.api
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
                        source,
                    });
                }
                Err(_) => {
                    return Err(TargetError::Unreachable {
                        url: ep.base.clone(),
                        addr: ep.addr.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer within 5 s",
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The JSON body of request `req` with `prompt`.
    pub fn body(&self, req: &RequestSpec, prompt: &Prompt) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("model".into(), Value::String(self.model.clone()));
        match (self.api, prompt) {
            (Api::Completions, _) => {
                obj.insert("prompt".into(), prompt.as_json());
                obj.insert("max_tokens".into(), req.output_len.into());
            }
            (Api::Chat, Prompt::Text(text)) => {
                obj.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": text}]),
                );
                obj.insert("max_completion_tokens".into(), req.output_len.into());
            }
            // Chat takes text only; the spec check refuses token ids with chat, so this
            // is a last resort that still sends the right number of "words".
            (Api::Chat, Prompt::TokenIds(ids)) => {
                let text: String = ids.iter().map(|i| format!(" t{i}")).collect();
                obj.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": text}]),
                );
                obj.insert("max_completion_tokens".into(), req.output_len.into());
            }
        }
        obj.insert("temperature".into(), 0.into());
        obj.insert("stream".into(), self.body.stream.into());
        if self.body.stream {
            obj.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        if self.body.ignore_eos {
            obj.insert("ignore_eos".into(), true.into());
        }
        if self.body.min_tokens {
            obj.insert("min_tokens".into(), req.output_len.into());
        }
        for (k, v) in &self.body.extra {
            obj.insert(k.clone(), v.clone());
        }
        serde_json::to_vec(&obj).unwrap_or_default()
    }

    fn pick(&self) -> usize {
        let n = self.endpoints.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        match self.lb {
            Lb::RoundRobin => start,
            Lb::LeastOutstanding => (0..n)
                .map(|k| (start + k) % n)
                .min_by_key(|&k| self.endpoints[k].outstanding.load(Ordering::Relaxed))
                .unwrap_or(start),
        }
    }

    /// Sends request `req` with `prompt` and times its response; ITL samples are
    /// appended to `itl_us`. A traced request carries `traceparent` (and its finish
    /// reason is read).
    pub async fn send(
        &self,
        req: &RequestSpec,
        prompt: &Prompt,
        itl_us: &mut Vec<u64>,
        traceparent: Option<HeaderValue>,
    ) -> Result<Completed, Failed> {
        let body = self.body(req, prompt);
        let k = self.pick();
        let ep = &self.endpoints[k];
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        let fut = self.send_body(ep, body, req.output_len, itl_us, traceparent);
        let result = match self.timeouts.total {
            None => fut.await,
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Failed::new(
                    ErrorClass::Timeout,
                    format!("request took longer than {:.1} s", t.as_secs_f64()),
                )),
            },
        };
        ep.outstanding.fetch_sub(1, Ordering::Relaxed);
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
        itl_us: &mut Vec<u64>,
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
        let first_byte_timeout = |t: Duration| {
            Failed::new(
                ErrorClass::Timeout,
                format!(
                    "no response within the first-byte timeout ({:.1} s)",
                    t.as_secs_f64()
                ),
            )
        };
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
        let mut body = resp.into_body();
        if !status.is_success() {
            let text = match tokio::time::timeout(Duration::from_secs(5), body.collect()).await {
                Ok(Ok(b)) => error_message(&b.to_bytes()),
                _ => String::new(),
            };
            return Err(Failed::new(
                ErrorClass::from_status(status.as_u16()),
                format!("HTTP {status}: {text}"),
            ));
        }
        if !self.body.stream {
            return self
                .whole(body, sent_at, output_len, first_byte_due, traced)
                .await;
        }
        let mut parser = SseParser::new();
        let mut st = StreamState {
            sent_at,
            first: None,
            last: None,
            choice_messages: 0,
            usage_tokens: None,
            done: false,
            failure: None,
            itl_us,
            traced,
            last_choice: Vec::new(),
        };
        // The silence allowed before the next read: first-byte until the first one, then
        // idle. One timer, re-armed only when it fires early (not per read).
        let watch = self.timeouts.first_byte.is_some() || self.timeouts.idle.is_some();
        let mut last_read: Option<Instant> = None;
        let due = |last_read: Option<Instant>| match last_read {
            None => first_byte_due,
            Some(t) => self.timeouts.idle.map(|idle| t + idle),
        };
        let far = sent_at + Duration::from_secs(86_400 * 365);
        let mut timer_at = due(None).unwrap_or(far);
        let timer = tokio::time::sleep_until(timer_at);
        tokio::pin!(timer);
        loop {
            let frame = if watch {
                tokio::select! {
                    biased;
                    f = body.frame() => f,
                    () = &mut timer => {
                        let now = Instant::now();
                        match due(last_read) {
                            Some(d) if now >= d => {
                                return Err(match last_read {
                                    None => first_byte_timeout(self.timeouts.first_byte.unwrap_or_default()),
                                    Some(_) => Failed::new(
                                        ErrorClass::Timeout,
                                        format!(
                                            "stream idle for longer than {:.1} s",
                                            self.timeouts.idle.unwrap_or_default().as_secs_f64()
                                        ),
                                    ),
                                });
                            }
                            d => timer_at = d.unwrap_or(far),
                        }
                        timer.as_mut().reset(timer_at);
                        continue;
                    }
                }
            } else {
                body.frame().await
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| {
                Failed::new(
                    ErrorClass::classify(&e, ErrorClass::StreamReset),
                    format!("stream broke: {}", error_chain(&e)),
                )
            })?;
            let now = Instant::now();
            last_read = Some(now);
            if watch {
                // Re-arm only when the kind of deadline changes (first byte -> idle, or
                // none); a deadline that merely moved later is caught when the timer fires.
                let want = due(last_read).unwrap_or(far);
                if (timer_at == far) != (want == far) {
                    timer_at = want;
                    timer.as_mut().reset(timer_at);
                }
            }
            if let Ok(data) = frame.into_data() {
                parser.feed(&data, |ev| st.on_event(ev.event, ev.data, now));
            }
            if st.done || st.failure.is_some() {
                break;
            }
        }
        if let Some(f) = st.failure {
            return Err(f);
        }
        if !st.done {
            return Err(Failed::new(
                ErrorClass::StreamReset,
                "stream ended before data: [DONE]",
            ));
        }
        let (Some(first), Some(last)) = (st.first, st.last) else {
            return Err(Failed::new(
                ErrorClass::Malformed,
                "stream carried no choice",
            ));
        };
        Ok(Completed {
            ttft_us: micros(first - st.sent_at),
            e2el_us: micros(last - st.sent_at),
            output_tokens: st.usage_tokens.unwrap_or(st.choice_messages),
            usage_present: st.usage_tokens.is_some(),
            endpoint: 0,
            sent_at,
            finish_reason: if traced {
                super::chunk_scan::finish_reason(&st.last_choice)
            } else {
                None
            },
        })
    }

    /// Reads a whole (non-streaming) response: TTFT = E2EL = until its last byte.
    async fn whole(
        &self,
        body: hyper::body::Incoming,
        sent_at: Instant,
        output_len: u32,
        first_byte_due: Option<Instant>,
        traced: bool,
    ) -> Result<Completed, Failed> {
        let collect = body.collect();
        let bytes = match first_byte_due {
            Some(due) => tokio::time::timeout_at(due, collect).await.map_err(|_| {
                Failed::new(
                    ErrorClass::Timeout,
                    "whole response not read within the first-byte timeout",
                )
            })?,
            None => collect.await,
        }
        .map_err(|e| {
            Failed::new(
                ErrorClass::classify(&e, ErrorClass::StreamReset),
                format!("response broke: {}", error_chain(&e)),
            )
        })?
        .to_bytes();
        let end = Instant::now();
        #[derive(Deserialize)]
        struct Whole {
            #[serde(default)]
            choices: Count,
            usage: Option<Usage>,
        }
        let whole: Whole = serde_json::from_slice(&bytes).map_err(|e| {
            Failed::new(
                ErrorClass::Malformed,
                format!("response is not an OpenAI completion: {e}"),
            )
        })?;
        if whole.choices.0 == 0 {
            return Err(Failed::new(
                ErrorClass::Malformed,
                "response carried no choice",
            ));
        }
        let usage = whole.usage.and_then(|u| u.completion_tokens);
        let e2el_us = micros(end - sent_at);
        Ok(Completed {
            ttft_us: e2el_us,
            e2el_us,
            output_tokens: usage.unwrap_or(u64::from(output_len)),
            usage_present: usage.is_some(),
            endpoint: 0,
            sent_at,
            finish_reason: if traced {
                super::chunk_scan::finish_reason(&bytes)
            } else {
                None
            },
        })
    }
}

/// The `error.message` of an OpenAI error body, else the body's first 300 characters.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.pointer("/error/message").and_then(Value::as_str)
    {
        return m.chars().take(300).collect();
    }
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// `err: cause: cause` on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let next = e.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = e.source();
    }
    s
}

/// The model names a server lists at `GET /v1/models`.
pub async fn list_models(base_url: &str, tls: &TargetSpec) -> Result<Vec<String>, TargetError> {
    let ep = parse_base(base_url, Api::Completions)?;
    let uri: Uri =
        format!("{}/v1/models", ep.root)
            .parse()
            .map_err(|e: http::uri::InvalidUri| TargetError::BadUrl {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
    let probe = |reason: String| TargetError::Probe {
        url: base_url.to_owned(),
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
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| probe(error_chain(&e)))?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut TargetSpec)) -> TargetSpec {
        let mut t = TargetSpec {
            base_urls: vec!["http://127.0.0.1:9".into()],
            endpoint: "/v1/chat/completions".into(),
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
        assert_eq!(body["temperature"], 0.6, "--extra-body overrides defaults");
        assert_eq!(body["top_k"], 20);
        assert_eq!(body["messages"][0]["content"], "a b c");

        let t = OpenAiTarget::new(&spec(|t| t.no_stream = true), false).expect("valid");
        let body: Value =
            serde_json::from_slice(&t.body(&request(), &Prompt::Text("x".into()))).expect("json");
        assert_eq!(body["stream"], false);
        assert!(body.get("stream_options").is_none() && body.get("ignore_eos").is_none());
    }

    #[test]
    fn bad_options_are_named_and_secrets_never_printed() {
        for (f, needle) in [
            (spec(|t| t.extra_body_json = b"[1]".to_vec()), "extra-body"),
            (spec(|t| t.extra_body_json = b"{".to_vec()), "extra-body"),
            (spec(|t| t.http = "spdy".into()), "http"),
            (spec(|t| t.lb = "random".into()), "lb"),
            (spec(|t| t.idle_timeout_s = -1.0), "idle-timeout"),
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

    #[test]
    fn least_outstanding_prefers_the_idle_endpoint() {
        let t = OpenAiTarget::new(
            &spec(|t| {
                t.base_urls = vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:10".into()];
                t.lb = "least-outstanding".into();
            }),
            false,
        )
        .expect("valid");
        t.endpoints[0].outstanding.store(5, Ordering::Relaxed);
        assert!((0..10).all(|_| t.pick() == 1));
        t.endpoints[1].outstanding.store(9, Ordering::Relaxed);
        assert!((0..10).all(|_| t.pick() == 0));
    }

    #[test]
    fn base_urls_parse_with_or_without_v1() {
        for base in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
        ] {
            let ep = parse_base(base, Api::Chat).expect("valid");
            assert_eq!(
                ep.uri.to_string(),
                "http://127.0.0.1:8000/v1/chat/completions"
            );
            assert_eq!(ep.addr, "127.0.0.1:8000");
        }
        let ep = parse_base("http://[::1]:9/", Api::Completions).expect("valid");
        assert_eq!(ep.addr, "[::1]:9");
        assert!(parse_base("not a url", Api::Completions).is_err());
        assert!(parse_base("ftp://x", Api::Completions).is_err());
    }

    #[test]
    fn chunk_counting_ignores_the_usage_chunk() {
        let mut itl = Vec::new();
        let t0 = Instant::now();
        let mut st = StreamState {
            sent_at: t0,
            first: None,
            last: None,
            choice_messages: 0,
            usage_tokens: None,
            done: false,
            failure: None,
            itl_us: &mut itl,
            traced: false,
            last_choice: Vec::new(),
        };
        st.on_event(
            b"",
            br#"{"choices":[{"text":"a"}]}"#,
            t0 + Duration::from_millis(5),
        );
        st.on_event(
            b"",
            br#"{"choices":[{"text":"b"}]}"#,
            t0 + Duration::from_millis(7),
        );
        st.on_event(
            b"",
            br#"{"choices":[],"usage":{"completion_tokens":2}}"#,
            t0 + Duration::from_millis(9),
        );
        st.on_event(b"", b"[DONE]", t0 + Duration::from_millis(9));
        assert!(st.done && st.failure.is_none());
        assert_eq!((st.choice_messages, st.usage_tokens), (2, Some(2)));
        assert_eq!(st.last, Some(t0 + Duration::from_millis(7)));
        assert_eq!(itl, vec![2000]);
    }

    #[test]
    fn error_events_are_classified() {
        let mut itl = Vec::new();
        let t0 = Instant::now();
        let mut st = StreamState {
            sent_at: t0,
            first: None,
            last: None,
            choice_messages: 0,
            usage_tokens: None,
            done: false,
            failure: None,
            itl_us: &mut itl,
            traced: false,
            last_choice: Vec::new(),
        };
        st.on_event(b"", br#"{"error":{"message":"x","code":503}}"#, t0);
        assert_eq!(st.failure.map(|f| f.class), Some(ErrorClass::Http5xx));
    }
}
