//! The OTLP exporter (gRPC through tonic, or HTTP/protobuf through hyper) and the two
//! wrappers that count what happens to spans: how many ended, how many the collector
//! accepted. The difference was dropped (the bounded queue was full) or failed to send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

use crate::{Otlp, Protocol, TelemetryError};

/// Span counts of one process.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExportCounts(Arc<[AtomicU64; 2]>);

impl ExportCounts {
    /// (ended, exported, dropped or failed).
    pub(crate) fn snapshot(&self) -> (u64, u64, u64) {
        let ended = self.0[0].load(Ordering::Relaxed);
        let exported = self.0[1].load(Ordering::Relaxed);
        (ended, exported, ended.saturating_sub(exported))
    }
}

/// How long one export may take before it is abandoned (its spans counted as dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn exporter(otlp: &Otlp) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let built = match otlp.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&otlp.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OnRuntime::new())
            .with_endpoint(&otlp.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    };
    built.map_err(|e| TelemetryError::Exporter {
        endpoint: otlp.endpoint.clone(),
        message: e.to_string(),
    })
}

/// An HTTP client for the exporter's background thread: the batch processor drives
/// exports outside any Tokio runtime, so each request runs on the runtime that was
/// current when the pipeline was built.
#[derive(Debug)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new() -> OnRuntime {
        OnRuntime {
            client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                EXPORT_TIMEOUT,
                None,
            ),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: Request<bytes::Bytes>,
    ) -> Result<Response<bytes::Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as HttpError)?
    }
}

/// Counts the spans the collector accepted.
#[derive(Debug)]
pub(crate) struct Counting<E> {
    inner: E,
    counts: ExportCounts,
}

impl<E> Counting<E> {
    pub(crate) fn new(inner: E, counts: ExportCounts) -> Counting<E> {
        Counting { inner, counts }
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.counts.0[1].fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts the spans that ended (and were handed to the batch).
#[derive(Debug)]
pub(crate) struct Ended<P> {
    inner: P,
    counts: ExportCounts,
}

impl<P> Ended<P> {
    pub(crate) fn new(inner: P, counts: ExportCounts) -> Ended<P> {
        Ended { inner, counts }
    }
}

impl<P: SpanProcessor> SpanProcessor for Ended<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counts.0[0].fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
