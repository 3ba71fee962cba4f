//! W3C trace context as text: the `traceparent` a point span hands to its shards in the
//! gRPC plan, and a request span hands to the server in an HTTP header.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The `traceparent` of `cx`'s span (None when it has no valid span).
pub(crate) fn traceparent_of(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove("traceparent")
}

/// A context whose remote parent is `traceparent` (an empty context when it is not a
/// valid W3C traceparent).
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of a `tracing` span, when it is exported as a trace span.
pub fn traceparent_of_span(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !crate::tracing_enabled() || span.is_disabled() {
        return None;
    }
    traceparent_of(&span.context())
}

/// Makes the remote span `traceparent` the parent of `span` (nothing when it is empty or
/// invalid, or tracing is off).
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !crate::tracing_enabled() || traceparent.is_empty() {
        return;
    }
    let cx = context_from_traceparent(traceparent);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The OpenTelemetry context of a `tracing` span (to parent spans made directly).
pub fn context_of_span(span: &tracing::Span) -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.context()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_garbage_gives_no_parent() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = context_from_traceparent(tp);
        assert!(cx.span().span_context().is_remote());
        assert_eq!(traceparent_of(&cx).as_deref(), Some(tp));
        assert_eq!(traceparent_of(&context_from_traceparent("nonsense")), None);
        assert_eq!(traceparent_of(&Context::new()), None);
    }
}
