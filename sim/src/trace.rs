//! The sim's side of distributed tracing: it keeps the W3C `traceparent` each request
//! carried (`GET /traceparents`, the first [`KEPT`]), and, when this process exports
//! OTLP, emits a server span per traced request as the child of the client's span — the
//! join a real vLLM or SGLang frontend makes. Untraced requests cost nothing here.

use std::sync::Mutex;
use std::time::SystemTime;

use rackload_telemetry::opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use rackload_telemetry::opentelemetry::{KeyValue, global::BoxedSpan};

/// traceparents kept for `/traceparents`.
pub(crate) const KEPT: usize = 100_000;

/// The traceparents received, in arrival order (the first [`KEPT`]).
#[derive(Debug, Default)]
pub(crate) struct Received {
    list: Mutex<Vec<String>>,
}

impl Received {
    pub fn add(&self, traceparent: &str) {
        if let Ok(mut l) = self.list.lock()
            && l.len() < KEPT
        {
            l.push(traceparent.to_owned());
        }
    }

    pub fn all(&self) -> Vec<String> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A server span, ended when dropped (the response finished or was abandoned).
pub(crate) struct ServerSpan(BoxedSpan);

impl ServerSpan {
    /// Starts the server span of a request that arrived at `arrival` with `traceparent`;
    /// None when this process does not export traces or the header is not valid.
    pub fn start(
        traceparent: &str,
        path: &'static str,
        operation: &'static str,
        model: &str,
        arrival: SystemTime,
    ) -> Option<ServerSpan> {
        if !rackload_telemetry::tracing_enabled() {
            return None;
        }
        let parent = rackload_telemetry::context_from_traceparent(traceparent);
        use rackload_telemetry::opentelemetry::trace::TraceContextExt as _;
        if !parent.span().span_context().is_valid() {
            return None;
        }
        let tracer = rackload_telemetry::tracer();
        let span = tracer
            .span_builder(format!("POST {path}"))
            .with_kind(SpanKind::Server)
            .with_start_time(arrival)
            .with_attributes(vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("url.path", path),
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.request.model", model.to_owned()),
            ])
            .start_with_context(&tracer, &parent);
        Some(ServerSpan(span))
    }

    pub fn set(&mut self, key: &'static str, value: i64) {
        self.0.set_attribute(KeyValue::new(key, value));
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        self.0.end();
    }
}
