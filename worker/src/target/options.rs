//! A target's options and URLs: what a [`TargetSpec`] asks for, checked once when a target
//! is built — the API from the endpoint, base URLs parsed into request URIs, timeouts,
//! headers (values marked sensitive) and the extra body keys — and the errors that make a
//! target unusable.

use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Uri};
use rackload_proto::v1::{self, TargetSpec};
use serde_json::{Map, Value};

/// Why a target cannot be used at all (as opposed to one request failing).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("endpoint {0:?} is not supported (expected /v1/completions or /v1/chat/completions)")]
    BadEndpoint(String),
    #[error("no target URL given")]
    NoUrl,
    #[error("cannot reach target {url} ({addr}): {error}")]
    Unreachable {
        url: String,
        addr: String,
        error: std::io::Error,
    },
    #[error("target {url}: {reason}")]
    Probe { url: String, reason: String },
    #[error("target option {option}: {reason}")]
    BadOption {
        option: &'static str,
        reason: String,
    },
}

pub(crate) fn bad_option(option: &'static str, reason: impl Into<String>) -> TargetError {
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
    /// The API of the wire's endpoint (which the sender resolved: unset is an error).
    pub fn from_endpoint(endpoint: i32) -> Result<Api, TargetError> {
        match v1::Endpoint::try_from(endpoint) {
            Ok(v1::Endpoint::Completions) => Ok(Api::Completions),
            Ok(v1::Endpoint::ChatCompletions) => Ok(Api::Chat),
            _ => Err(TargetError::BadEndpoint(endpoint.to_string())),
        }
    }
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// A wire enum the sender must have resolved (its zero, "unset", is refused).
pub(crate) fn resolved<T: TryFrom<i32> + PartialEq + Copy>(
    option: &'static str,
    v: i32,
    unset: T,
) -> Result<T, TargetError> {
    match T::try_from(v) {
        Ok(t) if t != unset => Ok(t),
        _ => Err(bad_option(
            option,
            format!("{v} is not set to a known value"),
        )),
    }
}

pub(crate) struct Endpoint {
    pub base: String,
    /// `scheme://host:port` plus any path prefix before `/v1`.
    pub root: String,
    /// The base URL's query (`?api-version=…`), empty or with its `?`: sent on every
    /// request, the model probe's included.
    pub query: String,
    pub uri: Uri,
    /// host:port to probe.
    pub addr: String,
}

/// Parses a base URL such as `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
pub(crate) fn parse_base(base: &str, api: Api) -> Result<Endpoint, TargetError> {
    let bad = |reason: String| TargetError::BadUrl {
        url: rackload_proto::redact::url(base),
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
    // A query on the base URL (`?api-version=…`) goes on every request.
    let query = url.query().map_or(String::new(), |q| format!("?{q}"));
    let uri = format!("{root}{}{query}", api.path())
        .parse::<Uri>()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Endpoint {
        // Shown in logs, errors and results: secrets in the URL are not.
        base: rackload_proto::redact::url(base.trim_end_matches('/')),
        query,
        root,
        uri,
        addr: host_port,
    })
}

/// The timeouts a request runs under (None: no limit).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timeouts {
    pub total: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
}

/// A positive number of seconds, or none when absent.
fn seconds(option: &'static str, s: Option<f64>) -> Result<Option<Duration>, TargetError> {
    let Some(s) = s else {
        return Ok(None);
    };
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

impl Timeouts {
    pub(crate) fn of(spec: &TargetSpec) -> Result<Timeouts, TargetError> {
        Ok(Timeouts {
            total: seconds("request-timeout", spec.request_timeout_s)?,
            first_byte: seconds("first-byte-timeout", spec.first_byte_timeout_s)?,
            idle: seconds("idle-timeout", spec.idle_timeout_s)?,
        })
    }
}

/// The connect timeout (None: the operating system's).
pub(crate) fn connect_timeout(spec: &TargetSpec) -> Result<Option<Duration>, TargetError> {
    seconds("connect-timeout", spec.connect_timeout_s)
}

/// Content type, authorization and the extra headers, values marked sensitive.
pub(crate) fn headers(spec: &TargetSpec) -> Result<HeaderMap, TargetError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !spec.api_key.is_empty() {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", spec.api_key))
            .map_err(|_| bad_option("api-key", "contains characters not allowed in a header"))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    for (name, value) in &spec.headers {
        // The coordinator's run may come from any client: checked here too.
        if let Some(why) = rackload_proto::headers::framing_header(name) {
            return Err(bad_option("header", why));
        }
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
    Ok(headers)
}

/// The JSON object merged into every body (empty when none).
pub(crate) fn extra_body(spec: &TargetSpec) -> Result<Map<String, Value>, TargetError> {
    if spec.extra_body_json.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&spec.extra_body_json) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_option("extra-body", "must be a JSON object")),
        Err(e) => Err(bad_option("extra-body", format!("not JSON: {e}"))),
    }
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
}
