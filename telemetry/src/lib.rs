//! Logs and OpenTelemetry traces for every rackload process, set up one way.
//!
//! Logs are `tracing` events, human or JSON, on stderr. Traces go over OTLP (gRPC or
//! HTTP/protobuf) when an endpoint is configured — `--otlp-endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` — and nowhere otherwise. The run, point and shard
//! spans are ordinary `tracing` spans bridged by `tracing-opentelemetry`; per-request spans
//! are made directly with the OpenTelemetry API by the worker ([`RequestSampler`] decides
//! which), because they need explicit start and end instants and a `traceparent` before
//! the request is sent. The exporter is a bounded batch: spans it cannot keep are dropped
//! and counted ([`Telemetry::drop`] logs the counts), never waited for.

mod context;
mod export;
pub mod exposition;
mod sampling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use context::{
    context_from_traceparent, context_of_span, set_remote_parent, traceparent_of_span,
};
use export::ExportCounts;
pub use opentelemetry;
pub use sampling::{RequestSampler, configured_ratio, default_ratio};

/// Errors in the telemetry settings (all user input).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{var}: '{value}' is not {expected}")]
    BadSetting {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn parse(var: &'static str, s: &str) -> Result<Protocol, TelemetryError> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(TelemetryError::BadSetting {
                var,
                value: other.to_owned(),
                expected: "grpc or http/protobuf",
            }),
        }
    }
}

/// Where traces go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Otlp {
    /// gRPC: the collector's address (`http://host:4317`). HTTP: the traces URL
    /// (`http://host:4318/v1/traces`).
    pub endpoint: String,
    pub protocol: Protocol,
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

impl Otlp {
    /// The OTLP destination from `--otlp-endpoint` (wins) or the standard variables;
    /// None when tracing is off (no endpoint, `OTEL_SDK_DISABLED=true`,
    /// `OTEL_TRACES_EXPORTER=none`).
    pub fn configured(flag: Option<&str>) -> Result<Option<Otlp>, TelemetryError> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
        {
            return Ok(None);
        }
        let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => Protocol::parse("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &p)?,
            None => match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Some(p) => Protocol::parse("OTEL_EXPORTER_OTLP_PROTOCOL", &p)?,
                None => Protocol::Grpc,
            },
        };
        // A signal-specific URL is used as is; a base URL gets the signal's path (HTTP).
        let (endpoint, is_base, var) = if let Some(f) = flag.filter(|f| !f.trim().is_empty()) {
            (f.to_owned(), true, "--otlp-endpoint")
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (e, false, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (e, true, "OTEL_EXPORTER_OTLP_ENDPOINT")
        } else {
            return Ok(None);
        };
        let endpoint = endpoint.trim().to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TelemetryError::BadSetting {
                var,
                value: endpoint,
                expected: "an http:// or https:// URL",
            });
        }
        let endpoint = match protocol {
            Protocol::HttpProtobuf if is_base && !endpoint.ends_with("/v1/traces") => {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            }
            _ => endpoint,
        };
        Ok(Some(Otlp { endpoint, protocol }))
    }
}

/// What a process asks of [`init`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub log_format: LogFormat,
    /// The log filter when `RUST_LOG` is unset (`warn`, `info`, …).
    pub default_filter: &'static str,
    /// `service.name` when `OTEL_SERVICE_NAME` is unset.
    pub service: &'static str,
    pub otlp: Option<Otlp>,
}

static TRACING: AtomicBool = AtomicBool::new(false);

/// True once [`init`] set up an OTLP exporter in this process.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; dropping it flushes what is queued (bounded by a timeout)
/// and logs how many spans were exported and dropped.
#[must_use = "traces are flushed when this is dropped"]
pub struct Telemetry {
    provider: Option<(SdkTracerProvider, ExportCounts)>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.provider.is_some())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some((provider, counts)) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
            let (ended, exported, dropped) = counts.snapshot();
            if dropped > 0 {
                tracing::warn!(
                    ended,
                    exported,
                    dropped,
                    "trace export: {dropped} of {ended} spans were dropped (queue full or collector unreachable)"
                );
            } else {
                tracing::debug!(ended, exported, "trace export finished");
            }
        }
    }
}

/// Spans the queue holds before it drops new ones.
const QUEUE: usize = 65_536;

/// Installs the log subscriber and, when `settings.otlp` is set, the OTLP trace pipeline
/// and the W3C propagator. With OTLP it must be called inside a Tokio runtime (the
/// exporter's connection lives there), and that runtime must outlive the returned guard.
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.default_filter));
    // Colour only for a terminal: logs sent to a file or a pipe stay plain text.
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let fmt = match settings.log_format {
        LogFormat::Human => fmt.boxed(),
        // One JSON object per line: timestamp, level, message and the span fields (run,
        // point, worker id) flattened, for log pipelines.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    }
    .with_filter(filter);

    let Some(otlp) = &settings.otlp else {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = export::exporter(otlp)?;
    let counts = ExportCounts::default();
    let batch = BatchSpanProcessor::builder(export::Counting::new(exporter, counts.clone()))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .with_max_export_batch_size(2048)
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(settings.service);
    }
    let provider = SdkTracerProvider::builder()
        // Sampling is rackload's own (per request, see RequestSampler); the run, point
        // and shard spans are always kept, and a request span is made only when sampled.
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(export::Ended::new(batch, counts.clone()))
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("rackload");
    // Only rackload's own spans become trace spans (not every library's), and events
    // inside them become span events (a failed request's warning, say).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target().starts_with("rackload") && (!m.is_span() || TRACED_SPANS.contains(&m.name()))
        }));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    TRACING.store(true, Ordering::Relaxed);
    Ok(Telemetry {
        provider: Some((provider, counts)),
    })
}

/// The `tracing` spans exported as trace spans: the run tree, not the long-lived
/// per-process ones (a worker's session span lives as long as the worker).
const TRACED_SPANS: &[&str] = &["run", "point", "shard"];

/// The tracer per-request spans are made with.
pub fn tracer() -> opentelemetry::global::BoxedTracer {
    opentelemetry::global::tracer("rackload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_and_bad_ones_name_the_variable() {
        assert_eq!(Protocol::parse("X", "grpc").ok(), Some(Protocol::Grpc));
        assert_eq!(
            Protocol::parse("X", "http/protobuf").ok(),
            Some(Protocol::HttpProtobuf)
        );
        let e = Protocol::parse("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("http/json"),
            "{e}"
        );
    }
}
