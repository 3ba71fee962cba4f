//! An OpenAI-compatible streaming client: builds `/v1/completions` and
//! `/v1/chat/completions` bodies, sends them over pooled keep-alive HTTP/1.1 connections,
//! and times every SSE message as it arrives (DESIGN.md §5: TTFT, ITL, E2EL).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rackload_proto::v1::TargetSpec;
use rackload_workloads::RequestSpec;
use rackload_workloads::prompt::Prompt;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use tokio::time::Instant;

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

struct Endpoint {
    base: String,
    /// `http://host:port` plus any path prefix before `/v1`.
    root: String,
    uri: Uri,
    /// host:port to probe.
    addr: String,
}

/// Parses a base URL such as `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
fn parse_base(base: &str, api: Api) -> Result<Endpoint, TargetError> {
    let bad = |reason: String| TargetError::BadUrl {
        url: base.to_owned(),
        reason,
    };
    let url = url::Url::parse(base).map_err(|e| bad(e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err(bad("https targets are not supported yet; use http".into())),
        s => return Err(bad(format!("scheme {s:?} is not http"))),
    }
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let root = url.path().trim_end_matches('/').trim_end_matches("/v1");
    let host_port = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let root = format!("http://{host_port}{root}");
    let uri = format!("{root}{}", api.path())
        .parse::<Uri>()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Endpoint {
        base: base.trim_end_matches('/').to_owned(),
        root,
        uri,
        addr: host_port,
    })
}

/// A finished request's measurements. ITL samples are in the caller's scratch buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub ttft_us: u64,
    pub e2el_us: u64,
    /// `usage.completion_tokens`, else the number of choice messages.
    pub output_tokens: u64,
    /// False when output tokens were counted from chunks.
    pub usage_present: bool,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub class: ErrorClass,
    pub message: String,
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
}

fn micros(d: Duration) -> u64 {
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
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.failure = Some(Failed {
                    class: ErrorClass::Malformed,
                    message: format!("SSE data is not an OpenAI chunk: {e}"),
                });
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
            self.failure = Some(Failed {
                class,
                message: format!("error event in stream: {text}"),
            });
            return;
        }
        if chunk.choices.0 > 0 {
            match self.last {
                None => self.first = Some(now),
                Some(prev) => self.itl_us.push(micros(now - prev)),
            }
            self.last = Some(now);
            self.choice_messages += 1;
        }
        if let Some(n) = chunk.usage.and_then(|u| u.completion_tokens) {
            self.usage_tokens = Some(n);
        }
    }
}

/// A pool of keep-alive connections to one or more OpenAI-compatible frontends.
pub struct OpenAiTarget {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    api: Api,
    model: String,
    auth: Option<HeaderValue>,
    timeout: Option<Duration>,
    ignore_eos: bool,
}

impl fmt::Debug for OpenAiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the API key.
        f.debug_struct("OpenAiTarget")
            .field("endpoints", &self.urls())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

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
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let auth = if spec.api_key.is_empty() {
            None
        } else {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {}", spec.api_key)).map_err(|_| {
                    TargetError::BadUrl {
                        url: "(api key)".into(),
                        reason: "the API key contains characters not allowed in a header".into(),
                    }
                })?;
            v.set_sensitive(true);
            Some(v)
        };
        let timeout = (spec.request_timeout_s > 0.0)
            .then(|| Duration::try_from_secs_f64(spec.request_timeout_s).ok())
            .flatten();
        Ok(OpenAiTarget {
            client,
            endpoints,
            next: AtomicUsize::new(0),
            api,
            model: spec.model.clone(),
            auth,
            timeout,
            ignore_eos,
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.base.clone()).collect()
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

    fn body(&self, req: &RequestSpec, prompt: &Prompt) -> Vec<u8> {
        let mut body = match (self.api, prompt) {
            (Api::Completions, _) => serde_json::json!({
                "model": self.model,
                "prompt": prompt.as_json(),
                "max_tokens": req.output_len,
            }),
            (Api::Chat, Prompt::Text(text)) => serde_json::json!({
                "model": self.model,
                "messages": [{"role": "user", "content": text}],
                "max_completion_tokens": req.output_len,
            }),
            // Chat takes text only; the spec check refuses token ids with chat, so this
            // is a last resort that still sends the right number of "words".
            (Api::Chat, Prompt::TokenIds(ids)) => serde_json::json!({
                "model": self.model,
                "messages": [{"role": "user", "content": ids.iter().map(|i| format!(" t{i}")).collect::<String>()}],
                "max_completion_tokens": req.output_len,
            }),
        };
        let obj = body.as_object_mut().expect("json! object literal");
        obj.insert("temperature".into(), 0.into());
        obj.insert("stream".into(), true.into());
        obj.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
        if self.ignore_eos {
            obj.insert("ignore_eos".into(), true.into());
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Sends request `req` with `prompt` and times its stream; ITL samples are appended
    /// to `itl_us`.
    pub async fn send(
        &self,
        req: &RequestSpec,
        prompt: &Prompt,
        itl_us: &mut Vec<u64>,
    ) -> Result<Completed, Failed> {
        let body = self.body(req, prompt);
        let fut = self.send_body(body, itl_us);
        match self.timeout {
            None => fut.await,
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Failed {
                    class: ErrorClass::Timeout,
                    message: format!("request took longer than {:.1} s", t.as_secs_f64()),
                }),
            },
        }
    }

    async fn send_body(&self, body: Vec<u8>, itl_us: &mut Vec<u64>) -> Result<Completed, Failed> {
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let ep = &self.endpoints[k];
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(ep.uri.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failed {
                class: ErrorClass::Malformed,
                message: format!("cannot build request: {e}"),
            })?;
        let sent_at = Instant::now();
        let resp = self.client.request(request).await.map_err(|e| Failed {
            class: ErrorClass::classify(&e, ErrorClass::Connect),
            message: format!("{}: {}", ep.base, error_chain(&e)),
        })?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let text = match body.collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()[..])
                    .chars()
                    .take(300)
                    .collect(),
                Err(_) => String::new(),
            };
            return Err(Failed {
                class: ErrorClass::from_status(status.as_u16()),
                message: format!("HTTP {status}: {text}"),
            });
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
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failed {
                class: ErrorClass::classify(&e, ErrorClass::StreamReset),
                message: format!("stream broke: {}", error_chain(&e)),
            })?;
            let now = Instant::now();
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
            return Err(Failed {
                class: ErrorClass::StreamReset,
                message: "stream ended before data: [DONE]".into(),
            });
        }
        let (Some(first), Some(last)) = (st.first, st.last) else {
            return Err(Failed {
                class: ErrorClass::Malformed,
                message: "stream carried no choice".into(),
            });
        };
        Ok(Completed {
            ttft_us: micros(first - st.sent_at),
            e2el_us: micros(last - st.sent_at),
            output_tokens: st.usage_tokens.unwrap_or(st.choice_messages),
            usage_present: st.usage_tokens.is_some(),
        })
    }
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
pub async fn list_models(base_url: &str) -> Result<Vec<String>, TargetError> {
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
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
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
        };
        st.on_event(b"", br#"{"error":{"message":"x","code":503}}"#, t0);
        assert_eq!(st.failure.map(|f| f.class), Some(ErrorClass::Http5xx));
    }
}
