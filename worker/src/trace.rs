//! One OpenTelemetry span per sampled request, under the shard's span, following the GenAI
//! semantic conventions (`{operation} {model}`, `gen_ai.*`, `server.*`, `error.type`) plus
//! rackload's own timings. The span is started before the request is sent so that its
//! `traceparent` rides in the request's headers and the server's spans join the trace.
//! An unsampled request costs one hash ([`RequestSampler::sampled`]) and nothing else.

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use rackload_telemetry::RequestSampler;
use rackload_telemetry::opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use rackload_telemetry::opentelemetry::{
    Context, KeyValue, global::BoxedSpan, global::BoxedTracer,
};
use rackload_workloads::RequestSpec;
use tokio::time::Instant;

use crate::target::OpenAiTarget;
use crate::target::openai::{Api, Completed, Failed};

/// Makes the request spans of one shard.
pub struct RequestTracer {
    sampler: RequestSampler,
    parent: Context,
    tracer: BoxedTracer,
    operation: &'static str,
    name: String,
    model: String,
    /// The same moment on both clocks, to turn instants into span timestamps.
    anchor: (SystemTime, Instant),
}

impl std::fmt::Debug for RequestTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTracer")
            .field("sampler", &self.sampler)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A sampled request's span, open while the request runs.
pub struct RequestSpan {
    span: BoxedSpan,
    /// The W3C header naming this span as the server's parent.
    pub traceparent: HeaderValue,
}

impl RequestTracer {
    /// A tracer for requests to `target` under `parent` (the shard span's context);
    /// None when tracing is off in this process or nothing is to be sampled.
    pub fn new(
        sampler: RequestSampler,
        parent: Context,
        target: &OpenAiTarget,
    ) -> Option<RequestTracer> {
        if sampler.is_off() || !rackload_telemetry::tracing_enabled() {
            return None;
        }
        let operation = match target.api() {
            Api::Completions => "text_completion",
            Api::Chat => "chat",
        };
        Some(RequestTracer {
            sampler,
            parent,
            tracer: rackload_telemetry::tracer(),
            operation,
            name: format!("{operation} {}", target.model()),
            model: target.model().to_owned(),
            anchor: (SystemTime::now(), Instant::now()),
        })
    }

    fn wall(&self, t: Instant) -> SystemTime {
        let (wall, mono) = self.anchor;
        if t >= mono {
            wall + (t - mono)
        } else {
            wall.checked_sub(mono - t).unwrap_or(wall)
        }
    }

    /// Starts the span of request `index` when it is sampled.
    pub fn start(
        &self,
        index: u64,
        req: &RequestSpec,
        at: Instant,
        lag_us: Option<u64>,
    ) -> Option<RequestSpan> {
        if !self.sampler.sampled(index) {
            return None;
        }
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", self.operation),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.system", "openai"),
            KeyValue::new("gen_ai.request.model", self.model.clone()),
            KeyValue::new("gen_ai.request.max_tokens", i64::from(req.output_len)),
            KeyValue::new("rackload.request.index", index as i64),
        ];
        if let Some(lag) = lag_us {
            attributes.push(KeyValue::new("rackload.schedule_lag_ms", lag as f64 / 1e3));
        }
        let span = self
            .tracer
            .span_builder(self.name.clone())
            .with_kind(SpanKind::Client)
            .with_start_time(self.wall(at))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.parent);
        let sc = span.span_context();
        let traceparent = format!("00-{}-{}-01", sc.trace_id(), sc.span_id());
        let traceparent = HeaderValue::from_str(&traceparent).ok()?;
        Some(RequestSpan { span, traceparent })
    }

    /// Ends a completed request's span with its usage and timings.
    pub fn completed(
        &self,
        mut s: RequestSpan,
        req: &RequestSpec,
        done: &Completed,
        target: &OpenAiTarget,
    ) {
        let (host, port) = target.server(done.endpoint);
        let first = done.sent_at + Duration::from_micros(done.ttft_us);
        let end = done.sent_at + Duration::from_micros(done.e2el_us);
        let span = &mut s.span;
        span.set_attribute(KeyValue::new("server.address", host.to_owned()));
        span.set_attribute(KeyValue::new("server.port", i64::from(port)));
        span.set_attribute(KeyValue::new(
            "gen_ai.usage.input_tokens",
            i64::from(req.input_len),
        ));
        span.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            done.output_tokens as i64,
        ));
        if let Some(f) = done.finish_reason {
            span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                rackload_telemetry::opentelemetry::Value::Array(
                    vec![rackload_telemetry::opentelemetry::StringValue::from(
                        f.as_str(),
                    )]
                    .into(),
                ),
            ));
        }
        span.set_attribute(KeyValue::new("rackload.ttft_ms", done.ttft_us as f64 / 1e3));
        if done.output_tokens > 1 {
            let tpot = (done.e2el_us - done.ttft_us) as f64 / (done.output_tokens - 1) as f64;
            span.set_attribute(KeyValue::new("rackload.tpot_ms", tpot / 1e3));
        }
        span.add_event_with_timestamp("gen_ai.first_token", self.wall(first), vec![]);
        span.end_with_timestamp(self.wall(end));
    }

    /// Ends a failed request's span with its error class.
    pub fn failed(&self, mut s: RequestSpan, failed: &Failed, target: &OpenAiTarget) {
        let span = &mut s.span;
        if let Some(k) = failed.endpoint {
            let (host, port) = target.server(k);
            span.set_attribute(KeyValue::new("server.address", host.to_owned()));
            span.set_attribute(KeyValue::new("server.port", i64::from(port)));
        }
        span.set_attribute(KeyValue::new("error.type", failed.class.as_str()));
        span.set_status(Status::error(failed.message.clone()));
        span.end();
    }
}

/// The span context a shard's request spans hang under.
pub(crate) fn shard_context(span: &tracing::Span) -> Context {
    let cx = rackload_telemetry::context_of_span(span);
    if cx.span().span_context().is_valid() {
        cx
    } else {
        Context::new()
    }
}
